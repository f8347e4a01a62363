"""Apply an OCI layer (tar, gzip or zstd) to a directory, contained: nothing is ever written outside ``root``.

API::

    apply_layer(stream, root, *, expected_diff_id=None, limits=ApplyLimits()) -> ApplyResult

``root`` is the merged view to change: a plain directory (first layer, copying snapshotter) or a mounted
overlayfs (upper layers), so deletions turn into overlay whiteouts made by the kernel.

Entries are read with ``tarfile`` (``r:`` on the forward-only ``layerreader.LayerReader``), never extracted
by it: names are validated (no absolute names, no ``..``, no NUL), each parent is resolved with rooted
resolution (symlinks resolved inside ``root``), the final component is never followed (``O_NOFOLLOW``, ``O_EXCL``, ``lstat``), and an existing entry
is removed before being replaced (dir-on-dir keeps the directory). Policy per entry type (RELIABILITY T8):

- regular files, directories, symlinks (target kept byte-identical, never followed on the host): created;
- hardlinks: the target must be an earlier regular file, FIFO or device inside ``root`` (not a symlink, not a
  directory, not missing); metadata is never applied through a hardlink;
- character/block devices: created when running as root, skipped otherwise; a 0:0 character device (an
  overlayfs whiteout) is rejected; FIFOs: created;
- ownership: numeric uid/gid with ``lchown`` when root (names ignored); modes incl. setuid/setgid/sticky are
  applied after chown; mtimes applied (directories last); xattrs from PAX ``SCHILY.xattr.*`` for the ``user.``,
  ``security.capability`` and ``trusted.`` namespaces, except ``trusted.overlay.*`` (ignored);
- whiteouts ``.wh.NAME`` delete NAME in the resolved parent; ``.wh..wh..opq`` empties the directory except what
  this layer unpacked before it (and their ancestors); other ``.wh..wh.*`` (aufs metadata) are ignored;
  ``.wh.``, ``.wh..``, ``.wh...`` are rejected;
- duplicate entries: the last one wins; non-UTF-8 names are kept as bytes (surrogateescape);
- unknown entry types are rejected.

The uncompressed stream is hashed while applying; a mismatch with ``expected_diff_id`` raises DigestMismatch
(the caller discards the directory). Limits: decompressed bytes and entry count (LimitExceeded).
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

from .layerreader import LayerReader, open_layer
from .securepath import RootedResolver, split_entry_name

__all__ = ["DEFAULT_MAX_ENTRIES", "ApplyLimits", "ApplyResult", "apply_layer", "remove_all"]

DEFAULT_MAX_ENTRIES = 500_000
WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE = ".wh..wh..opq"
_XATTR_PREFIXES = ("user.", "security.capability", "trusted.")
_CHUNK = 1 << 20


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


def remove_all(path: str) -> None:
    """Remove ``path`` without following symlinks (a directory recursively)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


