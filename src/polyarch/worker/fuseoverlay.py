"""fuse-overlayfs: the overlay of rootless mode where the kernel's cannot be mounted in a user namespace (Linux
before 5.11, or a store on a filesystem overlayfs refuses as upper, such as a container's own overlayfs root).

API (for ``worker.overlay``, which decides when)::

    available() -> bool                               # fuse-overlayfs installed and /dev/fuse usable
    with FuseOverlay(lowers, upper, work, target):    # lowers top-most first; mounted on enter, unmounted on exit
        ...
    OPAQUE_XATTR, MARK_NAMES                           # how it marks an upper dir opaque (see below)

The daemon runs in the foreground as this process's child (``-f``) with a parent-death signal, so it never
outlives the builder; it is ready when ``target`` became a mount point. Each directory is passed as an
``O_PATH`` descriptor named ``/proc/self/fd/N`` (inherited), so no path of the store reaches its option string.
Its upper dirs use 0:0 character devices for whiteouts like the kernel's, but mark an opaque directory with the
``user.fuseoverlayfs.opaque`` xattr plus two entries of its own inside it (``.wh..wh..opq``, ``.wh..opq``):
``worker.diff`` skips those entries (``overlay.marker_names``) and reads the xattr (``overlay.opaque_xattr``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

from polyarch.errors import StoreError

from . import linux

__all__ = ["MARK_NAMES", "OPAQUE_XATTR", "FuseOverlay", "available"]

OPAQUE_XATTR = "user.fuseoverlayfs.opaque"
MARK_NAMES = frozenset({b".wh..wh..opq", b".wh..opq"})
_READY_TIMEOUT = 10.0


def available() -> bool:
    """Is fuse-overlayfs installed, and /dev/fuse open to this process?"""
    return shutil.which("fuse-overlayfs") is not None and os.access("/dev/fuse", os.R_OK | os.W_OK)


class FuseOverlay:
    """One fuse-overlayfs mount and its daemon (a context manager)."""

    def __init__(self, lowers: list[Path], upper: Path, work: Path, target: Path) -> None:
        self.lowers, self.upper, self.work, self.target = lowers, upper, work, target
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Path:
        fds: list[int] = []
        try:
            for path in (*self.lowers, self.upper, self.work):
                fds.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
            *lower, upper, work = (f"/proc/self/fd/{fd}" for fd in fds)
            opts = f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work}"
            self._proc = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", "--", "fuse-overlayfs", "-f", "-o", opts,
                 os.fspath(self.target)], pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE)
        except OSError as exc:
            raise StoreError(f"cannot start fuse-overlayfs on {self.target}: {exc.strerror}") from exc
        finally:
            for fd in fds:
                os.close(fd)
        deadline = time.monotonic() + _READY_TIMEOUT
        while not linux.is_mountpoint(self.target):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._stop()
                raise StoreError(f"fuse-overlayfs did not mount {self.target}: {err or 'no output'}")
            time.sleep(0.002)
        return self.target

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with contextlib.suppress(StoreError):
            linux.umount(self.target)
        self._stop()

    def _stop(self) -> str:
        """Wait for the daemon (it exits once unmounted), killing it if it does not; its last error line."""
        proc, self._proc = self._proc, None
        if proc is None:
            return ""
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        lines = [line for line in (err or b"").decode("utf-8", "replace").splitlines()
                 if line.strip() and "unknown argument ignored" not in line]
        return lines[-1].strip() if lines else ""
