"""The build command's edges: --call/--check through the real command, bad flags → one line and exit code,
progress formats, and the pure parts of the solver (cache keys, the SQLite cache, progress rendering)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from polyarch import ops
from polyarch.platform import Platform
from polyarch.progress import Progress, make_renderer
from polyarch.solver import cachekey
from polyarch.solver.cache import BuildCache
from polyarch.solver.copylayer import Entry, content_key

from .conftest import build, write_tree


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1 AS base\nCOPY a /a\n", "a": "a\n"})


def test_call_and_check_still_work(store_root: Path, ctx: Path) -> None:
    out = build(store_root, ctx, "--call", "outline").stdout
    assert "TARGET" in out or "base" in out
    proc = build(store_root, ctx, "--check")
    assert proc.returncode == 0


@pytest.mark.parametrize("args,code,needle", [
    (("--load",), 2, "need a name"),
    (("--platform", "linux/bogus"), 1, "bogus"),
    (("-o", "type=nope,dest=x"), 2, "unknown output type"),
    (("-f", "/nonexistent/Dockerfile"), 2, "cannot read"),
    (("--target", "bsae"), 2, "did you mean"),
    (("-t", "UPPER:bad tag"), 1, "UPPER"),
    (("--secret", "id=s,src=/nonexistent"), 2, "cannot read"),
    (("--label", "novalue"), 2, "KEY=VALUE"),
])
def test_bad_flags_are_one_line_errors(store_root: Path, ctx: Path, args: tuple[str, ...], code: int,
                                       needle: str) -> None:
    proc = build(store_root, ctx, *args, check=False)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_dockerfile_that_is_not_utf8_is_one_line_error(store_root: Path, ctx: Path) -> None:
    (ctx / "Dockerfile.latin1").write_bytes(b"FROM scratch\nLABEL name=caf\xe9\n")
    proc = build(store_root, ctx, "-f", str(ctx / "Dockerfile.latin1"), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "not UTF-8" in proc.stderr and "Traceback" not in proc.stderr


def test_rawjson_and_quiet_progress(store_root: Path, ctx: Path) -> None:
    proc = build(store_root, ctx, "--progress", "rawjson")
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    vertexes = [v for e in events for v in e.get("vertexes", [])]
    copy = [v for v in vertexes if "COPY a /a" in v["name"]]
    assert copy and copy[0]["started"] and any(v.get("completed") for v in copy)
    quiet = build(store_root, ctx, "-q", "-t", "q:1", "--load")
    assert quiet.stdout.strip().startswith("sha256:") and "#" not in quiet.stderr


def test_plain_renderer_lines() -> None:
    out = io.StringIO()
    p = Progress(make_renderer("plain", out))
    with p.vertex("[linux/arm64 builder 3/5] RUN go build") as h:
        h.log("compiling")
    p.cached("[linux/arm64 2/5] COPY . .")
    with pytest.raises(RuntimeError), p.vertex("[4/5] RUN false"):
        raise RuntimeError("exit code: 1")
    lines = out.getvalue().splitlines()
    assert lines[0] == "#1 [linux/arm64 builder 3/5] RUN go build"
    assert lines[1].startswith("#1 0.") and lines[1].endswith(" compiling")
    assert lines[2].startswith("#1 DONE ") and lines[2].endswith("s")
    assert "#2 CACHED" in lines and "#3 ERROR: exit code: 1" in lines


def test_cache_keys_follow_inputs_not_descriptions() -> None:
    a = ops.Mkdir(root=ops.Scratch(), path="/app", description="[1/2] WORKDIR /app")
    b = ops.Mkdir(root=ops.Scratch(), path="/app", description="[9/9] WORKDIR /app")
    assert cachekey.vertex_key(a, ["k"]) == cachekey.vertex_key(b, ["k"])
    assert cachekey.vertex_key(a, ["k"]) != cachekey.vertex_key(a, ["other"])
    e1 = ops.Exec(root=ops.Scratch(), args=("true",), platform=Platform("linux", "arm64"))
    e2 = ops.Exec(root=ops.Scratch(), args=("true",), platform=Platform("linux", "amd64"))
    assert cachekey.vertex_key(e1, ["k"]) != cachekey.vertex_key(e2, ["k"])
    assert cachekey.image_key("sha256:aa") != cachekey.image_key("sha256:bb")


def test_content_key_ignores_mtime_but_not_content(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("one")
    hashes = {}

    def hash_file(path: str, st: object) -> str:
        hashes[path] = Path(path).read_text()
        return hashes[path]

    base = [Entry("f", "file", 0o644, 0, 0, host=str(f), size=3, mtime=1)]
    moved = [Entry("f", "file", 0o644, 0, 0, host=str(f), size=3, mtime=2)]
    assert content_key(base, hash_file) == content_key(moved, hash_file)
    chmod = [Entry("f", "file", 0o755, 0, 0, host=str(f), size=3, mtime=1)]
    assert content_key(base, hash_file) != content_key(chmod, hash_file)
    before = content_key(base, hash_file)
    f.write_text("two")
    assert content_key(base, hash_file) != before


def test_build_cache_roundtrip_and_no_cache(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path / "c.db")
    assert cache.get("k") == ""
    cache.put("k", None)
    assert cache.get("k") is None
    cache.put_file_hash("/x", "sig", "sha256:1")
    assert cache.file_hash("/x", "sig") == "sha256:1" and cache.file_hash("/x", "other") is None
    cache.close()
    assert BuildCache(tmp_path / "c.db", enabled=False).get("k") == ""


def test_annotations_on_manifests_index_and_descriptors(store_root: Path, ctx: Path) -> None:
    from polyarch.content.images import ImageStore
    from polyarch.content.store import ContentStore

    build(store_root, ctx, "--platform", "linux/amd64,linux/arm64", "-t", "ann:1", "--load",
          "--annotation", "org.opencontainers.image.source=https://example.com/app",
          "--annotation", "index:org.example.index=yes",
          "--annotation", "manifest-descriptor[linux/arm64]:org.example.arch=arm")
    images = ImageStore(ContentStore(store_root))
    index = images.read_document(images.lookup("ann:1")).document
    assert index.annotations == {"org.example.index": "yes"}
    by_arch = {d.platform.architecture: d for d in index.manifests}  # type: ignore[union-attr]
    assert by_arch["arm64"].annotations == {"org.example.arch": "arm"} and not by_arch["amd64"].annotations
    for img in images.images(images.lookup("ann:1")):
        assert img.manifest.annotations == {"org.opencontainers.image.source": "https://example.com/app"}
    bad = build(store_root, ctx, "--annotation", "index-descriptor:x=y", check=False)
    assert bad.returncode == 2 and "unsupported --annotation" in bad.stderr


def test_tty_renderer_draws_steps_and_closes() -> None:
    out = io.StringIO()
    p = Progress(make_renderer("tty", out))
    with p.vertex("[linux/arm64 2/3] RUN make") as h:
        h.log("building")
    p.cached("[linux/amd64 2/3] RUN make")
    p.close()
    text = out.getvalue()
    assert "[linux/arm64 2/3] RUN make" in text and "CACHED" in text
    with pytest.raises(Exception, match="unknown progress mode"):
        make_renderer("fancy", out)
