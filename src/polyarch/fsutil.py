"""Generic file helpers: atomic replacement of a file, durable renames, private directories.

- ``atomic_file(path)`` / ``atomic_write(path, data)``: the bytes appear at ``path`` only when complete — a temp
  file beside it, flushed and fsynced, renamed over ``path``, then the directory fsynced. A failure (or a crash)
  leaves ``path`` as it was; the temp file is removed on an exception.
- ``fsync_dir(path)``: make a rename or create in ``path`` durable (best effort: errors are ignored).
- ``start_writeback(fd, offset, length)``: ask the kernel to start writing a range to disk now
  (``sync_file_range``), so a later fsync has little left to wait for. An optimisation only.
- ``private_dir(path)``: a directory only its owner can enter (0700), created or tightened.
- ``sync_filesystem(path)``: make everything written to the filesystem holding ``path`` durable with one
  ``syncfs`` (``os.sync`` where libc has none): the one flush at the end of a batch of store writes.

No polyarch imports: any layer may use this module.
"""

from __future__ import annotations

import fcntl
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_file", "atomic_write", "fsync_dir", "lock_held", "private_dir", "start_writeback",
           "sync_filesystem"]


def fsync_dir(path: Path) -> None:
    """fsync the directory ``path`` so entries just renamed or created in it survive a crash (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path`` only when the block succeeds (temp file + fsync + rename);
    on an exception the temp file is removed and ``path`` is left as it was."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file + fsync + rename."""
    with atomic_file(path) as f:
        f.write(data)


def private_dir(path: Path) -> None:
    """Make ``path`` (its missing parents with the default mode) a 0700 directory, or close an existing one:
    one ``stat``, and a ``chmod`` only when group or others have any access (a directory of another owner that
    this process may not chmod is left as it is)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(path)
    if st.st_mode & 0o077:
        try:
            os.chmod(path, 0o700)
        except PermissionError:
            pass


def lock_held(path: Path) -> bool | None:
    """Whether someone holds an ``flock`` on ``path`` (shared or exclusive); None when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's own lock
    return False


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range``, looked up on first use; None when not Linux/glibc (fsync does all the work)."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes at ``offset`` of ``fd`` to disk now, without waiting
    (``sync_file_range(SYNC_FILE_RANGE_WRITE)``). An optimisation only: durability still comes from fsync."""
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int,)
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page and metadata change of the filesystem holding ``path`` to disk, and wait.

    :raises OSError: the flush failed (an I/O error: what was written may not be durable).
    """
    fn = _syncfs()
    if fn is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if fn(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)
