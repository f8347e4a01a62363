"""Apply an OCI layer (tar, gzip or zstd) to a directory, contained: nothing is ever written outside ``root``.

API::

    apply_layer(stream, root, *, expected_diff_id=None, limits=ApplyLimits()) -> ApplyResult

``root`` is the merged view to change: a plain directory (first layer, copying snapshotter) or a mounted
overlayfs (upper layers), so deletions turn into overlay whiteouts made by the kernel.

Entries are read with ``tarmembers.open_members`` (``r:`` on the forward-only ``layerreader.LayerReader``; PAX and
GNU long headers are capped at 1 MiB before tarfile reads them), never extracted by tarfile. Containment:

- names are validated (no absolute names, no ``..``, no NUL);
- the parent directory of every entry is opened afresh as a descriptor with rooted resolution
  (``rooted.RootDir``: openat2 ``RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS``, or an ``O_NOFOLLOW`` walk where the
  kernel lacks it), so a symlink planted by an earlier entry or layer (``x -> /``) resolves inside ``root``.
  Missing parents are made one at a time inside the root (mode 0755 before umask);
- every operation is relative to that descriptor and never follows the final component: ``O_NOFOLLOW|O_EXCL``
  creation, ``mkdirat``/``symlinkat``/``mknodat``/``linkat`` without ``AT_SYMLINK_FOLLOW``, ``unlinkat`` and an
  fd-based ``rmtree``, ``fchownat``/``utimensat`` with ``AT_SYMLINK_NOFOLLOW``; the mode, owner and xattrs of a
  directory, device or FIFO are set through an ``O_PATH|O_NOFOLLOW`` descriptor of it (``/proc/self/fd/N``), of
  a symlink through ``lsetxattr``/``lchown``, of a regular file through the descriptor it was written by;
- opened parent descriptors are reused by later entries only until anything that could change a resolution
  happens: every removal or replacement of a directory or symlink, and every new symlink, drops them all.

An existing entry is removed before being replaced (dir-on-dir keeps the directory). Policy per entry type
(RELIABILITY T8):

- regular files, directories, symlinks (target kept byte-identical, never followed on the host): created;
- GNU sparse files (old GNU, PAX 0.0/0.1/1.0): only the data extents are written, holes stay holes
  (``ftruncate`` to the real size); the holes count against ``max_bytes`` with the stream, so a small layer
  cannot claim terabytes; extents must be in order, non-overlapping and within the file;
- hardlinks: the target must be an earlier regular file, FIFO or device inside ``root`` (not a symlink, not a
  directory, not missing), resolved the same rooted way; metadata is never applied through a hardlink;
- character/block devices: created when running as root, skipped otherwise; a 0:0 character device (an
  overlayfs whiteout) is rejected; FIFOs: created;
- ownership: numeric uid/gid when root (names ignored); modes incl. setuid/setgid/sticky are applied after
  chown; mtimes applied (directories last, each only if it is still the same directory, by device and inode);
  xattrs from PAX ``SCHILY.xattr.*`` for the ``user.``, ``security.capability`` and ``trusted.`` namespaces,
  except ``trusted.overlay.*`` (ignored);
- whiteouts ``.wh.NAME`` delete NAME in the resolved parent (nothing when the parent is missing or not a
  directory); ``.wh..wh..opq`` empties the directory except what this layer unpacked before it (and their
  ancestors, tracked by real path relative to ``root``); other ``.wh..wh.*`` (aufs metadata) are ignored;
  ``.wh.``, ``.wh..``, ``.wh...`` are rejected;
- duplicate entries: the last one wins; non-UTF-8 names are kept as bytes (surrogateescape);
- unknown entry types are rejected.

The uncompressed stream is hashed while applying; a mismatch with ``expected_diff_id`` raises DigestMismatch
(the caller discards the directory). Limits: decompressed bytes plus sparse holes, and entry count
(LimitExceeded).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from typing import BinaryIO

from polyarch.content.compression import DEFAULT_DECOMPRESS_LIMIT
from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, InvalidLayer, LimitExceeded, PolyarchError, StoreError

from .entrydata import apply_xattrs, write_data, write_sparse
from .layerreader import LayerReader, open_layer
from .rooted import RootDir
from .securepath import split_entry_name
from .tarmembers import open_members

__all__ = ["DEFAULT_MAX_ENTRIES", "ApplyLimits", "ApplyResult", "apply_layer", "remove_at"]

DEFAULT_MAX_ENTRIES = 500_000
WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE = ".wh..wh..opq"
_MAX_OPEN_DIRS = 64  # parent descriptors kept between entries (tar entries come grouped by directory)
_NOFOLLOW = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class ApplyLimits:
    max_bytes: int = DEFAULT_DECOMPRESS_LIMIT
    max_entries: int = DEFAULT_MAX_ENTRIES


@dataclass(frozen=True, slots=True)
class ApplyResult:
    diff_id: Digest
    size: int
    entries: int
    skipped_devices: int = 0


def _ns(seconds: float) -> int:
    return int(seconds) * 10**9 if isinstance(seconds, int) else round(seconds * 1e9)


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def remove_at(dir_fd: int, name: str) -> os.stat_result | None:
    """Remove ``name`` in directory ``dir_fd`` without following symlinks (a directory recursively, fd-based);
    what was removed, or None when nothing was there."""
    st = _lstat_at(dir_fd, name)
    if st is None:
        return None
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)
    return st


def _changes_resolution(st: os.stat_result | None) -> bool:
    return st is not None and (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode))


def _join(rel: str, name: str) -> str:
    return rel + "/" + name if rel else name


class _Applier:
    def __init__(self, root: str, limits: ApplyLimits, reader: LayerReader) -> None:
        self.tree = RootDir(root)
        self.reader = reader
        self.limits = limits
        self.same_owner = os.geteuid() == 0
        self.dirs: dict[tuple[str, ...], tuple[int, str]] = {}  # parent parts -> (O_PATH fd, real relative path)
        self.dir_times: list[tuple[str, int, int, int | float]] = []  # (real relative path, dev, ino, mtime)
        self.keep: set[str] = set()  # real relative paths unpacked by this layer and their ancestors (opaque dirs)
        self.holes = 0  # bytes of sparse files that are not in the stream
        self.entries = 0
        self.skipped_devices = 0

    def close(self) -> None:
        self._forget()
        self.tree.close()

    # --- resolution --------------------------------------------------------------------------------------------

    def _forget(self) -> None:
        """Drop every opened parent: the tree changed in a way that may resolve a name elsewhere."""
        for fd, _ in self.dirs.values():
            os.close(fd)
        self.dirs.clear()

    def _parent(self, parts: tuple[str, ...], *, create: bool) -> tuple[int, str] | None:
        """(fd, real relative path) of the directory holding ``parts[-1]``, resolved inside the root; None when
        missing and not ``create``.

        :raises NotADirectoryError: a component is not a directory.
        """
        key = parts[:-1]
        hit = self.dirs.get(key)
        if hit is not None:
            return hit
        fd = self.tree.open_dir(key, create=create)
        if fd is None:
            return None
        hit = (fd, self.tree.relpath(fd))
        self.dirs[key] = hit
        return hit

    def _unpacked(self, rel: str) -> None:
        while rel and rel not in self.keep:
            self.keep.add(rel)
            rel = rel.rpartition("/")[0]

    # --- entries -----------------------------------------------------------------------------------------------

    def entry(self, m: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise LimitExceeded(f"layer has more than {self.limits.max_entries} entries")
        if len(self.dirs) > _MAX_OPEN_DIRS:
            self._forget()
        parts = split_entry_name(m.name)
        if not parts:
            if not m.isdir():
                raise InvalidLayer(f"layer entry {m.name!r}: the root can only be a directory")
            self._metadata(self.tree.fd, ".", "", m)
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, m.name)
            return
        try:
            parent = self._parent(parts, create=True)
        except NotADirectoryError as exc:
            raise InvalidLayer(f"layer entry {m.name!r}: a parent is not a directory") from exc
        assert parent is not None
        dir_fd, rel = parent
        rel = _join(rel, base)
        existing = _lstat_at(dir_fd, base)
        if existing is not None:
            if m.isdir() and stat.S_ISDIR(existing.st_mode):
                self._metadata(dir_fd, base, rel, m)
                self._unpacked(rel)
                return
            remove_at(dir_fd, base)
            if _changes_resolution(existing):
                self._forget()
                dir_fd, _ = self._parent(parts, create=True)  # type: ignore[misc]
        self._create(m, dir_fd, base, rel)
        self._unpacked(rel)

    def _create(self, m: tarfile.TarInfo, dir_fd: int, name: str, rel: str) -> None:
        if m.isreg():
            self._file(m, dir_fd, name)
        elif m.isdir():
            os.mkdir(name, 0o700, dir_fd=dir_fd)
            self._metadata(dir_fd, name, rel, m)
        elif m.issym():
            if "\x00" in m.linkname:
                raise InvalidLayer(f"layer entry {m.name!r}: symlink target contains a NUL byte")
            os.symlink(m.linkname, name, dir_fd=dir_fd)
            if self.same_owner:
                os.chown(name, m.uid, m.gid, dir_fd=dir_fd, follow_symlinks=False)
            apply_xattrs(f"/proc/self/fd/{dir_fd}/{name}", m, same_owner=self.same_owner, symlink=True)
            os.utime(name, ns=(_ns(m.mtime), _ns(m.mtime)), dir_fd=dir_fd, follow_symlinks=False)
            self._forget()  # a name may now resolve through the new symlink
        elif m.islnk():
            self._hardlink(m, dir_fd, name)
        elif m.ischr() or m.isblk():
            if m.ischr() and m.devmajor == 0 and m.devminor == 0:
                raise InvalidLayer(f"layer entry {m.name!r}: a 0:0 character device is an overlay whiteout, "
                                   "not valid in an OCI layer")
            if not self.same_owner:
                self.skipped_devices += 1
                return
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=dir_fd)
            self._metadata(dir_fd, name, rel, m)
        elif m.isfifo():
            os.mkfifo(name, 0o600, dir_fd=dir_fd)
            self._metadata(dir_fd, name, rel, m)
        else:
            raise InvalidLayer(f"layer entry {m.name!r}: unsupported entry type {m.type!r}")

    def _file(self, m: tarfile.TarInfo, dir_fd: int, name: str) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
        try:
            if m.sparse is not None:
                self.holes += write_sparse(self.reader, m, fd, holes=self.holes, max_bytes=self.limits.max_bytes)
            elif m.size:
                write_data(self.reader, m, fd)
            if self.same_owner:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            apply_xattrs(fd, m, same_owner=self.same_owner)
            os.utime(fd, ns=(_ns(m.mtime), _ns(m.mtime)))
        finally:
            os.close(fd)

    def _hardlink(self, m: tarfile.TarInfo, dir_fd: int, name: str) -> None:
        link_parts = split_entry_name(m.linkname, what="hardlink target")
        if not link_parts:
            raise InvalidLayer(f"layer entry {m.name!r}: hardlink to the root directory")
        try:
            source = self._parent(link_parts, create=False)
        except NotADirectoryError:
            source = None
        st = _lstat_at(source[0], link_parts[-1]) if source is not None else None
        if st is None:
            raise InvalidLayer(f"layer entry {m.name!r}: hardlink target {m.linkname!r} does not exist "
                               "(it must come earlier in the layer or in a lower layer)")
        if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode):
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "directory"
            raise InvalidLayer(f"layer entry {m.name!r}: hardlink to a {kind} ({m.linkname!r}) is not allowed")
        assert source is not None
        os.link(link_parts[-1], name, src_dir_fd=source[0], dst_dir_fd=dir_fd, follow_symlinks=False)

    def _metadata(self, dir_fd: int, name: str, rel: str, m: tarfile.TarInfo) -> None:
        """Owner, mode, xattrs and mtime of a directory, device or FIFO, through an O_PATH descriptor of it."""
        fd = os.open(name, _NOFOLLOW, dir_fd=dir_fd)
        try:
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode):
                raise InvalidLayer(f"layer entry {m.name!r} changed type while being applied")
            path = f"/proc/self/fd/{fd}"  # the inode itself: a magic link, not a name that could be swapped
            if self.same_owner:
                os.chown(path, m.uid, m.gid)
            os.chmod(path, m.mode & 0o7777)
            apply_xattrs(path, m, same_owner=self.same_owner)
            if stat.S_ISDIR(st.st_mode):
                self.dir_times.append((rel, st.st_dev, st.st_ino, m.mtime))
            else:
                os.utime(path, ns=(_ns(m.mtime), _ns(m.mtime)))
        finally:
            os.close(fd)

    def _whiteout(self, parts: tuple[str, ...], name: str) -> None:
        base = parts[-1]
        if base.startswith(WHITEOUT_META_PREFIX) and base != OPAQUE:
            return
        victim = base[len(WHITEOUT_PREFIX):]
        if base != OPAQUE and victim in ("", ".", ".."):
            raise InvalidLayer(f"layer entry {name!r} is an invalid whiteout")
        try:
            parent = self._parent(parts, create=False)
        except NotADirectoryError:
            return
        if parent is None:
            return
        if base == OPAQUE:
            self._prune(*parent)
            self._forget()
        elif _changes_resolution(remove_at(parent[0], victim)):
            self._forget()

    def _prune(self, dir_fd: int, rel: str) -> None:
        """Remove what ``dir_fd`` holds except what this layer unpacked (recursing into kept directories)."""
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            for child in os.listdir(fd):
                path = _join(rel, child)
                if path not in self.keep:
                    remove_at(fd, child)
                    continue
                st = _lstat_at(fd, child)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    sub = os.open(child, _NOFOLLOW | os.O_DIRECTORY, dir_fd=fd)
                    try:
                        self._prune(sub, path)
                    finally:
                        os.close(sub)
        finally:
            os.close(fd)

    def finish(self) -> None:
        self._forget()
        for rel, dev, ino, mtime in reversed(self.dir_times):
            try:
                fd = self.tree.open_dir(tuple(rel.split("/")) if rel else ())
            except (NotADirectoryError, InvalidLayer):
                continue  # replaced later in the same layer
            if fd is None:
                continue  # removed later in the same layer
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.utime(f"/proc/self/fd/{fd}", ns=(_ns(mtime), _ns(mtime)))
            finally:
                os.close(fd)


def apply_layer(stream: BinaryIO, root: str | os.PathLike[str], *, expected_diff_id: Digest | None = None,
                limits: ApplyLimits = ApplyLimits()) -> ApplyResult:
    """Apply the layer read from ``stream`` (gzip, zstd or plain tar) onto ``root``.

    :raises InvalidLayer: an unsafe or malformed entry, named.
    :raises LimitExceeded: too many bytes once decompressed (sparse holes included), or too many entries.
    :raises DigestMismatch: the uncompressed stream does not hash to ``expected_diff_id``.
    """
    reader = open_layer(stream, limits.max_bytes)
    try:
        try:
            applier = _Applier(os.fspath(root), limits, reader)
        except OSError as exc:
            raise StoreError(f"cannot open {root} to apply a layer: {exc.strerror}") from exc
        try:
            return _apply(reader, applier, root, expected_diff_id)
        finally:
            applier.close()
    finally:
        reader.close()


def _apply(reader: LayerReader, applier: _Applier, root: str | os.PathLike[str],
           expected_diff_id: Digest | None) -> ApplyResult:
    try:
        # "r:" on a forward-only reader, not stream mode "r|": headers are read from the reader directly and file
        # data never goes through tarfile's stream buffer (which copies every block several times).
        with open_members(reader) as tf:
            for member in tf:
                applier.entry(member)
            end_offset = tf.offset
        applier.finish()
        ended = reader.clean_end(end_offset)
    except PolyarchError:
        raise
    except tarfile.TarError as exc:
        if reader.empty():
            return ApplyResult(reader.digest()[0], 0, 0)
        raise InvalidLayer(f"layer is not a valid tar stream: {exc}") from exc
    except UnicodeError as exc:
        raise InvalidLayer(f"layer has an undecodable entry: {exc}") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise StoreError(f"cannot apply layer into {root}: {exc.strerror}") from exc
        raise InvalidLayer(f"cannot apply layer entry: {exc}") from exc
    if not ended:  # (the rest of the stream is left unread: no digest to wait for)
        raise InvalidLayer("layer tar stream is truncated or corrupt (no clean end-of-archive marker)")
    diff_id, size = reader.digest()
    if expected_diff_id is not None and diff_id != expected_diff_id:
        raise DigestMismatch(f"layer content hashes to {diff_id}, but the image config says {expected_diff_id}")
    return ApplyResult(diff_id, size, applier.entries, applier.skipped_devices)
