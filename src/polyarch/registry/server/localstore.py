"""The local store's names (``index.json``) seen as registry repositories and tags, read at request time.

``index.json`` is re-read only when its stat (inode, size, mtime) changes, so ``polyarch import … -t
base/busybox:1`` is served by a running registry at once, without copying anything. Which blobs a repository
may serve is what is reachable from its names (manifests, children, configs, layers), computed lazily and
cached per ``index.json`` version. The mapping of names is documented in :mod:`.names`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from polyarch.content.images import REF_NAME, ImageStore
from polyarch.errors import PolyarchError
from polyarch.oci.spec import Descriptor, is_index, is_manifest

from .names import local_repo_tag

__all__ = ["LocalNames", "LocalView"]


@dataclass
class LocalView:
    """One version of ``index.json``: (repo, tag) → descriptor, and per-repo reachable digests (lazy)."""

    tags: dict[tuple[str, str], Descriptor]
    repos: dict[str, list[str]]
    reachable_cache: dict[str, tuple[frozenset[str], dict[str, Descriptor]]] = field(default_factory=dict)


class LocalNames:
    def __init__(self, images: ImageStore, *, enabled: bool = True) -> None:
        """``enabled=False``: no names at all (the registry keeps its blobs outside this store)."""
        self._images = images
        self._enabled = enabled
        self._path = images.store.root / "index.json"
        self._key: tuple[int, int, int] | None = None
        self._view = LocalView({}, {})
        self._lock = threading.Lock()

    def view(self) -> LocalView:
        if not self._enabled:
            return self._view
        try:
            st = os.stat(self._path)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = (0, 0, 0)
        if key == self._key:
            return self._view
        with self._lock:
            if key == self._key:
                return self._view
            tags: dict[tuple[str, str], Descriptor] = {}
            try:
                entries = self._images.entries() if key != (0, 0, 0) else []
            except PolyarchError:
                entries = []
            for desc in entries:  # later entries win: set_name appends the newest
                name = desc.annotations.get(REF_NAME)
                mapped = local_repo_tag(name) if name else None
                if mapped is not None:
                    tags[mapped] = desc
            repos: dict[str, list[str]] = {}
            for repo, tag in sorted(tags):
                repos.setdefault(repo, []).append(tag)
            self._view = LocalView(tags, repos)
            self._key = key
            return self._view

    def lookup(self, repo: str, tag: str) -> Descriptor | None:
        return self.view().tags.get((repo, tag))

    def _reach(self, repo: str) -> tuple[frozenset[str], dict[str, Descriptor]]:
        view = self.view()
        cached = view.reachable_cache.get(repo)
        if cached is not None:
            return cached
        found: set[str] = set()
        manifests: dict[str, Descriptor] = {}
        for tag in view.repos.get(repo, []):
            try:
                for desc in self._images.walk(view.tags[(repo, tag)]):
                    found.add(str(desc.digest))
                    if is_manifest(desc.media_type) or is_index(desc.media_type):
                        manifests[str(desc.digest)] = desc
            except PolyarchError:
                continue
        result = (frozenset(found), manifests)
        view.reachable_cache[repo] = result
        return result

    def reachable(self, repo: str) -> frozenset[str]:
        """Digests reachable from the local names served as ``repo``."""
        if repo not in self.view().repos:
            return frozenset()
        return self._reach(repo)[0]

    def manifest(self, repo: str, digest: str) -> Descriptor | None:
        """The descriptor of a manifest or index reachable from ``repo``'s local names."""
        if repo not in self.view().repos:
            return None
        return self._reach(repo)[1].get(digest)

    def all_reachable(self) -> set[str]:
        """Digests reachable from every entry of ``index.json`` (named or not): GC roots."""
        found: set[str] = set()
        for desc in self._images.entries():
            for d in self._images.walk(desc):
                found.add(str(d.digest))
        return found
