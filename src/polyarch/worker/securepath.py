"""Rooted path resolution: every symlink is resolved as if ``root`` were ``/`` (like chroot), never to the host.

API::

    secure_join(root, path) -> str        # absolute host path under root; symlinks resolved inside root
    split_entry_name(name) -> tuple[str, ...]   # validated components of an archive entry name (no .., no /abs)
    RootedResolver(root)                  # secure_join with a cache of resolved parent directories

The guarantee (the same as cyphar/filepath-securejoin): the result lies under ``root``, each symlink component
was resolved relative to ``root``, and the result has no ``..``. The final component is *not* followed when it
is a symlink only if the caller asks for the parent (``resolve_parent``); operate on the last component with
``O_NOFOLLOW``/``lstat``. It is safe only while nothing else changes the tree at the same time (TOCTOU): the
worker owns the trees it applies into.
"""

from __future__ import annotations

import os
import stat
from collections import deque

from polyarch.errors import InvalidLayer

__all__ = ["MAX_SYMLINKS", "RootedResolver", "secure_join", "split_entry_name"]

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


class RootedResolver:
    """Resolves parents of archive entries inside ``root``, caching directories already resolved.

    Call ``invalidate()`` whenever a directory or symlink may have been removed or replaced: the cache maps
    relative parent paths to resolved host paths and would be stale.
    """

    __slots__ = ("_cache", "root")

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self._cache: dict[tuple[str, ...], str] = {(): self.root}

    def invalidate(self) -> None:
        self._cache = {(): self.root}

    def parent(self, parts: tuple[str, ...]) -> str:
        """Host path of the directory that holds ``parts[-1]`` (symlinks resolved inside root)."""
        key = parts[:-1]
        hit = self._cache.get(key)
        if hit is None:
            hit = secure_join(self.root, "/".join(key))
            self._cache[key] = hit
        return hit

    def path(self, parts: tuple[str, ...]) -> str:
        """Host path of ``parts`` itself: the parent resolved, the final component not followed."""
        return self.parent(parts) + "/" + parts[-1] if parts else self.root

    def remember(self, parts: tuple[str, ...], host_path: str) -> None:
        """Record that directory ``parts`` is the real directory ``host_path`` (just created or checked)."""
        self._cache[parts] = host_path
