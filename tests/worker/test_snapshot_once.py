"""Lazy unpack (issue 22, item 2): a RUN rootfs extracts each layer of its base once per chain id, also when
several threads (platforms, stages) or several store objects (other builds in the same store) ask for the same
stack at once; the others wait and reuse it. Counted by wrapping the one place a layer is applied."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from polyarch.content.compression import LayerWriter
from polyarch.content.store import ContentStore
from polyarch.worker import snapshot as snapshot_mod
from polyarch.worker.overlay import overlay_supported
from polyarch.worker.snapshot import LayerRef, SnapshotDirs, SnapshotStore, chain_ids
from tests.worker.conftest import E, make_tar


@pytest.fixture(params=["overlay", "copy"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "overlay" and not overlay_supported(tmp_path / "probe"):
        pytest.skip("overlayfs cannot be mounted here (needs root)")
    return request.param


def _layer(store: ContentStore, *entries: E) -> LayerRef:
    with LayerWriter(store) as lw:
        lw.write(make_tar(entries))
        r = lw.close_layer()
    return LayerRef(r.diff_id, r.descriptor)


def test_each_chain_is_unpacked_once_under_concurrency(tmp_path: Path, driver: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    content = ContentStore(tmp_path / "store")
    layers = [_layer(content, E("etc", kind="dir"), E("etc/a", data=b"a")),
              _layer(content, E("usr", kind="dir"), E("usr/b", data=b"b")),
              _layer(content, E("etc/.wh.a"), E("c", data=b"c"))]
    applied: Counter[str] = Counter()
    real = snapshot_mod.apply_layer

    def counting(stream, target, **kw):  # type: ignore[no-untyped-def]
        applied[str(kw["expected_diff_id"])] += 1
        time.sleep(0.05)  # widen the window in which a second extraction would start
        return real(stream, target, **kw)

    monkeypatch.setattr(snapshot_mod, "apply_layer", counting)
    stores = [SnapshotStore(tmp_path / "store", content, driver=driver) for _ in range(2)]
    errors: list[BaseException] = []
    seen: list[bytes] = []

    def run(snaps: SnapshotStore) -> None:
        try:
            with snaps.prepare(layers) as active:
                seen.append((active.rootfs / "usr" / "b").read_bytes() + (active.rootfs / "c").read_bytes())
                assert not (active.rootfs / "etc" / "a").exists()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(stores[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert seen == [b"bc"] * 6
    assert applied == Counter({str(x.diff_id): 1 for x in layers})  # one unpack per chain id
    for chain in chain_ids([x.diff_id for x in layers]):
        assert stores[0].path(chain).is_dir()
    assert not list((tmp_path / "store" / "snapshots" / driver / "tmp").iterdir())  # no lock file left
    with stores[1].prepare(layers[:2]):
        pass
    assert sum(applied.values()) == 3  # a shorter stack reuses the chains already there


def test_a_lock_file_left_by_a_killed_holder_is_cleaned(tmp_path: Path, driver: str) -> None:
    content = ContentStore(tmp_path / "store")
    snaps = SnapshotStore(tmp_path / "store", content, driver=driver)
    layer = _layer(content, E("a", data=b"a"))
    stale = tmp_path / "store" / "snapshots" / driver / "tmp" / f"{layer.diff_id.hex}.lock"
    stale.write_bytes(b"")
    snaps.ensure([layer])  # a lock file nobody holds is no obstacle
    assert snaps.has([layer])
    stale.write_bytes(b"")
    SnapshotDirs(tmp_path / "store").clean_leftovers(cutoff=time.time() + 10)
    assert not stale.exists()
