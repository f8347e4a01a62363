"""``--network default|none|host``: the network of RUN steps without their own ``RUN --network=``."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import build, by_name, images_of, layer_file, needs_run, write_tree

pytestmark = [pytest.mark.root]

# /proc/net/dev lists the interfaces of the step's network namespace: only "lo" in an empty one
IFACES = "awk -F: 'NR>2 {gsub(/ /, \"\", $1); print $1}' /proc/net/dev | sort | tr '\\n' ' '"


def _ifaces(root: Path, name: str, n: int) -> list[str]:
    img = images_of(root, name)[0]
    return [layer_file(root, img, n + i, f"net{i}").decode().split() for i in range(2)]  # type: ignore[misc]


@needs_run("linux/amd64")
def test_build_network_none_is_the_default_of_runs_and_run_network_overrides(store_root: Path,
                                                                               tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {
        "Dockerfile": f"FROM base/busybox:1\nRUN --network=host {IFACES} > /net0\nRUN {IFACES} > /net1\n",
    })
    host = sorted(p.name for p in Path("/sys/class/net").iterdir())
    n = len(images_of(store_root, "base/busybox:1")[0].manifest.layers)

    build(store_root, ctx, "--platform", "linux/amd64", "-t", "net:default", "--load")
    assert _ifaces(store_root, "net:default", n) == [host, host]

    proc = build(store_root, ctx, "--platform", "linux/amd64", "-t", "net:none", "--load", "--network", "none")
    assert _ifaces(store_root, "net:none", n) == [host, ["lo"]]
    # the build's network is part of the cache key of a RUN that uses it, not of one with its own --network=
    assert by_name(proc.stderr, "RUN awk") == ["DONE"]
    assert by_name(proc.stderr, "RUN --network=host") == ["CACHED"]
    again = build(store_root, ctx, "--platform", "linux/amd64", "-t", "net:none", "--load", "--network", "none")
    assert by_name(again.stderr, "RUN awk") == ["CACHED"]


def test_build_network_rejects_unknown_mode(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nRUN true\n"})
    proc = build(store_root, ctx, "--network", "bridge", check=False)
    assert proc.returncode == 2
    assert "bridge" in proc.stderr and "none" in proc.stderr
    assert "Traceback" not in proc.stderr
