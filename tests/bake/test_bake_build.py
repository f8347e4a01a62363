"""``polyarch bake`` end to end: two targets × two platforms in one solve, shared stage once, --load and --push
(to a real ``polyarch registry serve`` on a loopback port), no-change rebuild all cached, target: contexts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.platform import host

from .fixture import write_project

pytestmark = [pytest.mark.root, pytest.mark.binfmt]
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


@pytest.fixture(autouse=True)
def _need_runtime() -> None:
    if os.geteuid() != 0:
        pytest.skip("RUN steps need root")
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    if host().architecture != "arm64" and not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        pytest.skip("qemu-aarch64 is not registered in binfmt_misc (polyarch binfmt --install arm64)")


def events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def names(evs: list[dict[str, object]], kind: str) -> list[str]:
    """Names of the vertices of rawjson (BuildKit's SolveStatus) lines: ``VertexStarted`` (run, first update
    of each) or ``VertexCached``."""
    out = []
    for e in evs:
        for v in e.get("vertexes", []):  # type: ignore[attr-defined]
            cached = kind == "VertexCached" and v.get("cached")
            if cached or (kind == "VertexStarted" and not v.get("cached") and "completed" not in v):
                out.append(str(v["name"]))
    return out


def _run(root: Path, project: Path, args: tuple[str, ...], check: bool) -> subprocess.CompletedProcess[str]:
    """``polyarch bake --progress rawjson ARGS`` in ``project`` (bake reads its files from the working directory)."""
    env = {**os.environ, **EPOCH, "POLYARCH_ROOT": str(root)}
    proc = subprocess.run([sys.executable, "-m", "polyarch", "bake", "--progress", "rawjson", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"bake {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


def test_two_targets_one_solve_load(store_root: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj")
    first = _run(store_root, project, ("--load", "--metadata-file", str(tmp_path / "meta.json")), True)
    evs = events(first.stderr)
    started = names(evs, "VertexStarted")
    shared = [n for n in started if "RUN echo shared" in n]
    # the base stage both targets share: once per platform, not once per target and platform
    assert sorted(shared) == sorted(["[linux/amd64 base 2/2] RUN echo shared > /shared.txt && mkdir -p /app",
                                     "[linux/arm64 base 2/2] RUN echo shared > /shared.txt && mkdir -p /app"])
    # the builder stage runs on the build platform only, once per target platform (different TARGETARCH)
    assert sum("builder" in n and "RUN mkdir /out" in n for n in started) == 2
    images = ImageStore(ContentStore(store_root))
    for ref in ("localhost:5000/bake/app:1", "localhost:5000/bake/tool:1"):
        got = [str(i.platform) for i in images.images(images.lookup(ref))]
        assert got == ["linux/amd64", "linux/arm64"]
    tool_arm = images.images(images.lookup("localhost:5000/bake/tool:1"))[1]
    assert tool_arm.config.config.cmd == ("/usr/local/bin/tool",)
    app_amd, tool_amd = (images.images(images.lookup(r))[0] for r in
                         ("localhost:5000/bake/app:1", "localhost:5000/bake/tool:1"))
    # both images carry the very same base-stage layer (one blob)
    assert app_amd.manifest.layers[:2] == tool_amd.manifest.layers[:2]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert set(meta) == {"app", "tool"}
    assert meta["app"]["containerimage.digest"] == str(images.lookup("localhost:5000/bake/app:1").digest)
    assert not [n for n, _ in images.names() if n.startswith("polyarch.bake/")]

    # no change: every step is served from the cache, same digests
    again = _run(store_root, project, ("--load",), True)
    evs2 = events(again.stderr)
    assert not [n for n in names(evs2, "VertexStarted") if "RUN" in n or "COPY" in n]
    assert sum("RUN echo shared" in n for n in names(evs2, "VertexCached")) == 2
    assert str(images.lookup("localhost:5000/bake/app:1").digest) == meta["app"]["containerimage.digest"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    root = tmp_path / "registry-store"
    proc = subprocess.Popen([sys.executable, "-m", "polyarch", "registry", "serve", "--addr", f"127.0.0.1:{port}"],
                            env={**os.environ, "POLYARCH_ROOT": str(root)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"registry did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_push_gives_both_indexes(store_root: Path, tmp_path: Path, registry: str) -> None:
    project = write_project(tmp_path / "proj")
    _run(store_root, project, ("--push", "--set", f"app.tags={registry}/bake/app:1",
                               "--set", f"tool.tags={registry}/bake/tool:1"), True)
    accept = "application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.list.v2+json"
    for repo in ("bake/app", "bake/tool"):
        r = httpx.get(f"http://{registry}/v2/{repo}/manifests/1", headers={"Accept": accept})
        assert r.status_code == 200, r.text
        index = r.json()
        plats = [f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]]
        assert plats == ["linux/amd64", "linux/arm64"]


def test_target_context_builds_dependency_first(store_root: Path, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "base.Dockerfile").write_text("FROM base/busybox:1\nRUN echo from-base > /marker\n")
    (project / "Dockerfile").write_text("FROM base/busybox:1\nCOPY --from=basectx /marker /copied\n")
    (project / "docker-bake.hcl").write_text('''
target "base" {
  dockerfile = "base.Dockerfile"
  platforms  = ["linux/amd64"]
}
target "default" {
  contexts  = { basectx = "target:base" }
  platforms = ["linux/amd64"]
  tags      = ["bake/ctx:1"]
}
''')
    _run(store_root, project, ("--load",), True)
    images = ImageStore(ContentStore(store_root))
    img = images.images(images.lookup("bake/ctx:1"))[0]
    assert len(img.manifest.layers) == 2
    assert not [n for n, _ in images.names() if n.startswith("polyarch.bake/")]


def test_failing_target_exports_nothing(store_root: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj")
    (project / "app.sh").unlink()
    proc = _run(store_root, project, ("--load", "--progress", "plain"), False)
    assert proc.returncode != 0
    assert "app.sh" in proc.stderr.splitlines()[-1] or "app.sh" in proc.stderr
    images = ImageStore(ContentStore(store_root))
    assert [n for n, _ in images.names()] == ["base/busybox:1"]


def test_failure_in_a_later_round_exports_nothing(store_root: Path, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "dep.Dockerfile").write_text("FROM base/busybox:1\nRUN echo dep > /dep\n")
    (project / "Dockerfile").write_text("FROM base/busybox:1\nCOPY --from=depctx /dep /dep\nCOPY missing /m\n")
    (project / "docker-bake.hcl").write_text('''
group "default" {
  targets = ["dep", "app"]
}
target "dep" {
  dockerfile = "dep.Dockerfile"
  tags       = ["bake/dep:1"]
}
target "app" {
  contexts = { depctx = "target:dep" }
  tags     = ["bake/app:1"]
}
''')
    proc = _run(store_root, project, ("--load",), False)
    assert proc.returncode != 0
    assert "missing" in proc.stderr
    images = ImageStore(ContentStore(store_root))
    assert [n for n, _ in images.names()] == ["base/busybox:1"]  # dep built, but not exported; no temp names


def test_targets_with_different_contexts_share_a_stage(store_root: Path, tmp_path: Path) -> None:
    """Two targets, each with its own context directory: the stage they share still runs once per platform, and
    each target's COPY reads its own context."""
    project = tmp_path / "proj"
    for sub, text in (("svc-a", "a"), ("svc-b", "b")):
        (project / sub).mkdir(parents=True)
        (project / sub / "Dockerfile").write_text(
            'FROM base/busybox:1 AS base\nRUN echo shared > /shared.txt\n\nFROM base\nCOPY msg.txt /msg.txt\n')
        (project / sub / "msg.txt").write_text(f"from {text}\n")
    (project / "docker-bake.hcl").write_text(
        'group "default" { targets = ["a", "b"] }\n'
        'target "a" {\n  context = "svc-a"\n  tags = ["ctx/a:1"]\n  platforms = ["linux/amd64", "linux/arm64"]\n}\n'
        'target "b" {\n  context = "svc-b"\n  tags = ["ctx/b:1"]\n  platforms = ["linux/amd64", "linux/arm64"]\n}\n')
    proc = _run(store_root, project, ("--load",), True)
    started = names(events(proc.stderr), "VertexStarted")
    assert sorted(n for n in started if "RUN echo shared" in n) == [
        "[linux/amd64 base 2/2] RUN echo shared > /shared.txt",
        "[linux/arm64 base 2/2] RUN echo shared > /shared.txt"]
    images = ImageStore(ContentStore(store_root))
    for name, text in (("ctx/a:1", b"from a\n"), ("ctx/b:1", b"from b\n")):
        for image in images.images(images.lookup(name)):

            import tarfile

            from polyarch.content.compression import decompressed

            with images.store.open(image.manifest.layers[-1].digest) as raw, \
                    tarfile.open(fileobj=decompressed(raw), mode="r|") as tar:
                files = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]
            assert files == {"msg.txt": text}, (name, image.platform)

