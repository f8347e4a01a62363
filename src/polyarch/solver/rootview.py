"""A read-only view of the paths in a stack of layers, without extracting them.

COPY and WORKDIR need a few facts about the tree they land on: does the destination exist (and is it a
directory), which parents must be created, and the ids of user and group names (``/etc/passwd``,
``/etc/group``). Reading the layer tars' headers answers that; the entries of a layer are kept in memory per
blob digest for the process, and persisted (``content.pathindex.LayerIndexes``, the build cache) so a large base is read once. A pull
usually made the index already, while the blob streamed in (``polyarch.content.pathindex``); a layer without one is
read here from the store.
"""

from __future__ import annotations

import tarfile
import threading
from collections.abc import Sequence

from polyarch.content.compression import decompressed
from polyarch.content.pathindex import LayerIndex, LayerIndexes, PathInfo, add_member, decode, encode
from polyarch.content.store import ContentStore
from polyarch.errors import BuildError, InvalidLayer

from .state import Layer

__all__ = ["PathInfo", "RootView", "resolve_chown"]

_MAX_LINKS = 40

_cache: dict[str, LayerIndex] = {}
_cache_lock = threading.Lock()


def _index(content: ContentStore, layer: Layer, persist: LayerIndexes | None = None) -> LayerIndex:
    key = str(layer.descriptor.digest)
    with _cache_lock:
        found = _cache.get(key)
    if found is not None:
        return found
    if persist is not None:
        data = persist.layer_index(key)
        loaded = decode(data) if data is not None else None
        if loaded is not None:
            with _cache_lock:
                _cache[key] = loaded
            return loaded
    entries: list[tuple[str, PathInfo | None, bool]] = []
    small: dict[str, bytes] = {}
    try:
        with content.open(layer.descriptor.digest) as raw, tarfile.open(fileobj=decompressed(raw), mode="r|") as tf:
            for m in tf:
                name = add_member(entries, m)
                if name is not None:
                    f = tf.extractfile(m)
                    if f is not None:
                        small[name] = f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidLayer(f"cannot read layer {layer.descriptor.digest}: {exc}") from exc
    index = LayerIndex(tuple(entries), small)
    with _cache_lock:
        _cache[key] = index
    if persist is not None:
        persist.put_layer_index(key, encode(index))
    return index


class RootView:
    """Paths of the merged tree of ``layers`` (base first)."""

    def __init__(self, content: ContentStore, layers: Sequence[Layer], persist: LayerIndexes | None = None) -> None:
        self._paths: dict[str, PathInfo] = {}
        self._small: dict[str, bytes] = {}
        for layer in layers:
            idx = _index(content, layer, persist)
            for path, info, opaque in idx.entries:
                if opaque:
                    prefix = path + "/"
                    for p in [p for p in self._paths if p.startswith(prefix)]:
                        del self._paths[p]
                elif info is None:
                    prefix = path + "/"
                    for p in [p for p in self._paths if p == path or p.startswith(prefix)]:
                        del self._paths[p]
                    self._small.pop(path, None)
                else:
                    self._paths[path] = info
            for name in list(self._small):
                if name not in self._paths:
                    del self._small[name]
            self._small.update(idx.small)

    def resolve(self, path: str) -> str:
        """``path`` (absolute in the image) with symlinks resolved inside the tree; relative, no leading ``/``."""
        parts = [p for p in path.split("/") if p and p != "."]
        done: list[str] = []
        links = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/".join([*done, part])
            info = self._paths.get(candidate)
            if info is not None and info.kind == "symlink":
                links += 1
                if links > _MAX_LINKS:
                    raise BuildError(f"too many levels of symbolic links at /{candidate}")
                target = info.linkname
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            done.append(part)
        return "/".join(done)

    def lookup(self, path: str) -> PathInfo | None:
        rel = self.resolve(path)
        if rel == "":
            return PathInfo("dir")
        return self._paths.get(rel)

    def is_dir(self, path: str) -> bool:
        info = self.lookup(path)
        return info is not None and info.kind == "dir"

    def small_file(self, name: str) -> bytes:
        return self._small.get(name, b"")


def _lookup_db(text: bytes, name: str, field: int) -> list[str] | None:
    for line in text.decode("utf-8", "replace").splitlines():
        cols = line.split(":")
        if len(cols) > field and cols[0] == name:
            return cols
    return None


def resolve_chown(chown: str, view: RootView | None) -> tuple[int, int] | None:
    """``user[:group]`` (names or ids) → (uid, gid) against the tree's ``/etc/passwd`` and ``/etc/group``.

    :raises BuildError: a name that the tree does not define.
    """
    if not chown:
        return None
    user, _, group = chown.partition(":")
    gid: int | None = None
    if user.isdigit():
        uid = int(user)
    else:
        cols = _lookup_db(view.small_file("etc/passwd") if view else b"", user, 3)
        if cols is None:
            raise BuildError(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = int(cols[2]), int(cols[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            cols = _lookup_db(view.small_file("etc/group") if view else b"", group, 2)
            if cols is None:
                raise BuildError(f"unable to find group {group}: no matching entries in group file")
            gid = int(cols[2])
    if gid is None:
        gid = uid
    return uid, gid
