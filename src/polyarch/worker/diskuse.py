"""Disk use of a tree as ``du -sb`` counts it: the apparent size of every entry, directories included.

API::

    tree_size(path) -> int      # bytes; 0 when ``path`` is gone

Every entry's ``lstat().st_size`` (files, directories, symlinks, device nodes), each inode once (hard links), the
top entry included; symlinks are never followed and other filesystems mounted inside the tree are not entered
(an active snapshot's ``merged`` mount is not the snapshot's own data). Entries that vanish while the tree is
walked count as gone.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["tree_size"]


def tree_size(path: Path | str) -> int:
    try:
        top = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(top.st_mode):
        return top.st_size
    seen: set[tuple[int, int]] = {(top.st_dev, top.st_ino)}
    total = top.st_size
    stack = [os.fspath(path)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != top.st_dev:
                continue  # a mount point: another filesystem's tree
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_size
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
    return total
