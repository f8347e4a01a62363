"""Build test helpers: write a build context, run ``polyarch build`` as a user would, read the store back."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from polyarch.content.compression import decompressed
from polyarch.content.images import Image, ImageStore
from polyarch.content.store import ContentStore
from polyarch.platform import Platform
from tests.conftest import run_cli

PLATFORMS = "linux/amd64,linux/arm64,linux/arm/v7"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def build(root: Path, context: Path, *args: str, check: bool = True, env: dict[str, str] | None = None):
    """``polyarch build CONTEXT --progress plain ARGS`` (stderr holds the progress)."""
    return run_cli("build", str(context), "--progress", "plain", *args, root=root, check=check,
                   env={**EPOCH, **(env or {})})


def images_of(root: Path, name: str) -> list[Image]:
    images = ImageStore(ContentStore(root))
    return images.images(images.lookup(name))


def layer_members(root: Path, image: Image, index: int) -> dict[str, tarfile.TarInfo]:
    store = ContentStore(root)
    with store.open(image.manifest.layers[index].digest) as raw:
        data = decompressed(raw).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


def layer_file(root: Path, image: Image, index: int, name: str) -> bytes:
    store = ContentStore(root)
    with store.open(image.manifest.layers[index].digest) as raw:
        data = decompressed(raw).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        f = tf.extractfile(name)
        assert f is not None
        return f.read()


def steps(stderr: str) -> dict[int, tuple[str, str]]:
    """Plain progress → {id: (name, final status DONE/CACHED/ERROR)} for the steps shown."""
    names: dict[int, str] = {}
    status: dict[int, str] = {}
    for line in stderr.splitlines():
        m = re.match(r"^#(\d+) (.*)$", line)
        if not m:
            continue
        vid, rest = int(m.group(1)), m.group(2)
        if rest in ("CACHED",) or rest.startswith(("DONE", "ERROR")):
            status[vid] = rest.split()[0].rstrip(":")
        elif vid not in names and not re.match(r"^\d+\.\d+ ", rest):
            names[vid] = rest
    return {vid: (names.get(vid, ""), status.get(vid, "")) for vid in names}


def by_name(stderr: str, needle: str) -> list[str]:
    return [st for name, st in steps(stderr).values() if needle in name]


def is_root() -> bool:
    return os.geteuid() == 0


def can_run(platform: str) -> bool:
    """Root, runc, and (for foreign platforms) a qemu binfmt handler."""
    if not is_root() or shutil.which(os.environ.get("POLYARCH_RUNTIME", "runc")) is None:
        return False
    from polyarch.platform import parse, runs_natively

    p: Platform = parse(platform)
    if runs_natively(p):
        return True
    arch = {"arm64": "aarch64", "arm": "arm", "amd64": "x86_64"}.get(p.architecture, p.architecture)
    return Path(f"/proc/sys/fs/binfmt_misc/qemu-{arch}").exists()


needs_run: Callable[[str], pytest.MarkDecorator] = lambda platforms: pytest.mark.skipif(  # noqa: E731
    not all(can_run(p) for p in platforms.split(",")),
    reason=f"needs root, runc and qemu binfmt handlers for {platforms} (polyarch binfmt --install all)")


def serve_directory(directory: Path):  # type: ignore[no-untyped-def]
    """A loopback HTTP server over ``directory`` (quiet); returns (server, base URL). Call ``server.shutdown()``."""
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
