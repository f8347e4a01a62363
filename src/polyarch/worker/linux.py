"""Thin wrappers over Linux mount and path syscalls (through libc with ctypes), translated into the error tree.

API::

    mount(source, target, fstype, options="", flags=0)   # raises StoreError with errno text
    umount(target, *, detach=False)                      # ignores "not mounted"
    is_mountpoint(path) -> bool
    mount_overlay(lowers, upper, work, target, options=())   # lowers top-most first; see below
    open_beneath(dir_fd, path, flags) -> fd              # no symlink followed in any component
    openat2(dir_fd, path, flags, resolve) -> fd ; Openat2(flags, resolve).open(dir_fd, path) -> fd | -errno

No mount option string is ever assembled from a caller's path: ``mount_overlay`` opens every layer as an
``O_PATH`` descriptor and names it to the kernel as ``/proc/self/fd/N``. With the new mount API (``fsopen`` /
``fsconfig`` / ``fsmount`` / ``move_mount``) each lower layer is one ``fsconfig(FSCONFIG_SET_STRING,
"lowerdir+")`` call (Linux 6.8+), so there is no separator to inject and no page-size limit on the layer count;
on older kernels a legacy ``mount(2)`` data string is built from those fd paths and fixed options only. A path
holding ``:`` ``,`` ``\\`` ``=`` or a newline therefore names exactly one directory on either path.

``open_beneath`` uses ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` (Linux 5.6+) or, without it, a walk with
``O_NOFOLLOW`` one component at a time. ``Openat2`` is the one wrapper of the syscall (``rooted.RootDir`` resolves
every layer entry through it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Sequence
from functools import cache

from polyarch.errors import StoreError

__all__ = [
    "MNT_DETACH",
    "MS_BIND",
    "MS_RDONLY",
    "MS_REC",
    "MS_REMOUNT",
    "Openat2",
    "is_mountpoint",
    "mount",
    "mount_overlay",
    "open_beneath",
    "openat2",
    "umount",
]

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2

# Syscall numbers of the "new" calls are the same on every Linux architecture (asm-generic unified table).
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_SYS_OPENAT2 = 437
_FSOPEN_CLOEXEC = 1
_FSMOUNT_CLOEXEC = 1
_FSCONFIG_SET_FLAG = 0
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOVE_MOUNT_T_EMPTY_PATH = 0x40
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_MAX_MOUNT_DATA = 4000  # a legacy mount(2) data page is 4096 bytes


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _syscall(nr: int, *args: int | bytes | None) -> int:
    """syscall(2); returns the result or raises OSError with the errno."""
    conv = [ctypes.c_long(a) if isinstance(a, int) else ctypes.c_char_p(a) for a in args]
    rc = _libc().syscall(ctypes.c_long(nr), *conv)
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(rc)


def _store_error(action: str, target: str | os.PathLike[str], err: int) -> StoreError:
    exc = StoreError(f"cannot {action} on {os.fspath(target)}: {os.strerror(err)}")
    exc.errno = err  # type: ignore[attr-defined]
    return exc


def mount(source: str, target: str | os.PathLike[str], fstype: str, options: str = "", flags: int = 0) -> None:
    """mount(2). ``options`` must be a fixed string, never one holding a caller's path (see ``mount_overlay``).

    :raises StoreError: naming the target and the errno; ``.errno`` is set on the exception.
    """
    rc = _libc().mount(source.encode(), os.fsencode(target), fstype.encode(), flags,
                       options.encode() if options else None)
    if rc != 0:
        raise _store_error(f"mount {fstype}", target, ctypes.get_errno())


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


@cache
def _new_overlay_api() -> bool:
    """Does this kernel take overlay layers one per ``fsconfig`` call (``lowerdir+``, Linux 6.8)?"""
    try:
        fs = _syscall(_SYS_FSOPEN, b"overlay", _FSOPEN_CLOEXEC)
    except OSError:
        return False
    try:
        _syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, b"lowerdir+", b"/", 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fs)


def mount_overlay(lowers: Sequence[str | os.PathLike[str]], upper: str | os.PathLike[str],
                  work: str | os.PathLike[str], target: str | os.PathLike[str],
                  options: Sequence[tuple[str, str]] = ()) -> None:
    """Mount an overlayfs of ``lowers`` (top-most first) with ``upper``/``work`` on ``target``.

    Each path is opened (``O_PATH``) and passed as ``/proc/self/fd/N``, so no byte of a path reaches an option
    string. ``options`` are fixed ``(key, value)`` pairs such as ``("index", "off")``.

    :raises StoreError: the mount failed (``.errno`` set), or too many layers for a legacy mount.
    """
    fds: list[int] = []
    try:
        for path in (*lowers, upper, work):
            fds.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        names = [f"/proc/self/fd/{fd}" for fd in fds]
        *lower_names, upper_name, work_name = names
        if _new_overlay_api():
            _mount_overlay_fsconfig(lower_names, upper_name, work_name, target, options)
            return
        data = ",".join([f"lowerdir={':'.join(lower_names)}", f"upperdir={upper_name}", f"workdir={work_name}",
                         *(f"{k}={v}" if v else k for k, v in options)])
        if len(data) > _MAX_MOUNT_DATA:
            raise StoreError(f"too many layers ({len(lowers)}) to stack with overlayfs on this kernel",
                             hint="set POLYARCH_SNAPSHOTTER=copy, or use Linux 6.8 or later")
        mount("overlay", target, "overlay", data)
    except OSError as exc:
        raise _store_error("mount overlay", target, exc.errno or errno.EIO) from exc
    finally:
        for fd in fds:
            os.close(fd)


def _mount_overlay_fsconfig(lowers: list[str], upper: str, work: str, target: str | os.PathLike[str],
                            options: Sequence[tuple[str, str]]) -> None:
    fs = _syscall(_SYS_FSOPEN, b"overlay", _FSOPEN_CLOEXEC)
    mnt = -1
    try:
        params = [("lowerdir+", lower) for lower in lowers] + [("upperdir", upper), ("workdir", work), *options]
        for key, value in params:  # an empty value: a flag option (``userxattr``)
            if value:
                _syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, key.encode(), value.encode(), 0)
            else:
                _syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_FLAG, key.encode(), None, 0)
        _syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0)
        mnt = _syscall(_SYS_FSMOUNT, fs, _FSMOUNT_CLOEXEC, 0)
        tfd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            _syscall(_SYS_MOVE_MOUNT, mnt, b"", tfd, b"", _MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_EMPTY_PATH)
        finally:
            os.close(tfd)
    finally:
        if mnt >= 0:
            os.close(mnt)
        os.close(fs)


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


# openat2 has one number on every architecture polyarch runs on (added after the syscall tables were unified).
_OPENAT2_MACHINES = ("x86_64", "aarch64", "arm64", "armv7l", "armv8l", "riscv64", "ppc64le", "s390x", "i686", "i386")


class Openat2:
    """openat2(2) with fixed open flags and ``RESOLVE_*`` bits, cheap to call on a hot path (the ``open_how``
    is built once). ``available`` turns false for good on ENOSYS, E2BIG or a seccomp filter's EPERM."""

    def __init__(self, flags: int, resolve: int) -> None:
        self.available = os.uname().machine in _OPENAT2_MACHINES
        self._syscall = _libc().syscall
        self._syscall.restype = ctypes.c_long
        self._how = _OpenHow(flags | os.O_CLOEXEC, 0, resolve)
        self._how_ref = ctypes.byref(self._how)
        # every argument as a full register: a bare int is passed as a C int, leaving the upper half undefined
        self._nr = ctypes.c_long(_SYS_OPENAT2)
        self._how_size = ctypes.c_size_t(ctypes.sizeof(self._how))

    def open(self, dir_fd: int, path: bytes) -> int:
        """A new descriptor, or -errno."""
        fd = self._syscall(self._nr, ctypes.c_long(dir_fd), path, self._how_ref, self._how_size)
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EPERM, errno.E2BIG):
            self.available = False
        return -err


def openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    """openat2(2) of ``path`` below ``dir_fd``.

    :raises OSError: with the errno.
    """
    fd = Openat2(flags, resolve).open(dir_fd, os.fsencode(path))
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd), path)
    return fd


@cache
def _has_openat2() -> bool:
    try:
        os.close(openat2(-100, "/", os.O_PATH, 0))
        return True
    except OSError:
        return False


def _walk_nofollow(dir_fd: int, parts: Sequence[str], flags: int) -> int:
    """Open ``parts`` below ``dir_fd`` one component at a time, never following a symlink."""
    fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        if not parts:
            return os.open(".", flags | os.O_CLOEXEC, dir_fd=fd)
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


def _parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise OSError(errno.EXDEV, "path climbs out of its root", path)
    return parts


def open_beneath(dir_fd: int, path: str, flags: int) -> int:
    """``openat`` of ``path`` below ``dir_fd`` following no symlink in any component and never leaving it.

    :raises OSError: as ``open(2)``; ``ELOOP`` for a symlink, ``EXDEV`` for ``..``.
    """
    if _has_openat2():
        return openat2(dir_fd, path, flags, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
    return _walk_nofollow(dir_fd, _parts(path), flags)
