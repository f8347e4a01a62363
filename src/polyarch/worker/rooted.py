"""Directories of a tree opened by descriptor, every symlink resolved inside the tree's root (like chroot).

API::

    root = RootDir(path)                      # holds an O_PATH descriptor of the root directory
    root.open_dir(parts, create=False) -> int | None   # an O_PATH|O_DIRECTORY fd, or None when missing
    root.relpath(fd) -> str                   # where that directory really is, relative to the root ("" = root)
    root.close()

``open_dir`` is the fd-based counterpart of ``securepath.secure_join``: symlinks met on the way are resolved as if
the root were ``/`` (absolute targets restart at the root, ``..`` never climbs above it), and the host is never
reached through a symlink because nothing is resolved by a host path. It uses openat2(2) with
``RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS`` (Linux >= 5.6); where that is missing (ENOSYS, or a seccomp filter
answering EPERM) it walks component by component with ``O_PATH|O_NOFOLLOW`` and resolves each symlink itself,
with the same result. With ``create=True`` missing directories are made one at a time (``mkdirat`` on the last
directory reached, mode 0755 before umask), through symlinks resolved inside the root, the way a rooted
``mkdir -p`` would. Every call resolves afresh: nothing is cached, so a tree changed between two calls is seen as
it is now. Callers operate on the final component themselves, with ``dir_fd`` and no following of symlinks.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque

from polyarch.errors import InvalidLayer

from .linux import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, Openat2

__all__ = ["MAX_SYMLINKS", "RootDir"]

MAX_SYMLINKS = 255  # the budget of securepath.secure_join; the kernel's own limit for openat2 is 40
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_OPENAT2 = Openat2(_DIR_FLAGS, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


class RootDir:
    """A directory tree opened by descriptor; see the module docstring."""

    __slots__ = ("_openat2", "_prefix", "fd", "path")

    def __init__(self, path: str | os.PathLike[str], *, use_openat2: bool = True) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        real = os.readlink(f"/proc/self/fd/{self.fd}")
        self._prefix = real.rstrip("/") + "/"
        self._openat2 = _OPENAT2 if use_openat2 and _OPENAT2.available else None

    def close(self) -> None:
        os.close(self.fd)

    def relpath(self, fd: int) -> str:
        """Where directory ``fd`` (under the root) really is, relative to the root; ``""`` for the root."""
        real = os.readlink(f"/proc/self/fd/{fd}")
        if real + "/" == self._prefix:
            return ""
        if not real.startswith(self._prefix):  # cannot happen: every fd handed out was resolved inside the root
            raise InvalidLayer(f"directory {real!r} resolved outside the root {self.path!r}")
        return real[len(self._prefix):]

    def open_dir(self, parts: tuple[str, ...], *, create: bool = False) -> int | None:
        """An ``O_PATH`` fd of directory ``parts`` resolved inside the root (the caller closes it); None when a
        component is missing and ``create`` is false.

        :raises NotADirectoryError: a component is not a directory.
        :raises InvalidLayer: a symlink loop, or a name too long.
        """
        if not parts:
            return os.dup(self.fd)
        openat2 = self._openat2
        if openat2 is not None and openat2.available:
            fd = openat2.open(self.fd, os.fsencode("/".join(parts)))
            if fd >= 0:
                return fd
            if fd == -errno.ENOTDIR:
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/".join(parts))
            if fd == -errno.ENOENT and not create:
                return None
            if fd in (-errno.ELOOP, -errno.ENAMETOOLONG):
                raise InvalidLayer(f"cannot resolve {'/'.join(parts)!r}: {os.strerror(-fd)}")
            # ENOENT with create, EAGAIN/EXDEV (a race the kernel refused to resolve), ENOSYS: walk it
        return self._walk(parts, create)

    def _walk(self, parts: tuple[str, ...], create: bool) -> int | None:
        """Component by component, never following a symlink by the host's rules (``O_NOFOLLOW`` everywhere)."""
        stack: list[int] = []  # fds of the directories reached, below the root
        pending = deque(parts)
        links = 0
        try:
            while pending:
                part = pending.popleft()
                if part in ("", "."):
                    continue
                if part == "..":
                    if stack:
                        os.close(stack.pop())
                    continue
                here = stack[-1] if stack else self.fd
                try:
                    fd = os.open(part, _NOFOLLOW, dir_fd=here)
                except FileNotFoundError:
                    if not create:
                        return None
                    try:
                        os.mkdir(part, 0o755, dir_fd=here)
                    except FileExistsError:
                        pass  # made meanwhile: opened below like any other
                    fd = os.open(part, _NOFOLLOW, dir_fd=here)
                try:
                    mode = os.fstat(fd).st_mode
                    if stat.S_ISDIR(mode):
                        stack.append(fd)
                        fd = -1
                        continue
                    # the link just opened, read through its own descriptor (not looked up by name again)
                    target = os.readlink("", dir_fd=fd) if stat.S_ISLNK(mode) else ""
                finally:
                    if fd >= 0:
                        os.close(fd)
                if not stat.S_ISLNK(mode):
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/".join(parts))
                links += 1
                if links > MAX_SYMLINKS:
                    raise InvalidLayer(f"too many levels of symlinks resolving {'/'.join(parts)!r}")
                if target.startswith("/"):
                    while stack:
                        os.close(stack.pop())
                pending.extendleft(reversed(target.split("/")))
            return stack.pop() if stack else os.dup(self.fd)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise InvalidLayer(f"cannot resolve {'/'.join(parts)!r}: {exc.strerror}") from exc
            raise
        finally:
            for fd in stack:
                os.close(fd)
