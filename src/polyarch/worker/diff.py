"""Directory trees → reproducible OCI layer tars, written through ``content.compression.LayerWriter``.

API::

    layer_from_dir(store, directory, options) -> LayerResult        # every entry of the tree (COPY-only steps)
    layer_from_upper(store, upper, options) -> LayerResult          # an overlayfs upper dir: whiteouts converted
    layer_from_diff(store, lower, upper, options) -> LayerResult    # two full trees (copying snapshotter)
    write_tree / write_upper / write_diff(..., out)                 # the same, into any writable binary stream

Reproducible output: PAX format, entries sorted by name bytes (depth first, a directory before its children),
numeric uid/gid without names, no atime/ctime, mtimes clamped to ``SOURCE_DATE_EPOCH`` when set (integer
seconds), whiteouts with mtime 0. Xattrs kept: ``user.*``, ``security.capability``, ``trusted.*`` except
``trusted.overlay.*``. Hardlinks inside the tree become hardlink entries to the first name. Sockets are skipped.

Overlay conversion: a 0:0 character device → ``.wh.NAME``; a directory with ``trusted.overlay.opaque=y`` → the
directory entry followed by ``.wh..wh..opq``. Tree diff: compares type, mode, owner, size, mtime (ns), link
target, device numbers and xattrs; a path only in ``lower`` → ``.wh.NAME``; changed paths bring their parent
directories along.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from polyarch.content.compression import LayerResult, LayerWriter
from polyarch.content.store import ContentStore
from polyarch.errors import StoreError, UsageError

from .tarwriter import TarWriter

__all__ = [
    "LayerOptions",
    "layer_from_diff",
    "layer_from_dir",
    "layer_from_upper",
    "source_date_epoch",
    "write_diff",
    "write_tree",
    "write_upper",
]

_XATTR_KEEP = ("user.", "security.capability", "trusted.")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# os.fsencode without its Python-level wrapper (hot: once or twice per entry); the same bytes.
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def source_date_epoch() -> int | None:
    """``$SOURCE_DATE_EPOCH`` as an integer, or None when unset or empty.

    :raises UsageError: when set to something that is not an integer.
    """
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH={raw!r} is not an integer number of seconds") from None


@dataclass(frozen=True, slots=True)
class LayerOptions:
    compression: str = "gzip"
    level: int | None = None
    oci: bool = True
    epoch: int | None = None  # clamp mtimes; None = take $SOURCE_DATE_EPOCH at write time
    exclude: frozenset[str] = frozenset()  # relative paths (and their subtrees) left out

    def clamp(self) -> int | None:
        return self.epoch if self.epoch is not None else source_date_epoch()


def _xattrs(path: str | int) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False) if isinstance(path, str) else os.listxattr(path)
    except OSError:
        return {}
    if not names:
        return {}
    out: dict[str, bytes] = {}
    for name in sorted(names):
        if not name.startswith(_XATTR_KEEP) or name.startswith("trusted.overlay."):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False) if isinstance(path, str) else \
                os.getxattr(path, name)
        except OSError:
            continue
    return out


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _is_overlay_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class _Writer:
    """Writes tar entries for host paths, reproducibly."""

    def __init__(self, out: IO[bytes], epoch: int | None, *, threaded: bool = False) -> None:
        self.tw = TarWriter(out, threaded=threaded)
        self.epoch = epoch
        self.links: dict[tuple[int, int], str] = {}

    def add(self, rel: str, path: str, st: os.stat_result) -> None:
        mode = st.st_mode
        mtime = int(st.st_mtime)
        if self.epoch is not None and mtime > self.epoch:
            mtime = self.epoch
        if stat.S_ISREG(mode):
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.links.get(key)
                if first is not None:
                    self.tw.entry(rel, "link", linkname=first, mode=stat.S_IMODE(mode), uid=st.st_uid,
                                  gid=st.st_gid, mtime=mtime)
                    return
                self.links[key] = rel
            fd = os.open(path, _OPEN_FLAGS)
            try:
                # Hot path: no dicts or keyword plumbing per file; the name is encoded once.
                self.tw.file(rel.encode(_FS_ENCODING, _FS_ERRORS), stat.S_IMODE(mode), st.st_uid, st.st_gid,
                             mtime, st.st_size, fd, _xattrs(fd), rel)
            finally:
                os.close(fd)
            return
        meta = {"mode": stat.S_IMODE(mode), "uid": st.st_uid, "gid": st.st_gid, "mtime": mtime}
        if stat.S_ISDIR(mode):
            self.tw.entry(rel, "dir", xattrs=_xattrs(path), **meta)
        elif stat.S_ISLNK(mode):
            self.tw.entry(rel, "symlink", linkname=os.readlink(path), xattrs=_xattrs(path), **meta)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            self.tw.entry(rel, "chr" if stat.S_ISCHR(mode) else "blk", dev=(os.major(st.st_rdev),
                          os.minor(st.st_rdev)), xattrs=_xattrs(path), **meta)
        elif stat.S_ISFIFO(mode):
            self.tw.entry(rel, "fifo", xattrs=_xattrs(path), **meta)
        # sockets and anything else: skipped

    def whiteout(self, rel: str) -> None:
        self.tw.entry(rel, "file", mode=0o644, mtime=0)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.tw.close()
        else:
            self.tw.discard()  # never leave a write in flight into a layer that is being aborted


def _children(path: str) -> list[tuple[str, str, os.stat_result]]:
    """(name, host path, lstat) of a directory's entries, sorted by name bytes."""
    with os.scandir(path) as it:
        items = [(e.name, e.path, e.stat(follow_symlinks=False)) for e in it]
    items.sort(key=lambda t: t[0].encode(_FS_ENCODING, _FS_ERRORS))
    return items


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _walk(writer: _Writer, root: str, rel: str, *, overlay: bool, exclude: frozenset[str]) -> None:
    for name, path, st in _children(root):
        child = _join(rel, name)
        if child in exclude:
            continue
        if overlay and _is_overlay_whiteout(st):
            writer.whiteout(_join(rel, ".wh." + name))
            continue
        writer.add(child, path, st)
        if stat.S_ISDIR(st.st_mode):
            if overlay and _is_opaque(path):
                writer.whiteout(_join(child, ".wh..wh..opq"))
            _walk(writer, path, child, overlay=overlay, exclude=exclude)


