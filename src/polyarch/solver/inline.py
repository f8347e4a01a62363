"""Files with literal content (heredocs) written into a fresh scratch directory, and nowhere else.

``write_inline_files(directory, files)`` creates each ``(name, data, mode)`` in ``directory`` through a descriptor
of that directory: a name must be one path component (no ``/``, not ``.`` or ``..``, no NUL), the file is opened
with ``O_NOFOLLOW`` relative to the directory's descriptor, and mode and times are set on the open file. The
frontend already turns a heredoc's name into such a component (``heredoc_file_name``); this is the second lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from polyarch.errors import BuildError

__all__ = ["write_inline_files"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


def write_inline_files(directory: Path, files: Iterable[tuple[str, bytes, int]]) -> None:
    """Write ``files`` into the existing, empty ``directory``; mtimes are 0 so layers do not depend on the clock.

    :raises BuildError: a name that is not a single path component.
    """
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name, data, mode in files:
            if not name or "/" in name or name in (".", "..") or "\x00" in name:
                raise BuildError(f"inline file name {name!r} is not a file name")
            fd = os.open(name, _FLAGS, 0o600, dir_fd=dfd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, mode & 0o7777)
                os.utime(fd, (0, 0))
            finally:
                os.close(fd)
    finally:
        os.close(dfd)
