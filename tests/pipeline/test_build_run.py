"""RUN steps through runc: native and emulated platforms, output per platform, failures leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

from .conftest import EPOCH, PLATFORMS, build, by_name, images_of, layer_file, needs_run, write_tree

pytestmark = [pytest.mark.root, pytest.mark.binfmt]


@needs_run(PLATFORMS)
def test_run_output_per_platform_and_layers(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {
        "Dockerfile": "FROM base/busybox:1\nRUN uname -m > /arch && echo \"machine: $(uname -m)\"\n"
                      "RUN true\nCOPY a.txt /a.txt\n",
        "a.txt": "a\n",
    })
    proc = build(store_root, ctx, "--platform", PLATFORMS, "-t", "run:1", "--load")
    for machine in ("x86_64", "aarch64", "armv7l"):
        assert f"machine: {machine}" in proc.stderr
    imgs = images_of(store_root, "run:1")
    base = images_of(store_root, "base/busybox:1")
    n = len(base[0].manifest.layers)
    # RUN true changed nothing: no layer, history marks it empty
    assert [len(i.manifest.layers) for i in imgs] == [n + 2] * 3
    assert [layer_file(store_root, i, n, "arch") for i in imgs] == [b"x86_64\n", b"aarch64\n", b"armv7l\n"]
    assert len({str(i.manifest.layers[-1].digest) for i in imgs}) == 1  # the COPY layer is shared
    assert [h.empty_layer for h in imgs[0].config.history if h.created_by.startswith("RUN")] == [False, True]
    again = build(store_root, ctx, "--platform", PLATFORMS, "-t", "run:1", "--load")
    assert by_name(again.stderr, "RUN uname") == ["CACHED"] * 3


@needs_run("linux/amd64,linux/arm64")
def test_failing_run_on_one_platform_exports_nothing(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {
        "Dockerfile": "FROM base/busybox:1\nCOPY a.txt /a.txt\nRUN test \"$(uname -m)\" != aarch64\n",
        "a.txt": "a\n",
    })
    blobs = sorted(p.name for p in (store_root / "blobs" / "sha256").iterdir())
    index = (store_root / "index.json").read_bytes()
    out = tmp_path / "out.tar"
    proc = build(store_root, ctx, "--platform", "linux/amd64,linux/arm64", "-t", "bad:1", "--load",
                 "-o", f"type=oci,dest={out}", check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: linux/arm64 [stage-0 3/3] RUN test")
    assert "(Dockerfile:3)" in last and "exit code: 1" in last
    assert (store_root / "index.json").read_bytes() == index
    assert sorted(p.name for p in (store_root / "blobs" / "sha256").iterdir()) == blobs
    assert not out.exists()


@needs_run("linux/amd64")
def test_bind_mounted_context_is_keyed_by_content(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {
        "Dockerfile": "FROM base/busybox:1\nRUN --mount=type=bind,target=/ctx cat /ctx/data.txt > /copied\n",
        "data.txt": "v1\n",
    })
    build(store_root, ctx, "--platform", "linux/amd64", "-t", "b:1", "--load")
    assert by_name(build(store_root, ctx, "--platform", "linux/amd64").stderr, "RUN --mount") == ["CACHED"]
    (ctx / "data.txt").write_text("v2\n")
    proc = build(store_root, ctx, "--platform", "linux/amd64", "-t", "b:2", "--load")
    assert by_name(proc.stderr, "RUN --mount") == ["DONE"]
    img = images_of(store_root, "b:2")[0]
    assert layer_file(store_root, img, -1, "copied") == b"v2\n"


@needs_run(PLATFORMS)
def test_run_layers_are_reproducible(base_root: Path, tmp_path: Path) -> None:
    import shutil

    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nRUN mkdir -p /out && uname -m > /out/m\n"})
    digests = []
    for i in range(2):
        root = tmp_path / f"s{i}"
        shutil.copytree(base_root, root, ignore=shutil.ignore_patterns(".complete", "ingest", "buildcache.db*"))
        build(root, ctx, "--platform", PLATFORMS, "--iidfile", str(tmp_path / "iid"))
        digests.append((tmp_path / "iid").read_text())
    assert digests[0] == digests[1]


@needs_run("linux/amd64")
def test_relative_store_root(store_root: Path, tmp_path: Path) -> None:
    """``--root store`` (relative to the working directory) works for RUN: runc runs in the bundle's directory."""
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nRUN echo hi > /hi\n"})
    proc = run_cli("--root", store_root.name, "build", str(ctx), "--platform", "linux/amd64", "-t", "rel:1",
                   "--load", cwd=store_root.parent, env=EPOCH)
    assert proc.returncode == 0
    [image] = images_of(store_root, "rel:1")
    assert layer_file(store_root, image, len(image.manifest.layers) - 1, "hi") == b"hi\n"
