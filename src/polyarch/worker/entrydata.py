"""What ``apply.apply_layer`` writes into a file it made for a layer entry: the data (plain, or the extents of a
GNU sparse file, holes left as holes) and the extended attributes it keeps.

Every function works on a descriptor (or a ``/proc/self/fd`` path) the caller opened inside the root; none of
them resolves a name.
"""

from __future__ import annotations

import errno
import os
import tarfile

from polyarch.errors import InvalidLayer, LimitExceeded

from .layerreader import LayerReader

__all__ = ["XATTR_PREFIXES", "apply_xattrs", "write_data", "write_sparse"]

XATTR_PREFIXES = ("user.", "security.capability", "trusted.")


def write_data(reader: LayerReader, m: tarfile.TarInfo, fd: int) -> None:
    """The ``m.size`` bytes following ``m``'s header, straight from the reader's read-ahead into ``fd``.

    :raises InvalidLayer: the stream ends first.
    """
    remaining = m.size
    for view in reader.views(m.size):
        remaining -= len(view)
        while view:
            view = view[os.write(fd, view):]
    if remaining:
        raise InvalidLayer(f"layer entry {m.name!r} is truncated")


def write_sparse(reader: LayerReader, m: tarfile.TarInfo, fd: int, *, holes: int, max_bytes: int) -> int:
    """Write only the data extents of a GNU sparse file; the rest stays a hole. Returns the bytes of holes this
    file adds; ``holes`` (those of the layer so far) count with the stream against ``max_bytes``.

    :raises InvalidLayer: the sparse map is out of order, overlaps or leaves the file; the data is truncated.
    :raises LimitExceeded: the file takes the layer past ``max_bytes``.
    """
    assert m.sparse is not None
    extents = [(offset, length) for offset, length in m.sparse if length]  # GNU pads the map with (x, 0)
    end = 0
    for offset, length in extents:
        if offset < end or length < 0 or offset + length > m.size:
            raise InvalidLayer(f"layer entry {m.name!r} has an invalid sparse map")
        end = offset + length
    data = sum(length for _, length in extents)
    added = m.size - data
    if reader.tell() + data + holes + added > max_bytes:
        raise LimitExceeded(f"layer entry {m.name!r}: sparse file of {m.size} bytes takes the layer past "
                            f"{max_bytes} bytes")
    if reader.tell() != m.offset_data:
        reader.seek(m.offset_data)
    for offset, length in extents:
        position = offset
        for view in reader.views(length):
            while view:
                written = os.pwrite(fd, view, position)
                position += written
                view = view[written:]
        if position != offset + length:
            raise InvalidLayer(f"layer entry {m.name!r} is truncated")
    os.ftruncate(fd, m.size)
    return added


def apply_xattrs(target: str | int, m: tarfile.TarInfo, *, same_owner: bool, symlink: bool = False) -> None:
    """Set ``m``'s PAX ``SCHILY.xattr.*`` attributes of the kept namespaces on ``target`` (a descriptor, or a
    ``/proc/self/fd`` path, not followed for a ``symlink``); ``trusted.overlay.*`` never, ``trusted.*`` only with
    ``same_owner`` (root). Attributes the filesystem or the entry type cannot hold are skipped."""
    for key, value in m.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr."):]
        if not name.startswith(XATTR_PREFIXES) or name.startswith("trusted.overlay."):
            continue
        if name.startswith("trusted.") and not same_owner:
            continue
        data = value.encode("utf-8", "surrogateescape")
        try:
            if isinstance(target, int):
                os.setxattr(target, name, data)
            else:  # a /proc/self/fd path: for a symlink the name itself is not followed
                os.setxattr(target, name, data, follow_symlinks=not symlink)
        except OSError as exc:
            if symlink or exc.errno in (errno.ENOTSUP, errno.EPERM):
                continue  # e.g. user.* xattrs cannot be set on symlinks; the filesystem may lack xattrs
            raise