def write_tree(directory: str | os.PathLike[str], out: IO[bytes], *, epoch: int | None = None,
               exclude: frozenset[str] = frozenset(), threaded: bool = False) -> None:
    """Every entry under ``directory`` (not the directory itself) as a tar."""
    with _Writer(out, epoch, threaded=threaded) as w:
        _walk(w, os.fspath(directory), "", overlay=False, exclude=exclude)


def write_upper(upper: str | os.PathLike[str], out: IO[bytes], *, epoch: int | None = None,
                exclude: frozenset[str] = frozenset(), threaded: bool = False) -> None:
    """An overlayfs upper directory as an OCI layer (overlay whiteouts and opaque dirs converted)."""
    with _Writer(out, epoch, threaded=threaded) as w:
        _walk(w, os.fspath(upper), "", overlay=True, exclude=exclude)


def _signature(path: str, st: os.stat_result) -> tuple[Any, ...]:
    mode = st.st_mode
    extra: Any = None
    if stat.S_ISLNK(mode):
        extra = os.readlink(path)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        extra = st.st_rdev
    size = st.st_size if stat.S_ISREG(mode) else 0
    mtime = st.st_mtime_ns if not stat.S_ISDIR(mode) else None
    return (mode, st.st_uid, st.st_gid, size, mtime, extra, tuple(_xattrs(path).items()))


def _dir_meta(path: str, st: os.stat_result) -> tuple[Any, ...]:
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, tuple(_xattrs(path).items()))


def _diff(w: _Writer, lower: str, upper: str, rel: str, pending: list[tuple[str, str, os.stat_result]],
          exclude: frozenset[str]) -> None:
    lows = {name: (path, st) for name, path, st in _children(lower)}
    highs = {name: (path, st) for name, path, st in _children(upper)}

    def flush() -> None:
        for prel, ppath, pst in pending:
            w.add(prel, ppath, pst)
        pending.clear()

    for name in sorted(lows.keys() | highs.keys(), key=os.fsencode):
        child = _join(rel, name)
        if child in exclude:
            continue
        low, high = lows.get(name), highs.get(name)
        if high is None:
            flush()
            w.whiteout(_join(rel, ".wh." + name))
            continue
        hpath, hst = high
        if low is None or stat.S_IFMT(low[1].st_mode) != stat.S_IFMT(hst.st_mode):
            flush()
            w.add(child, hpath, hst)
            if stat.S_ISDIR(hst.st_mode):
                _walk(w, hpath, child, overlay=False, exclude=exclude)
            continue
        lpath, lst = low
        if stat.S_ISDIR(hst.st_mode):
            if _dir_meta(lpath, lst) != _dir_meta(hpath, hst):
                flush()
                w.add(child, hpath, hst)
                _diff(w, lpath, hpath, child, pending, exclude)
            else:
                pending.append((child, hpath, hst))
                _diff(w, lpath, hpath, child, pending, exclude)
                if pending and pending[-1][0] == child:
                    pending.pop()
        elif _signature(lpath, lst) != _signature(hpath, hst):
            flush()
            w.add(child, hpath, hst)


def write_diff(lower: str | os.PathLike[str], upper: str | os.PathLike[str], out: IO[bytes], *,
               epoch: int | None = None, exclude: frozenset[str] = frozenset(), threaded: bool = False) -> None:
    """The changes that turn tree ``lower`` into tree ``upper``, as an OCI layer tar."""
    with _Writer(out, epoch, threaded=threaded) as w:
        _diff(w, os.fspath(lower), os.fspath(upper), "", [], exclude)


def _to_store(store: ContentStore, options: LayerOptions, produce: Callable[[IO[bytes], int | None], None]
              ) -> LayerResult:
    epoch = options.clamp()
    with LayerWriter(store, options.compression, level=options.level, oci=options.oci) as lw:
        try:
            produce(lw, epoch)  # type: ignore[arg-type]
        except OSError as exc:
            raise StoreError(f"cannot write layer: {exc}") from exc
        return lw.close_layer()


def layer_from_dir(store: ContentStore, directory: str | os.PathLike[str],
                   options: LayerOptions = LayerOptions()) -> LayerResult:
    return _to_store(store, options, lambda out, epoch: write_tree(directory, out, epoch=epoch,
                                                                    exclude=options.exclude, threaded=True))


def layer_from_upper(store: ContentStore, upper: str | os.PathLike[str],
                     options: LayerOptions = LayerOptions()) -> LayerResult:
    return _to_store(store, options, lambda out, epoch: write_upper(upper, out, epoch=epoch,
                                                                     exclude=options.exclude, threaded=True))


def layer_from_diff(store: ContentStore, lower: str | os.PathLike[str], upper: str | os.PathLike[str],
                    options: LayerOptions = LayerOptions()) -> LayerResult:
    return _to_store(store, options, lambda out, epoch: write_diff(lower, upper, out, epoch=epoch,
                                                                    exclude=options.exclude, threaded=True))
