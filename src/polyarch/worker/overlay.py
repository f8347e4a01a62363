"""overlayfs as snapshots use it: can it be mounted here, a mount with polyarch's options, and an upper dir's
copy-ups that change nothing dropped before the upper dir becomes a layer.

Options ``redirect_dir=off,metacopy=off,index=off`` keep an upper dir self-contained (it is moved into place as
the next snapshot and read as a layer). In a user namespace (rootless mode, ``worker.userns``; Linux ≥ 5.11)
overlayfs cannot use ``trusted.*`` xattrs: ``overlay_options`` adds ``userxattr`` (opaque marks become
``user.overlay.opaque``, ``opaque_xattr``) with ``redirect_dir=nofollow``, the one redirect setting it allows;
where even that cannot be mounted, ``overlay_supported`` says no and snapshots are copied. Layers are passed to ``linux.mount_overlay`` as paths it opens O_PATH,
never put in an option string.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

from polyarch.errors import PolyarchError
from polyarch.fsutil import private_dir

from . import linux

__all__ = ["OVERLAY_OPTS", "OverlayMount", "opaque_xattr", "overlay_options", "overlay_prefix", "overlay_supported",
           "prune_copy_ups"]

OVERLAY_OPTS = (("redirect_dir", "off"), ("metacopy", "off"), ("index", "off"))
USERNS_OPTS = (("redirect_dir", "nofollow"), ("metacopy", "off"), ("index", "off"), ("userxattr", ""))


@functools.cache
def _rootless() -> bool:
    from .userns import in_user_namespace

    return in_user_namespace()


def overlay_options() -> tuple[tuple[str, str], ...]:
    """The mount options of every overlay polyarch mounts in this process (``USERNS_OPTS`` in a user namespace)."""
    return USERNS_OPTS if _rootless() else OVERLAY_OPTS


def overlay_prefix() -> str:
    """The xattr namespace overlayfs keeps its marks in here: ``trusted.overlay.``, or ``user.overlay.`` in a
    user namespace; such xattrs are never copied into a layer."""
    return "user.overlay." if _rootless() else "trusted.overlay."


def opaque_xattr() -> str:
    """The xattr that marks an upper directory opaque (``overlay_prefix`` + ``opaque``)."""
    return overlay_prefix() + "opaque"

_probe_lock = threading.Lock()
_probe_cache: dict[str, bool] = {}


def overlay_supported(base: Path) -> bool:
    """Can an overlayfs with its upper dir under ``base`` be mounted here? (cached per directory)"""
    key = os.fspath(base)
    with _probe_lock:
        if key in _probe_cache:
            return _probe_cache[key]
        ok = False
        if os.geteuid() == 0:
            private_dir(base)
            probe = Path(tempfile.mkdtemp(prefix="probe-", dir=base))
            try:
                for d in ("l", "u", "w", "m"):
                    (probe / d).mkdir()
                linux.mount_overlay([probe / "l"], probe / "u", probe / "w", probe / "m", overlay_options())
                linux.umount(probe / "m")
                ok = True
            except PolyarchError:
                ok = False
            finally:
                shutil.rmtree(probe, ignore_errors=True)
        _probe_cache[key] = ok
        return ok


class OverlayMount:
    def __init__(self, lowers: list[Path], upper: Path, workdir: Path, target: Path) -> None:
        self.lowers, self.upper, self.workdir, self.target = lowers, upper, workdir, target

    def __enter__(self) -> Path:
        if not self.lowers:
            empty = self.workdir.parent / "empty"
            empty.mkdir(exist_ok=True)
            lowers = [empty]
        else:
            lowers = self.lowers
        # overlay wants the top-most lower first
        linux.mount_overlay(lowers[::-1], self.upper, self.workdir, self.target, overlay_options())
        return self.target

    def __exit__(self, *exc: object) -> None:
        linux.umount(self.target)


def _lower_lstat(lowers: list[Path], rel: str) -> os.stat_result | None:
    """lstat of ``rel`` in the top-most lower holding it; no symlink in any lower is followed (overlayfs merges
    by name, never through a lower's symlink, and a step may have planted one pointing at the host)."""
    for d in reversed(lowers):
        try:
            dfd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fd = linux.open_beneath(dfd, rel, os.O_PATH | os.O_NOFOLLOW)
            finally:
                os.close(dfd)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return None  # a symlink or a file on the way hides every lower below it at ``rel``
            raise
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)
    return None


def prune_copy_ups(upper: Path, lowers: list[Path]) -> None:
    """Drop upper directories that are empty, not opaque, and identical in metadata to the lower directory
    they were copied up from (e.g. /etc after a mount stub in it was removed): they change nothing."""
    for dirpath, _dirnames, filenames in os.walk(upper, topdown=False):
        if dirpath == os.fspath(upper) or filenames or os.listdir(dirpath):
            continue
        rel = os.path.relpath(dirpath, upper)
        try:
            if os.getxattr(dirpath, opaque_xattr(), follow_symlinks=False) == b"y":
                continue
        except OSError:
            pass
        low = _lower_lstat(lowers, rel)
        st = os.lstat(dirpath)
        if low is None or not stat.S_ISDIR(low.st_mode):
            continue
        if (low.st_mode, low.st_uid, low.st_gid, low.st_mtime_ns) == (st.st_mode, st.st_uid, st.st_gid,
                                                                      st.st_mtime_ns):
            os.rmdir(dirpath)
