"""``build_many`` (the bake seam): several targets in one solve; shared steps run once; all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyarch.cli.context import AppContext
from polyarch.cli.environment import Environment
from polyarch.cli.registry_cmds import registry_factory
from polyarch.cli.wiring import build_deps
from polyarch.errors import BuildError
from polyarch.pipeline.run import BuildRequest, build_many
from polyarch.platform import parse_list
from polyarch.progress import Progress, VertexDone

from .conftest import write_tree


def _deps(store_root: Path):  # type: ignore[no-untyped-def]
    return build_deps(AppContext(root=str(store_root)), registry_factory(Environment()))


def test_targets_share_identical_steps(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {"a": "a\n", "b": "b\n"})
    common = "FROM base/busybox:1\nCOPY a /a\n"
    reqs = [BuildRequest(common + "COPY b /b\n", context=ctx, platforms=tuple(parse_list(["linux/amd64,linux/arm64"]))),
            BuildRequest(common + "ENV X=1\n", context=ctx, platforms=tuple(parse_list(["linux/arm64"])),
                         labels={"t": "2"})]
    progress = Progress()
    results = build_many(_deps(store_root), reqs, progress=progress)
    done = [e.name for e in progress.events if isinstance(e, VertexDone)]
    assert sum("COPY a /a" in n for n in done) == 2  # amd64 + arm64 once each, not three times
    (_, r1), (_, r2) = results
    assert [str(i.platform) for i in r1.images] == ["linux/amd64", "linux/arm64"]
    assert r2.images[0].layers == r1.images[1].layers[:-1]
    assert r2.images[0].config.config.labels == {"t": "2"}


def test_one_failing_target_fails_all(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {"a": "a\n"})
    other = write_tree(tmp_path / "other", {"z": "z\n"})
    blobs = sorted(p.name for p in (store_root / "blobs" / "sha256").iterdir())
    reqs = [BuildRequest("FROM base/busybox:1\nCOPY a /a\n", context=ctx),
            BuildRequest("FROM base/busybox:1\nCOPY missing /m\n", context=other)]
    with pytest.raises(BuildError, match="missing"):
        build_many(_deps(store_root), reqs, progress=Progress())
    assert sorted(p.name for p in (store_root / "blobs" / "sha256").iterdir()) == blobs
