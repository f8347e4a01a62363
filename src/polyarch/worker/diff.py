"""Directory trees → reproducible OCI layer tars, written through ``content.compression.LayerWriter``.

API::

    layer_from_dir(store, directory, options) -> LayerResult        # every entry of the tree (COPY-only steps)
    layer_from_upper(store, upper, options) -> LayerResult          # an overlayfs upper dir: whiteouts converted
    layer_from_diff(store, lower, upper, options) -> LayerResult    # two full trees (copying snapshotter)
    write_tree / write_upper / write_diff(..., out)                 # the same, into any writable binary stream

Reproducible output: PAX format, entries sorted by name bytes (depth first, a directory before its children),
numeric uid/gid without names, no atime/ctime, mtimes clamped to ``LayerOptions.epoch`` when set (the build's
``SOURCE_DATE_EPOCH``, integer seconds), whiteouts with mtime 0. Xattrs kept: ``user.*``, ``security.capability``, ``trusted.*`` except
``trusted.overlay.*`` (and ``user.overlay.*`` in rootless mode). Hardlinks inside the tree become hardlink entries to the first name. Sockets are skipped.

Overlay conversion: a 0:0 character device → ``.wh.NAME``; a directory with ``trusted.overlay.opaque=y`` (rootless: ``user.``) → the
directory entry followed by ``.wh..wh..opq`` (fuse-overlayfs's own marker entries skipped, ``overlay.marker_names``). Tree diff: compares type, mode, owner, size, mtime (ns), link
target, device numbers and xattrs; a path only in ``lower`` → ``.wh.NAME``; changed paths bring their parent
directories along.
"""

from __future__ import annotations

import operator
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from polyarch.content.compression import LayerResult, LayerWriter
from polyarch.content.store import ContentStore
from polyarch.errors import StoreError

from .overlay import marker_names, opaque_xattr, overlay_prefix
from .tarwriter import TarWriter

__all__ = [
    "LayerOptions",
    "layer_from_diff",
    "layer_from_dir",
    "layer_from_upper",
    "write_diff",
    "write_tree",
    "write_upper",
]

_XATTR_KEEP = ("user.", "security.capability", "trusted.")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_REGULAR = _OPEN_FLAGS | os.O_NONBLOCK  # a FIFO swapped in after the listing must not block the open
_NAME = operator.attrgetter("name")
_UNCOMPRESSED_CHUNK = 2 << 20  # larger writes measured faster on average but with stalls (bench_worker)
_S_IFMT, _S_IFREG, _S_IFDIR, _S_IFCHR = 0o170000, stat.S_IFREG, stat.S_IFDIR, stat.S_IFCHR


@dataclass(frozen=True, slots=True)
class LayerOptions:
    compression: str = "gzip"
    level: int | None = None
    oci: bool = True
    epoch: int | None = None  # clamp mtimes to this (the build's SOURCE_DATE_EPOCH); None: no clamping
    exclude: frozenset[str] = frozenset()  # relative paths (and their subtrees) left out


def _xattrs(path: str | bytes | int) -> dict[str, bytes]:
    try:
        names = os.listxattr(path) if isinstance(path, int) else os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return _kept_xattrs(path, names) if names else {}


