"""Thin wrappers over Linux mount syscalls (through libc with ctypes), translated into the error tree.

API::

    mount(source, target, fstype, options="", flags=0)   # raises StoreError with errno text
    umount(target, *, detach=False)                      # ignores "not mounted"
    is_mountpoint(path) -> bool
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from functools import cache

from polyarch.errors import StoreError

__all__ = ["MNT_DETACH", "MS_BIND", "MS_RDONLY", "MS_REC", "MS_REMOUNT", "is_mountpoint", "mount", "umount"]

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def mount(source: str, target: str | os.PathLike[str], fstype: str, options: str = "", flags: int = 0) -> None:
    """mount(2).

    :raises StoreError: naming the target and the errno; ``.errno`` is set on the exception.
    """
    rc = _libc().mount(source.encode(), os.fsencode(target), fstype.encode(), flags,
                       options.encode() if options else None)
    if rc != 0:
        err = ctypes.get_errno()
        exc = StoreError(f"cannot mount {fstype} on {os.fspath(target)}: {os.strerror(err)}")
        exc.errno = err  # type: ignore[attr-defined]
        raise exc


def umount(target: str | os.PathLike[str], *, detach: bool = False) -> None:
    """umount2(2); a target that is not mounted is not an error."""
    rc = _libc().umount2(os.fsencode(target), MNT_DETACH if detach else 0)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return
        if err == errno.EBUSY and not detach:
            umount(target, detach=True)
            return
        raise StoreError(f"cannot unmount {os.fspath(target)}: {os.strerror(err)}")


def is_mountpoint(path: str | os.PathLike[str]) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False