class _Applier:
    def __init__(self, root: str, limits: ApplyLimits, reader: LayerReader) -> None:
        self.root = os.path.abspath(root)
        self.reader = reader
        self.limits = limits
        self.resolver = RootedResolver(self.root)
        self.same_owner = os.geteuid() == 0
        self.dir_times: list[tuple[str, int | float]] = []
        self.keep: set[str] = set()  # unpacked paths and their ancestors (for opaque directories)
        self.entries = 0
        self.skipped_devices = 0

    # --- bookkeeping -----------------------------------------------------------------------------------------

    def _unpacked(self, path: str) -> None:
        while path != self.root and path not in self.keep:
            self.keep.add(path)
            path = os.path.dirname(path)

    def _ensure_parent(self, parts: tuple[str, ...], name: str) -> str:
        parent = self.resolver.parent(parts)
        try:
            st = os.lstat(parent)
        except FileNotFoundError:
            os.makedirs(parent, 0o755, exist_ok=True)
            self.resolver.remember(parts[:-1], parent)
            return parent
        except NotADirectoryError as exc:
            raise InvalidLayer(f"layer entry {name!r}: a parent is not a directory") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidLayer(f"layer entry {name!r}: parent {'/'.join(parts[:-1])!r} is not a directory")
        return parent

    # --- entries ---------------------------------------------------------------------------------------------

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise LimitExceeded(f"layer has more than {self.limits.max_entries} entries")
        parts = split_entry_name(m.name)
        if not parts:
            if not m.isdir():
                raise InvalidLayer(f"layer entry {m.name!r}: the root can only be a directory")
            self._metadata(self.root, m, is_dir=True)
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, m.name)
            return
        parent = self._ensure_parent(parts, m.name)
        target = parent + "/" + base
        try:
            existing = os.lstat(target)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            if m.isdir() and stat.S_ISDIR(existing.st_mode):
                self._metadata(target, m, is_dir=True)
                self.resolver.remember(parts, target)
                self._unpacked(target)
                return
            if stat.S_ISDIR(existing.st_mode) or stat.S_ISLNK(existing.st_mode):
                self.resolver.invalidate()
            remove_all(target)
        self._create(tf, m, parts, target)
        self._unpacked(target)

    def _create(self, tf: tarfile.TarFile, m: tarfile.TarInfo, parts: tuple[str, ...], target: str) -> None:
        if m.isreg():
            self._file(tf, m, target)
        elif m.isdir():
            os.mkdir(target, 0o700)
            self.resolver.remember(parts, target)
            self._metadata(target, m, is_dir=True)
        elif m.issym():
            if "\x00" in m.linkname:
                raise InvalidLayer(f"layer entry {m.name!r}: symlink target contains a NUL byte")
            os.symlink(m.linkname, target)
            self._owner(target, m)
            self._xattrs(target, m, symlink=True)
            os.utime(target, ns=(_ns(m.mtime), _ns(m.mtime)), follow_symlinks=False)
        elif m.islnk():
            self._hardlink(m, target)
        elif m.ischr() or m.isblk():
            if m.ischr() and m.devmajor == 0 and m.devminor == 0:
                raise InvalidLayer(f"layer entry {m.name!r}: a 0:0 character device is an overlay whiteout, "
                                   "not valid in an OCI layer")
            if not self.same_owner:
                self.skipped_devices += 1
                return
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(target, kind | 0o600, os.makedev(m.devmajor, m.devminor))
            self._metadata(target, m, is_dir=False)
        elif m.isfifo():
            os.mkfifo(target, 0o600)
            self._metadata(target, m, is_dir=False)
        else:
            raise InvalidLayer(f"layer entry {m.name!r}: unsupported entry type {m.type!r}")

    def _file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, target: str) -> None:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if m.size:
                if m.sparse is None:  # plain data follows the header: write it straight from the read-ahead
                    remaining = m.size
                    for view in self.reader.views(m.size):
                        remaining -= len(view)
                        while view:
                            view = view[os.write(fd, view):]
                    if remaining:
                        raise InvalidLayer(f"layer entry {m.name!r} is truncated")
                else:
                    self._copy_sparse(tf, m, fd)
            if self.same_owner:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            self._xattrs(fd, m)
            os.utime(fd, ns=(_ns(m.mtime), _ns(m.mtime)))
        finally:
            os.close(fd)

    def _copy_sparse(self, tf: tarfile.TarFile, m: tarfile.TarInfo, fd: int) -> None:
        src = tf.extractfile(m)  # GNU sparse: tarfile maps the holes (reads forward only)
        assert src is not None
        remaining = m.size
        while remaining:
            chunk = src.read(min(_CHUNK, remaining))
            if not chunk:
                raise InvalidLayer(f"layer entry {m.name!r} is truncated")
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            remaining -= len(chunk)

    def _hardlink(self, m: tarfile.TarInfo, target: str) -> None:
        link_parts = split_entry_name(m.linkname, what="hardlink target")
        if not link_parts:
            raise InvalidLayer(f"layer entry {m.name!r}: hardlink to the root directory")
        source = self.resolver.path(link_parts)
        try:
            st = os.lstat(source)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidLayer(f"layer entry {m.name!r}: hardlink target {m.linkname!r} does not exist "
                               "(it must come earlier in the layer or in a lower layer)") from None
        if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode):
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "directory"
            raise InvalidLayer(f"layer entry {m.name!r}: hardlink to a {kind} ({m.linkname!r}) is not allowed")
        os.link(source, target, follow_symlinks=False)

    def _owner(self, path: str, m: tarfile.TarInfo) -> None:
        if self.same_owner:
            os.chown(path, m.uid, m.gid, follow_symlinks=False)

    def _metadata(self, path: str, m: tarfile.TarInfo, *, is_dir: bool) -> None:
        self._owner(path, m)
        os.chmod(path, m.mode & 0o7777)
        self._xattrs(path, m)
        if is_dir:
            self.dir_times.append((path, m.mtime))
        else:
            os.utime(path, ns=(_ns(m.mtime), _ns(m.mtime)), follow_symlinks=False)

    def _xattrs(self, target: str | int, m: tarfile.TarInfo, *, symlink: bool = False) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if not name.startswith(_XATTR_PREFIXES) or name.startswith("trusted.overlay."):
                continue
            if name.startswith("trusted.") and not self.same_owner:
                continue
            data = value.encode("utf-8", "surrogateescape")
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, data)
                else:
                    os.setxattr(target, name, data, follow_symlinks=False)
            except OSError as exc:
                if symlink or exc.errno in (errno.ENOTSUP, errno.EPERM):
                    continue  # e.g. user.* xattrs cannot be set on symlinks; the filesystem may lack xattrs
                raise

    def _whiteout(self, parts: tuple[str, ...], name: str) -> None:
        base = parts[-1]
        if base == OPAQUE:
            directory = self.resolver.parent(parts)
            if os.path.isdir(directory) and not os.path.islink(directory):
                self._prune(directory)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return
        victim = base[len(WHITEOUT_PREFIX):]
        if victim in ("", ".", ".."):
            raise InvalidLayer(f"layer entry {name!r} is an invalid whiteout")
        path = self.resolver.parent(parts) + "/" + victim
        if os.path.lexists(path):
            self.resolver.invalidate()
            remove_all(path)

    def _prune(self, directory: str) -> None:
        self.resolver.invalidate()
        with os.scandir(directory) as it:
            children = list(it)
        for child in children:
            if child.path in self.keep:
                if child.is_dir(follow_symlinks=False):
                    self._prune(child.path)
            else:
                remove_all(child.path)

    def finish(self) -> None:
        for path, mtime in reversed(self.dir_times):
            try:
                os.utime(path, ns=(_ns(mtime), _ns(mtime)), follow_symlinks=False)
            except FileNotFoundError:
                pass  # removed later in the same layer


def apply_layer(stream: BinaryIO, root: str | os.PathLike[str], *, expected_diff_id: Digest | None = None,
                limits: ApplyLimits = ApplyLimits()) -> ApplyResult:
    """Apply the layer read from ``stream`` (gzip, zstd or plain tar) onto ``root``.

    :raises InvalidLayer: an unsafe or malformed entry, named.
    :raises LimitExceeded: too many bytes once decompressed, or too many entries.
    :raises DigestMismatch: the uncompressed stream does not hash to ``expected_diff_id``.
    """
    reader = open_layer(stream, limits.max_bytes)
    applier = _Applier(os.fspath(root), limits, reader)
    try:
        return _apply(reader, applier, root, expected_diff_id)
    finally:
        reader.close()


def _apply(reader: LayerReader, applier: _Applier, root: str | os.PathLike[str],
           expected_diff_id: Digest | None) -> ApplyResult:
    try:
        # "r:" on a forward-only reader, not stream mode "r|": headers are read from the reader directly and file
        # data never goes through tarfile's stream buffer (which copies every block several times).
        with tarfile.open(fileobj=reader, mode="r:", errors="surrogateescape") as tf:  # type: ignore[call-overload]
            for member in tf:
                applier.entry(tf, member)
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
