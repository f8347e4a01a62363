"""Worker test helpers: in-memory tar building, tree snapshots, and facility checks (root, runc, overlay, binfmt)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class E:
    """One tar entry to build: kind is file|dir|symlink|link|chr|blk|fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    pax: tuple[tuple[str, str], ...] = ()
    dev: tuple[int, int] = (0, 0)


_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "link": tarfile.LNKTYPE,
          "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}


def add_member(tf: tarfile.TarFile, e: E) -> None:
    """Append entry ``e`` (an ``E`` or anything with the same fields) to ``tf``."""
    ti = tarfile.TarInfo(e.name)
    ti.type = _TYPES[e.kind]
    ti.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
    ti.uid, ti.gid, ti.mtime = e.uid, e.gid, e.mtime
    ti.linkname = e.link
    ti.devmajor, ti.devminor = e.dev
    ti.pax_headers = dict(e.pax)
    if e.kind == "file":
        ti.size = len(e.data)
        tf.addfile(ti, io.BytesIO(e.data))
    else:
        tf.addfile(ti)


def make_tar(entries: Iterable[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            add_member(tf, e)
    return buf.getvalue()


def tree(root: Path) -> dict[str, tuple]:
    """A comparable picture of a directory tree (type, mode, uid, gid, content hash / link target)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra: object = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                extra = None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


@pytest.fixture
def sandbox(tmp_path: Path):
    """(root, sentinel): an empty target root and a sibling directory that must stay untouched."""
    root = tmp_path / "root"
    sentinel = tmp_path / "sentinel"
    root.mkdir()
    sentinel.mkdir()
    (sentinel / "passwd").write_text("sentinel\n")
    os.chmod(sentinel / "passwd", 0o400)
    (sentinel / "etc").mkdir()
    (sentinel / "etc" / "shadow").write_text("secret\n")
    before = tree(sentinel)
    yield root, sentinel
    assert tree(sentinel) == before, "sentinel directory beside the root was changed"


def is_root() -> bool:
    return os.geteuid() == 0


def have_runc() -> bool:
    return shutil.which(os.environ.get("POLYARCH_RUNTIME", "runc")) is not None


needs_root = pytest.mark.skipif(not is_root(), reason="needs root")
