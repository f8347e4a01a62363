"""A sentinel directory that plays the host's part: hostile input aims at it, and it must stay byte-identical.

``make_sentinel(path)`` fills ``path`` with one of each kind of entry a host has (files with known bytes, an
empty file, an empty directory, a subdirectory, a symlink, a 0644 file with a fixed mtime, an xattr);
``snapshot(path)`` is a comparable picture of the whole tree: type, mode, owner, size, mtime, bytes, link
target, xattrs, for the directory itself and everything under it. Access times are left out (reads change them).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

__all__ = ["SENTINEL_FILES", "make_sentinel", "snapshot"]

MTIME_NS = 1_600_000_000 * 10**9
# relative path -> bytes of the regular files planted in the sentinel (hostile layers aim at these names)
SENTINEL_FILES: dict[str, bytes] = {
    "passwd": b"root:x:0:0:sentinel:/root:/bin/sh\n",
    "etc/passwd": b"sentinel etc/passwd\n",
    "etc/shadow": b"sentinel shadow\n",
    "a/file": b"sentinel a/file\n",
    "file": b"sentinel file\n",
    "empty": b"",
}


def make_sentinel(path: Path) -> Path:
    """Create the sentinel tree at ``path`` (which must not exist); returns ``path``."""
    path.mkdir()
    for rel, data in SENTINEL_FILES.items():
        f = path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        os.chmod(f, 0o644)
    os.chmod(path / "etc" / "shadow", 0o600)
    (path / "emptydir").mkdir()
    (path / "sub" / "deeper").mkdir(parents=True)
    (path / "sub" / "deeper" / "leaf").write_bytes(b"leaf\n")
    os.symlink("etc/passwd", path / "link")
    os.setxattr(path / "file", "user.sentinel", b"kept")
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in [*filenames, *dirnames]:
            os.utime(os.path.join(dirpath, name), ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return path


def _xattrs(p: str, is_link: bool) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(p, follow_symlinks=not is_link)
    except OSError:
        return ()
    out = []
    for n in sorted(names):
        try:
            out.append((n, os.getxattr(p, n, follow_symlinks=not is_link)))
        except OSError:
            out.append((n, b"?"))
    return tuple(out)


def _entry(p: str) -> tuple[object, ...]:
    st = os.lstat(p)
    kind = stat.S_IFMT(st.st_mode)
    if stat.S_ISREG(st.st_mode):
        with open(p, "rb") as f:
            extra: object = hashlib.sha256(f.read()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        extra = os.readlink(p)
    else:
        extra = None
    return (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
            st.st_mtime_ns, st.st_nlink if not stat.S_ISDIR(st.st_mode) else 0, extra,
            _xattrs(p, stat.S_ISLNK(st.st_mode)))


def snapshot(path: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``path`` (and ``path`` itself as ``.``) → its type, mode, owner, size, mtime, link
    count, content hash or link target, and xattrs."""
    out = {".": _entry(str(path))}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, path)] = _entry(p)
    return out