def _kept_xattrs(path: str | bytes | int, names: list[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name in sorted(names):
        if not name.startswith(_XATTR_KEEP) or name.startswith(("trusted.overlay.", overlay_prefix())):
            continue
        try:
            out[name] = os.getxattr(path, name) if isinstance(path, int) else \
                os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def _is_opaque(path: bytes) -> bool:
    try:
        return os.getxattr(path, opaque_xattr(), follow_symlinks=False) == b"y"
    except OSError:
        return False


class _Writer:
    """Writes tar entries for host paths, reproducibly. Names and paths are bytes (as the kernel has them)."""

    def __init__(self, out: IO[bytes], epoch: int | None, *, threaded: bool = False, chunk: int | None = None
                 ) -> None:
        self.tw = TarWriter(out, threaded=threaded, chunk=chunk)
        self.epoch = epoch
        self.links: dict[tuple[int, int], bytes] = {}

    def regular(self, rel: bytes, path: bytes) -> bool:
        """The hot path, for a name the directory listing says is a regular file: open, then fstat (one path
        lookup, no lstat). False when it is not a regular file after all (the caller takes ``add``)."""
        try:
            fd = os.open(path, _OPEN_REGULAR)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if st.st_mode & _S_IFMT != _S_IFREG:
                return False
            self._file(rel, st, fd)
            return True
        finally:
            os.close(fd)

    def _mtime(self, st: os.stat_result) -> int:
        mtime = int(st.st_mtime)
        return self.epoch if self.epoch is not None and mtime > self.epoch else mtime

    def _file(self, rel: bytes, st: os.stat_result, fd: int) -> None:
        mtime = self._mtime(st)
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self.links.get(key)
            if first is not None:
                self.tw.entry(rel, "link", linkname=first, mode=st.st_mode & 0o7777, uid=st.st_uid,
                              gid=st.st_gid, mtime=mtime)
                return
            self.links[key] = rel
        try:
            names = os.listxattr(fd)
        except OSError:
            names = None
        self.tw.file(rel, st.st_mode & 0o7777, st.st_uid, st.st_gid, mtime, st.st_size, fd,
                     _kept_xattrs(fd, names) if names else None)

    def add(self, rel: bytes, path: bytes, st: os.stat_result) -> None:
        mode = st.st_mode
        if stat.S_ISREG(mode):
            fd = os.open(path, _OPEN_FLAGS)
            try:
                self._file(rel, os.fstat(fd), fd)
            finally:
                os.close(fd)
            return
        if stat.S_ISDIR(mode):
            kind, linkname, dev = "dir", b"", (0, 0)
        elif stat.S_ISLNK(mode):
            kind, linkname, dev = "symlink", os.readlink(path), (0, 0)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind, linkname = ("chr" if stat.S_ISCHR(mode) else "blk"), b""
            dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        elif stat.S_ISFIFO(mode):
            kind, linkname, dev = "fifo", b"", (0, 0)
        else:
            return  # sockets and anything else: skipped
        self.tw.entry(rel, kind, mode=stat.S_IMODE(mode), uid=st.st_uid, gid=st.st_gid, mtime=self._mtime(st),
                      linkname=linkname, dev=dev, xattrs=_xattrs(path))

    def whiteout(self, rel: bytes) -> None:
        self.tw.entry(rel, "file", mode=0o644, mtime=0)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.tw.close()
        else:
            self.tw.discard()  # never leave a write in flight into a layer that is being aborted


def _entries(path: bytes) -> list[os.DirEntry[bytes]]:
    """A directory's entries sorted by name bytes (each caches its lstat once asked)."""
    with os.scandir(path) as it:
        items = list(it)
    items.sort(key=_NAME)
    return items


def _walk(writer: _Writer, root: bytes, rel: bytes, *, overlay: bool, exclude: frozenset[bytes]) -> None:
    """Every entry under ``root``, named ``rel`` + its path (``rel`` is empty or ends with a slash)."""
    regular = writer.regular
    marks = marker_names() if overlay else frozenset()
    for entry in _entries(root):
        child = rel + entry.name
        if (exclude and child in exclude) or (marks and entry.name in marks):
            continue
        if entry.is_file(follow_symlinks=False) and regular(child, entry.path):  # the listing's d_type: no syscall
            continue
        st = entry.stat(follow_symlinks=False)
        kind = st.st_mode & _S_IFMT
        if overlay and kind == _S_IFCHR and st.st_rdev == 0:  # an overlay whiteout
            writer.whiteout(rel + b".wh." + entry.name)
            continue
        writer.add(child, entry.path, st)
        if kind == _S_IFDIR:
            if overlay and _is_opaque(entry.path):
                writer.whiteout(child + b"/.wh..wh..opq")
            _walk(writer, entry.path, child + b"/", overlay=overlay, exclude=exclude)


def _encoded(exclude: frozenset[str]) -> frozenset[bytes]:
    return frozenset(os.fsencode(path) for path in exclude)


def write_tree(directory: str | os.PathLike[str], out: IO[bytes], *, epoch: int | None = None,
               exclude: frozenset[str] = frozenset(), threaded: bool = False, chunk: int | None = None) -> None:
    """Every entry under ``directory`` (not the directory itself) as a tar."""
    with _Writer(out, epoch, threaded=threaded, chunk=chunk) as w:
        _walk(w, os.fsencode(directory), b"", overlay=False, exclude=_encoded(exclude))


def write_upper(upper: str | os.PathLike[str], out: IO[bytes], *, epoch: int | None = None,
                exclude: frozenset[str] = frozenset(), threaded: bool = False, chunk: int | None = None) -> None:
    """An overlayfs upper directory as an OCI layer (overlay whiteouts and opaque dirs converted)."""
    with _Writer(out, epoch, threaded=threaded, chunk=chunk) as w:
        _walk(w, os.fsencode(upper), b"", overlay=True, exclude=_encoded(exclude))


def _signature(path: bytes, st: os.stat_result) -> tuple[Any, ...]:
    mode = st.st_mode
    extra: Any = None
    if stat.S_ISLNK(mode):
        extra = os.readlink(path)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        extra = st.st_rdev
    size = st.st_size if stat.S_ISREG(mode) else 0
    mtime = st.st_mtime_ns if not stat.S_ISDIR(mode) else None
    return (mode, st.st_uid, st.st_gid, size, mtime, extra, tuple(_xattrs(path).items()))


def _dir_meta(path: bytes, st: os.stat_result) -> tuple[Any, ...]:
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, tuple(_xattrs(path).items()))


def _by_name(path: bytes) -> dict[bytes, tuple[bytes, os.stat_result]]:
    return {e.name: (e.path, e.stat(follow_symlinks=False)) for e in _entries(path)}


def _diff(w: _Writer, lower: bytes, upper: bytes, rel: bytes, pending: list[tuple[bytes, bytes, os.stat_result]],
          exclude: frozenset[bytes]) -> None:
    """Entries of ``upper`` that differ from ``lower``, whiteouts for names only in ``lower``. ``pending`` holds
    unchanged parent directories, written only once something below them changed."""
    lows, highs = _by_name(lower), _by_name(upper)

    def flush() -> None:
        for prel, ppath, pst in pending:
            w.add(prel, ppath, pst)
        pending.clear()

    for name in sorted(lows.keys() | highs.keys()):
        child = rel + name
        if child in exclude:
            continue
        low, high = lows.get(name), highs.get(name)
        if high is None:
            flush()
            w.whiteout(rel + b".wh." + name)
            continue
        hpath, hst = high
        if low is None or stat.S_IFMT(low[1].st_mode) != stat.S_IFMT(hst.st_mode):
            flush()
            w.add(child, hpath, hst)
            if stat.S_ISDIR(hst.st_mode):
                _walk(w, hpath, child + b"/", overlay=False, exclude=exclude)
            continue
        lpath, lst = low
        if stat.S_ISDIR(hst.st_mode):
            if _dir_meta(lpath, lst) != _dir_meta(hpath, hst):
                flush()
                w.add(child, hpath, hst)
                _diff(w, lpath, hpath, child + b"/", pending, exclude)
            else:
                pending.append((child, hpath, hst))
                _diff(w, lpath, hpath, child + b"/", pending, exclude)
                if pending and pending[-1][0] == child:
                    pending.pop()
        elif _signature(lpath, lst) != _signature(hpath, hst):
            flush()
            w.add(child, hpath, hst)


def write_diff(lower: str | os.PathLike[str], upper: str | os.PathLike[str], out: IO[bytes], *,
               epoch: int | None = None, exclude: frozenset[str] = frozenset(), threaded: bool = False,
               chunk: int | None = None) -> None:
    """The changes that turn tree ``lower`` into tree ``upper``, as an OCI layer tar."""
    with _Writer(out, epoch, threaded=threaded, chunk=chunk) as w:
        _diff(w, os.fsencode(lower), os.fsencode(upper), b"", [], _encoded(exclude))


def _to_store(store: ContentStore, options: LayerOptions,
              produce: Callable[[IO[bytes], int | None, int | None], None]) -> LayerResult:
    """Run ``produce(out, epoch, chunk)`` into a new layer blob. Uncompressed layers take large writes (write
    boundaries change nothing there; fewer hand-offs between the walking and the hashing/writing threads)."""
    epoch = options.epoch
    chunk = _UNCOMPRESSED_CHUNK if options.compression in ("none", "uncompressed") else None
    with LayerWriter(store, options.compression, level=options.level, oci=options.oci) as lw:
        try:
            produce(lw, epoch, chunk)  # type: ignore[arg-type]
        except OSError as exc:
            raise StoreError(f"cannot write layer: {exc}") from exc
        return lw.close_layer()


def layer_from_dir(store: ContentStore, directory: str | os.PathLike[str],
                   options: LayerOptions = LayerOptions()) -> LayerResult:
    return _to_store(store, options, lambda out, epoch, chunk: write_tree(
        directory, out, epoch=epoch, exclude=options.exclude, threaded=True, chunk=chunk))


def layer_from_upper(store: ContentStore, upper: str | os.PathLike[str],
                     options: LayerOptions = LayerOptions()) -> LayerResult:
    return _to_store(store, options, lambda out, epoch, chunk: write_upper(
        upper, out, epoch=epoch, exclude=options.exclude, threaded=True, chunk=chunk))


def layer_from_diff(store: ContentStore, lower: str | os.PathLike[str], upper: str | os.PathLike[str],
                    options: LayerOptions = LayerOptions()) -> LayerResult:
    return _to_store(store, options, lambda out, epoch, chunk: write_diff(
        lower, upper, out, epoch=epoch, exclude=options.exclude, threaded=True, chunk=chunk))
