"""The build context as a ``RUN --mount=type=bind`` sees it: only what ``.dockerignore`` admits.

BuildKit mounts the context it received, and it received it filtered; a bind mount of the raw directory would
show ``.env``, ``.git`` and keys the user left out. ``filtered_view(source, dest, excluded)`` builds that tree
in a fresh directory ``dest`` (in the build's scratch): directories are made, regular files are hard-linked (or
copied when the scratch is on another filesystem), symlinks are recreated as they are (never followed); FIFOs,
sockets and devices are left out. Modes, owners and times are kept. The runc mount of the view is read-only, or
an overlay (or copy) over it for ``rw``, so a step never writes through a hard link into the context.

``reincludes`` says whether a ``!pattern`` can bring back something under an excluded directory; without one,
excluded directories are not walked at all (``.git`` and ``node_modules`` are large).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = ["filtered_view"]


def filtered_view(source: Path, dest: Path, excluded: Callable[[str], bool], *, reincludes: bool) -> Path:
    """Fill the new directory ``dest`` with the part of ``source`` that ``excluded`` (relative paths) admits."""
    root = os.geteuid() == 0
    linking = [True]
    dirs: list[tuple[str, os.stat_result]] = []

    def meta(path: str, st: os.stat_result) -> None:
        if root:
            os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def file(src: str, dst: str, st: os.stat_result) -> None:
        if linking[0]:
            try:
                os.link(src, dst, follow_symlinks=False)
                return
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                linking[0] = exc.errno == errno.EMLINK
        shutil.copyfile(src, dst, follow_symlinks=False)
        meta(dst, st)

    def walk(src: str, dst: str, rel: str, made: bool) -> bool:
        """Copy the admitted children of ``src``; ``dst`` is created on the first one unless ``made``.
        Returns whether ``dst`` exists."""
        with os.scandir(src) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            child_rel = f"{rel}/{child.name}" if rel else child.name
            st = child.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            out = os.path.join(dst, child.name)
            if excluded(child_rel):
                if is_dir and reincludes and walk(child.path, out, child_rel, False):
                    made = True
                continue
            if not (is_dir or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue
            if not made:
                os.makedirs(dst, 0o755, exist_ok=True)
                made = True
            if is_dir:
                os.mkdir(out, 0o700)
                dirs.append((out, st))
                walk(child.path, out, child_rel, True)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(child.path), out)
                meta(out, st)
            else:
                file(child.path, out, st)
        return made

    os.mkdir(dest, 0o700)
    walk(os.fspath(source), os.fspath(dest), "", True)
    for path, st in reversed(dirs):  # children first: a read-only directory is closed last
        meta(path, st)
    meta(os.fspath(dest), os.stat(source))
    return dest
