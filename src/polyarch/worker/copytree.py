"""Copy a directory tree with everything a rootfs needs: hardlinks, symlinks (never followed), devices, FIFOs,
owners, modes (incl. setuid), xattrs and nanosecond mtimes. Used by the copying snapshotter.

API::

    copy_tree(src, dst)     # dst must not exist
"""

from __future__ import annotations

import os
import shutil
import stat

__all__ = ["copy_tree"]


def _xattrs(src: str, dst: str | int, *, symlink: bool = False) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        try:
            value = os.getxattr(src, name, follow_symlinks=False)
            if isinstance(dst, int):
                os.setxattr(dst, name, value)
            else:
                os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError:
            if not symlink:
                continue


def _meta(dst: str, st: os.stat_result, root: bool, *, symlink: bool = False) -> None:
    if root:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not symlink:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy ``src`` to the new directory ``dst``, preserving what a container filesystem holds."""
    src, dst = os.fspath(src), os.fspath(dst)
    root = os.geteuid() == 0
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, os.stat_result]] = []

    def copy_dir(s: str, d: str, st: os.stat_result) -> None:
        os.mkdir(d, 0o700)
        _xattrs(s, d)
        dirs.append((d, st))
        with os.scandir(s) as it:
            entries = list(it)
        for e in entries:
            sp, dp = e.path, os.path.join(d, e.name)
            est = e.stat(follow_symlinks=False)
            mode = est.st_mode
            if stat.S_ISDIR(mode):
                copy_dir(sp, dp, est)
                continue
            if est.st_nlink > 1 and not stat.S_ISDIR(mode):
                first = links.get((est.st_dev, est.st_ino))
                if first is not None:
                    os.link(first, dp, follow_symlinks=False)
                    continue
                links[(est.st_dev, est.st_ino)] = dp
            if stat.S_ISREG(mode):
                shutil.copyfile(sp, dp, follow_symlinks=False)
                _xattrs(sp, dp)
                _meta(dp, est, root)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(sp), dp)
                _xattrs(sp, dp, symlink=True)
                _meta(dp, est, root, symlink=True)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                if root:
                    os.mknod(dp, mode, est.st_rdev)
                    _meta(dp, est, root)
            elif stat.S_ISFIFO(mode):
                os.mkfifo(dp)
                _meta(dp, est, root)

    copy_dir(src, dst, os.lstat(src))
    for d, st in reversed(dirs):
        _meta(d, st, root)
