"""Rooted path resolution: every symlink is resolved as if ``root`` were ``/`` (like chroot), never to the host.

API::

    secure_join(root, path) -> str        # absolute host path under root; symlinks resolved inside root
    split_entry_name(name) -> tuple[str, ...]   # validated components of an archive entry name (no .., no /abs)

The guarantee (the same as cyphar/filepath-securejoin): the result lies under ``root``, each symlink component
was resolved relative to ``root``, and the result has no ``..``. The final component is *not* followed when it
is a symlink only with ``follow_final=False``; operate on the last component with
``O_NOFOLLOW``/``lstat``. A host path is safe only while nothing changes the tree between the join and its use
(TOCTOU), including the caller itself: code that changes the tree while resolving in it (layer apply) must use
the descriptor-based ``rooted.RootDir`` instead, which resolves each name afresh and never by a host path.
"""

from __future__ import annotations

import os
import stat
from collections import deque

from polyarch.errors import InvalidLayer

__all__ = ["MAX_SYMLINKS", "secure_join", "split_entry_name"]

MAX_SYMLINKS = 255


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def secure_join(root: str | os.PathLike[str], path: str, *, follow_final: bool = True) -> str:
    """``root`` + ``path`` with every symlink resolved inside ``root``.

    ``..`` never climbs above ``root``; absolute symlink targets restart at ``root``. Missing components are
    kept as written. With ``follow_final=False`` a symlink in the last component is not followed.

    :raises InvalidLayer: more than ``MAX_SYMLINKS`` symlinks (a loop).
    """
    base = os.path.abspath(os.fspath(root))
    pending: deque[str] = deque(_components(path))
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.popleft()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = base + "/" + "/".join([*resolved, part])
        if not pending and not follow_final:
            resolved.append(part)
            break
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise InvalidLayer(f"too many levels of symlinks resolving {path!r}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending.extendleft(reversed(_components(target)))
    return base + ("/" + "/".join(resolved) if resolved else "")


def split_entry_name(name: str, *, what: str = "entry") -> tuple[str, ...]:
    """Validate an archive member name and split it into components.

    Accepts ``./`` prefixes and trailing slashes. Rejects absolute names, any ``..`` component, NUL bytes
    and empty names: a layer carrying them is hostile or broken.

    :raises InvalidLayer: naming the entry.
    """
    if "\x00" in name:
        raise InvalidLayer(f"layer {what} {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise InvalidLayer(f"layer {what} {name!r} is an absolute path")
    parts = tuple(_components(name))
    if ".." in parts:
        raise InvalidLayer(f"layer {what} {name!r} climbs out with '..'")
    return parts
