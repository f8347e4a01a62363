"""Mount points a step needs in its rootfs, made before the runtime starts and removed after it (``MountPoints``).

Used by ``mounts.MountSetup`` (``--mount`` targets) and ``runc`` (the container's own /proc, /dev, /sys … through
``MountSetup.stub``). Nothing here follows a symlink in the kernel: see the class doc.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from polyarch.errors import BuildError

__all__ = ["MountPoints"]

_MAX_LINKS = 40  # as the kernel's path walk


def _components(path: str) -> list[str]:
    """The names of ``path`` without its empty and ``.`` parts."""
    return [p for p in path.split("/") if p and p != "."]


def _in_the_way(target: str, component: str, why: str) -> BuildError:
    return BuildError(f"cannot mount on {target}: in the image, {component} {why}")


@dataclass(frozen=True, slots=True)
class _Created:
    """A stub: ``name`` in the directory open as ``parent``, with the identity it had when created."""

    parent: int
    name: str
    dev: int
    ino: int


class MountPoints:
    """Mount points created in the rootfs for a step; removed afterwards when still empty.

    A target is resolved as runc resolves a mount destination: a symlink in the image is followed as if the
    rootfs were ``/`` (an absolute target and ``..`` stay inside it), and what is missing on the resolved path
    is created there, so runc finds every mount point in place and creates nothing itself that could end up in
    the layer. The walk is fd-relative, one component at a time: ``fstatat``/``readlink`` with no following,
    ``openat(O_NOFOLLOW)`` to descend, ``mkdirat``/``openat(O_EXCL|O_NOFOLLOW)`` to create, ``..`` taken from the
    walk's own stack of directories; the kernel never follows a symlink, so nothing outside the rootfs is looked
    at or made. A component that is in the way (a file where a directory is needed, a directory where a file
    mount goes, a symlink where ``ordinary`` is asked, a symlink loop) is a BuildError naming it.

    Each stub is made in a directory held open until the cleanup, and removed from that same directory only while
    the name still holds the very inode created (dev/ino). A step that renames a stub's parent away and plants a
    symlink to the host in its place thus cannot steer the cleanup, nor the restore of the parents' mtimes
    (``futimens`` on the held descriptor), outside the rootfs.
    """

    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs
        self.created: list[_Created] = []
        self._times: dict[tuple[int, int], tuple[int, int, int]] = {}  # (dev, ino) -> (fd, atime, mtime)
        self._fds: list[int] = []
        self._root_fd = -1

    def _keep(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def _touching(self, fd: int) -> None:
        """Remember the times of the directory open as ``fd`` before the first stub is made in it."""
        st = os.fstat(fd)
        self._times.setdefault((st.st_dev, st.st_ino), (fd, st.st_atime_ns, st.st_mtime_ns))

    def ensure(self, target: str, *, is_dir: bool, ordinary: bool = False) -> None:
        """Make ``target`` (absolute, inside the rootfs) a directory (``is_dir``) or a non-directory to mount on.

        ``ordinary``: no component may be a symlink (runc refuses one at /proc and /sys, and makes the device
        nodes and links of /dev by the unresolved path, so through a /dev symlink on the host).

        :raises BuildError: a component of the path is in the way; names it and says why.
        """
        if self._root_fd < 0:
            self._root_fd = self._keep(os.open(self.rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        todo = deque(_components(target))
        entered: list[tuple[str, int]] = []  # the directories walked into below the root: (name, fd)
        links = 0
        on_dir = True  # the walk stands on a directory (not on a file it made or found at the end)
        while todo:
            name = todo.popleft()
            cur = entered[-1][1] if entered else self._root_fd
            if name == "..":
                if entered:
                    entered.pop()
                continue
            here = "/" + "/".join([n for n, _ in entered] + [name])
            last = not todo
            try:
                st = os.stat(name, dir_fd=cur, follow_symlinks=False)
            except FileNotFoundError:
                on_dir = is_dir or not last
                self._create(cur, name, is_dir=on_dir, entered=entered)
                continue
            if stat.S_ISLNK(st.st_mode):
                if ordinary:
                    raise _in_the_way(target, here,
                                      "is a symbolic link (it must be an ordinary directory)")
                links += 1
                if links > _MAX_LINKS:
                    raise _in_the_way(target, here, "is in a loop of symbolic links")
                dest = os.readlink(name, dir_fd=cur)
                if dest.startswith("/"):
                    entered.clear()
                todo.extendleft(reversed(_components(dest)))
            elif stat.S_ISDIR(st.st_mode):
                entered.append((name, self._keep(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                                         | os.O_CLOEXEC, dir_fd=cur))))
            elif not last or is_dir:
                raise _in_the_way(target, here, "is not a directory")
            else:
                on_dir = False
        self._release_unused()
        if on_dir and not is_dir:  # also where a symlink at the end led to a directory, or to the root
            raise _in_the_way(target, "/" + "/".join(n for n, _ in entered),
                              "is a directory (a file is mounted there)")

    def _release_unused(self) -> None:
        """Close the directories walked through that hold no stub and whose times need no restore."""
        needed = {self._root_fd, *(c.parent for c in self.created), *(fd for fd, _, _ in self._times.values())}
        for fd in [fd for fd in self._fds if fd not in needed]:
            os.close(fd)
        self._fds = [fd for fd in self._fds if fd in needed]

    def _create(self, parent: int, name: str, *, is_dir: bool, entered: list[tuple[str, int]]) -> None:
        self._touching(parent)
        if not is_dir:
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=parent)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            self.created.append(_Created(parent, name, st.st_dev, st.st_ino))
            return
        os.mkdir(name, 0o755, dir_fd=parent)
        child = self._keep(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                   dir_fd=parent))
        st = os.fstat(child)
        self.created.append(_Created(parent, name, st.st_dev, st.st_ino))
        entered.append((name, child))

    def remove(self) -> None:
        try:
            for c in reversed(self.created):
                try:
                    st = os.stat(c.name, dir_fd=c.parent, follow_symlinks=False)
                    if (st.st_dev, st.st_ino) != (c.dev, c.ino):
                        continue  # the step put something else there: it is part of the step's changes
                    if stat.S_ISDIR(st.st_mode):
                        os.rmdir(c.name, dir_fd=c.parent)
                    elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                        os.unlink(c.name, dir_fd=c.parent)
                except OSError:
                    continue
            for fd, atime, mtime in self._times.values():
                with contextlib.suppress(OSError):
                    os.utime(fd, ns=(atime, mtime))
        finally:
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()
            self.created.clear()
            self._times.clear()
            self._root_fd = -1
