"""A read-only view of the paths in a stack of layers, without extracting them.

COPY and WORKDIR need a few facts about the tree they land on: does the destination exist (and is it a
directory), which parents must be created, and the ids of user and group names (``/etc/passwd``,
``/etc/group``). Reading the layer tars' headers answers that; the entries of a layer are kept in memory per
blob digest for the process, and persisted (``IndexStore``, the build cache) so a large base is read once.
"""

from __future__ import annotations

import base64
import json
import posixpath
import tarfile
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from polyarch.content.compression import decompressed
from polyarch.content.store import ContentStore
from polyarch.errors import BuildError, InvalidLayer

from .state import Layer

__all__ = ["IndexStore", "PathInfo", "RootView", "resolve_chown"]

_SMALL_FILES = ("etc/passwd", "etc/group")
_MAX_LINKS = 40


@dataclass(frozen=True, slots=True)
class PathInfo:
    kind: str  # dir | file | symlink | other
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    linkname: str = ""


@dataclass(frozen=True, slots=True)
class _LayerIndex:
    entries: tuple[tuple[str, PathInfo | None, bool], ...]  # (path, info or None = whiteout, opaque marker)
    small: dict[str, bytes]


_cache: dict[str, _LayerIndex] = {}
_cache_lock = threading.Lock()


def _kind(m: tarfile.TarInfo) -> str:
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.isreg() or m.islnk():
        return "file"
    return "other"


class IndexStore(Protocol):
    """Persistent layer indexes by blob digest (``BuildCache`` implements it)."""

    def layer_index(self, digest: str) -> bytes | None: ...
    def put_layer_index(self, digest: str, data: bytes) -> None: ...


def _dump(index: _LayerIndex) -> bytes:
    doc = {"e": [[p, None if i is None else [i.kind, i.mode, i.uid, i.gid, i.linkname], o]
                 for p, i, o in index.entries],
           "s": {k: base64.b64encode(v).decode() for k, v in index.small.items()}}
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)


def _load(data: bytes) -> _LayerIndex | None:
    try:
        doc = json.loads(zlib.decompress(data))
        entries = tuple((p, None if i is None else PathInfo(*i), bool(o)) for p, i, o in doc["e"])
        return _LayerIndex(entries, {k: base64.b64decode(v) for k, v in doc["s"].items()})
    except (ValueError, KeyError, TypeError, zlib.error):
        return None


def _index(content: ContentStore, layer: Layer, persist: IndexStore | None = None) -> _LayerIndex:
    key = str(layer.descriptor.digest)
    with _cache_lock:
        found = _cache.get(key)
    if found is not None:
        return found
    if persist is not None:
        data = persist.layer_index(key)
        loaded = _load(data) if data is not None else None
        if loaded is not None:
            with _cache_lock:
                _cache[key] = loaded
            return loaded
    entries: list[tuple[str, PathInfo | None, bool]] = []
    small: dict[str, bytes] = {}
    try:
        with content.open(layer.descriptor.digest) as raw, tarfile.open(fileobj=decompressed(raw), mode="r|") as tf:
            for m in tf:
                name = posixpath.normpath(m.name.lstrip("/"))
                if name in (".", "") or name.startswith("../"):
                    continue
                base = posixpath.basename(name)
                parent = posixpath.dirname(name)
                if base == ".wh..wh..opq":
                    entries.append((parent, None, True))
                elif base.startswith(".wh."):
                    entries.append((posixpath.join(parent, base[4:]), None, False))
                else:
                    entries.append((name, PathInfo(_kind(m), m.mode & 0o7777, m.uid, m.gid, m.linkname), False))
                    if name in _SMALL_FILES and m.isreg() and m.size < (1 << 20):
                        f = tf.extractfile(m)
                        if f is not None:
                            small[name] = f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidLayer(f"cannot read layer {layer.descriptor.digest}: {exc}") from exc
    index = _LayerIndex(tuple(entries), small)
    with _cache_lock:
        _cache[key] = index
    if persist is not None:
        persist.put_layer_index(key, _dump(index))
    return index


class RootView:
    """Paths of the merged tree of ``layers`` (base first)."""

    def __init__(self, content: ContentStore, layers: Sequence[Layer], persist: IndexStore | None = None) -> None:
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
