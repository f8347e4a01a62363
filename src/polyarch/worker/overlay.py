"""overlayfs as snapshots use it: can it be mounted here, a mount with polyarch's options, and an upper dir's
copy-ups that change nothing dropped before the upper dir becomes a layer.

Options ``redirect_dir=off,metacopy=off,index=off`` keep an upper dir self-contained (it is moved into place as
the next snapshot and read as a layer). Layers are passed to ``linux.mount_overlay`` as paths it opens O_PATH,
never put in an option string.

Rootless mode (a user namespace, ``worker.userns``): the kernel's overlayfs (Linux ≥ 5.11) cannot use
``trusted.*`` xattrs there, so ``overlay_options`` adds ``userxattr`` (opaque marks become
``user.overlay.opaque``) with ``redirect_dir=nofollow``, the one redirect setting it allows. Where the kernel
refuses even that (an older kernel, a store on a filesystem it refuses as upper, e.g. inside a container whose
root is overlayfs), the probe tries ``worker.fuseoverlay`` (fuse-overlayfs); where neither mounts,
``overlay_supported`` says no and snapshots are copied. The probe that first succeeds fixes this process's
backend (``backend``); ``OverlayMount``, ``opaque_xattr``, ``overlay_prefix`` and ``marker_names`` follow it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from polyarch.errors import PolyarchError
from polyarch.fsutil import private_dir

from . import fuseoverlay, linux

__all__ = ["OVERLAY_OPTS", "OverlayMount", "backend", "marker_names", "mounted", "opaque_xattr", "overlay_options",
           "overlay_prefix", "overlay_supported", "prune_copy_ups"]

OVERLAY_OPTS = (("redirect_dir", "off"), ("metacopy", "off"), ("index", "off"))
USERNS_OPTS = (("redirect_dir", "nofollow"), ("metacopy", "off"), ("index", "off"), ("userxattr", ""))
_NO_MARKS: frozenset[bytes] = frozenset()

_probe_lock = threading.Lock()
_probe_cache: dict[str, bool] = {}
_backend: list[str] = []  # "kernel" or "fuse": what the first successful probe of this process mounted


@functools.cache
def _rootless() -> bool:
    from .userns import in_user_namespace

    return in_user_namespace()


def backend() -> str:
    """``kernel`` or ``fuse``: how this process mounts overlays (``kernel`` until a probe chose fuse)."""
    return _backend[0] if _backend else "kernel"


def overlay_options() -> tuple[tuple[str, str], ...]:
    """The kernel mount options of every overlay polyarch mounts here (``USERNS_OPTS`` in a user namespace)."""
    return USERNS_OPTS if _rootless() else OVERLAY_OPTS


def overlay_prefix() -> str:
    """The xattr namespace the overlay keeps its marks in: ``trusted.overlay.``, in a user namespace
    ``user.overlay.`` (fuse-overlayfs: ``user.fuseoverlayfs.``); such xattrs are never copied into a layer."""
    if backend() == "fuse":
        return "user.fuseoverlayfs."
    return "user.overlay." if _rootless() else "trusted.overlay."


def opaque_xattr() -> str:
    """The xattr that marks an upper directory opaque."""
    return fuseoverlay.OPAQUE_XATTR if backend() == "fuse" else overlay_prefix() + "opaque"


def marker_names() -> frozenset[bytes]:
    """Names of an upper dir's entries that are the overlay's own marks, not content (fuse-overlayfs only)."""
    return fuseoverlay.MARK_NAMES if backend() == "fuse" else _NO_MARKS


@contextlib.contextmanager
def mounted(lowers: list[Path], upper: Path, work: Path, target: Path, *, use: str = "") -> Iterator[Path]:
    """An overlay of ``lowers`` (top-most first) with ``upper``/``work`` on ``target``, unmounted on exit;
    ``use`` names the backend (default: ``backend()``)."""
    if (use or backend()) == "fuse":
        with fuseoverlay.FuseOverlay(lowers, upper, work, target):
            yield target
        return
    linux.mount_overlay(lowers, upper, work, target, overlay_options())
    try:
        yield target
    finally:
        linux.umount(target)


def _probe(base: Path, use: str) -> bool:
    probe = Path(tempfile.mkdtemp(prefix="probe-", dir=base))
    try:
        for d in ("l", "u", "w", "m"):
            (probe / d).mkdir()
        with mounted([probe / "l"], probe / "u", probe / "w", probe / "m", use=use):
            pass
        return True
    except PolyarchError:
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def overlay_supported(base: Path) -> bool:
    """Can an overlay with its upper dir under ``base`` be mounted here (the kernel's, or in a user namespace
    fuse-overlayfs)? Cached per directory; the first success fixes the process's ``backend``."""
    key = os.fspath(base)
    with _probe_lock:
        if key in _probe_cache:
            return _probe_cache[key]
        ok = False
        if os.geteuid() == 0:
            private_dir(base)
            candidates = [_backend[0]] if _backend else ["kernel", "fuse"] if _rootless() else ["kernel"]
            for use in candidates:
                if (use == "kernel" or fuseoverlay.available()) and _probe(base, use):
                    ok = True
                    if not _backend:
                        _backend.append(use)
                    break
        _probe_cache[key] = ok
        return ok


class OverlayMount:
    def __init__(self, lowers: list[Path], upper: Path, workdir: Path, target: Path) -> None:
        self.lowers, self.upper, self.workdir, self.target = lowers, upper, workdir, target
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Path:
        if not self.lowers:
            empty = self.workdir.parent / "empty"
            empty.mkdir(exist_ok=True)
            lowers = [empty]
        else:
            lowers = self.lowers
        # overlay wants the top-most lower first
        return self._stack.enter_context(mounted(lowers[::-1], self.upper, self.workdir, self.target))

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


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


def _drop_needless_fuse_marks(upper: Path, lowers: list[Path]) -> None:
    """fuse-overlayfs marks every directory it creates opaque; with no lower directory at its path the mark hides
    nothing: dropped (xattr and marker entries; the directory's times kept), so the layer is the one the kernel's
    overlayfs gives."""
    for dirpath, _dirnames, _filenames in os.walk(upper):
        try:
            if os.getxattr(dirpath, fuseoverlay.OPAQUE_XATTR, follow_symlinks=False) != b"y":
                continue
        except OSError:
            continue
        low = _lower_lstat(lowers, os.path.relpath(dirpath, upper))
        if low is not None and stat.S_ISDIR(low.st_mode):
            continue
        st = os.lstat(dirpath)
        for name in fuseoverlay.MARK_NAMES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(os.fsencode(dirpath), name))
        os.removexattr(dirpath, fuseoverlay.OPAQUE_XATTR, follow_symlinks=False)
        os.utime(dirpath, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def prune_copy_ups(upper: Path, lowers: list[Path]) -> None:
    """Drop upper directories that are empty, not opaque, and identical in metadata to the lower directory
    they were copied up from (e.g. /etc after a mount stub in it was removed): they change nothing. Under
    fuse-overlayfs, first drop the opaque marks it puts on directories that have nothing below them."""
    if backend() == "fuse":
        _drop_needless_fuse_marks(upper, lowers)
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
