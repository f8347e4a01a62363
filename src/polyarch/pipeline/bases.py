"""FROM images for a build (and ``--build-context NAME=docker-image://REF``): the order of
``polyarch.sources.STORE_THEN_REGISTRY``: the local store's image (``sources.store.StoreSource.image``), else
pulled from its registry into the store (always with ``--pull``), since the solver reads layers from the store.

``BaseImages`` answers the frontend (``config``: read from the registry when the image must be pulled) and the
solver (``image``). A config read from the registry starts that image's pull on a thread of its own at once, so
the pull overlaps the rest of planning and the solver's start (context hashing, steps that need no base); the
solver's ``image`` waits for it. The pull takes the manifests and config planning read (``transfer.Documents``):
each is fetched once per build. ``local_resolver`` is the frontend's resolver over the local store alone
(``--call`` reports).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from polyarch.content.images import Image, ImageStore
from polyarch.digest import Digest
from polyarch.errors import BuildError, PolyarchError
from polyarch.oci.spec import ImageConfig
from polyarch.platform import Platform
from polyarch.progress import Progress
from polyarch.sources.store import StoreSource

if TYPE_CHECKING:
    from polyarch.registry.client import RegistryClient
    from polyarch.solver.cache import BuildCache
    from polyarch.sources.transfer import Documents

__all__ = ["BaseImages", "local_resolver"]


class BaseImages:
    """FROM images: the local store's, pulled from their registry when missing (or always with ``--pull``),
    once per (ref, platform) and build. The frontend asks for configs (``config``), the solver for images.
    ``client_factory`` (the caller's) makes one registry client for every pull of the build, on first use."""

    def __init__(self, images: ImageStore, *, client_factory: Callable[[], RegistryClient], pull: bool = False,
                 progress: Progress | None = None, index_store: Callable[[], BuildCache] | None = None) -> None:
        self.images = images
        self.local = StoreSource(images)
        self.pull = pull
        self.progress = progress
        self.client_factory = client_factory
        self._lock = threading.Lock()
        self._pulled: set[tuple[str, str]] = set()
        self._failed: dict[tuple[str, str], PolyarchError] = {}
        self._client: RegistryClient | None = None
        self._index_store = index_store  # where pulls record layer path indexes (opened on the first pull)
        self._indexes: BuildCache | None = None
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}  # pulls of different platforms run at once
        self._resolved: dict[str, Digest] = {}  # ref -> the digest planning read its configs from
        self._documents: Documents | None = None  # manifests and configs read while planning, for the pulls
        self._prefetch: ThreadPoolExecutor | None = None  # pulls started by ``config``
        self._started: list[Future[object]] = []
        self._pulling: dict[tuple[str, str], Digest] = {}  # pulls started by ``config``, until they end

    def _shared(self) -> tuple[RegistryClient, BuildCache | None]:
        with self._lock:
            if self._client is None:
                self._client = self.client_factory()
            if self._indexes is None and self._index_store is not None:
                self._indexes = self._index_store()
            return self._client, self._indexes

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _pull(self, ref: str, platform: Platform) -> None:
        from polyarch.oci import reference
        from polyarch.sources.transfer import pull_image

        parsed = reference.parse(ref).defaulted()
        if ref in self._resolved:  # what planning read: the layers of that same image
            parsed = parsed.with_digest(self._resolved[ref])
        client, indexes = self._shared()
        pull_image(client, parsed, self.images, name=ref, platforms=[platform], indexes=indexes,
                   documents=self._docs())

    def _docs(self) -> Documents:
        from polyarch.sources.transfer import Documents

        with self._lock:
            if self._documents is None:
                self._documents = Documents()
            return self._documents

    def _start_pull(self, ref: str, platform: Platform) -> None:
        """Pull ``ref`` for ``platform`` in the background; ``image`` (the solver) waits for it, errors included."""
        def pull() -> None:
            try:
                self.image(ref, platform)
            except PolyarchError:
                pass  # kept in _failed: the solver's image() raises it where the step needs the image
            finally:
                with self._lock:
                    self._pulling.pop((ref, str(platform)), None)

        with self._lock:
            if self._prefetch is None:
                self._prefetch = ThreadPoolExecutor(max_workers=4, thread_name_prefix="base-pull")
            self._started.append(self._prefetch.submit(pull))

    def pulling(self, ref: str, platform: Platform) -> Digest | None:
        """The manifest digest of ``ref`` for ``platform`` while the pull ``config`` started for it runs (the
        solver writes layers ahead meanwhile: ``solver/ahead.py``); None when no such pull runs."""
        with self._lock:
            return self._pulling.get((ref, str(platform)))

    def close(self) -> None:
        """Wait for pulls started by ``config`` (none is left half-done) and release the client and cache."""
        with self._lock:
            pool, self._prefetch = self._prefetch, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._indexes is not None:
                self._indexes.close()
                self._indexes = None

    def image(self, ref: str, platform: Platform) -> Image:
        """:raises BuildError: neither the store nor the registry has ``ref`` for ``platform``."""
        key = (ref, str(platform))
        with self._key_lock(key):
            if key in self._failed:
                raise self._failed[key]
            if key not in self._pulled:
                local = "--pull was given"
                if not self.pull:
                    try:
                        return self.local.image(ref, platform)
                    except BuildError as exc:
                        cause = exc.__cause__
                        local = cause.message if isinstance(cause, PolyarchError) else exc.message
                try:
                    if self.progress is not None:
                        with self.progress.vertex(f"[internal] pull {ref} ({platform})"):
                            self._pull(ref, platform)
                    else:
                        self._pull(ref, platform)
                except PolyarchError as exc:
                    err = BuildError(f"base image {ref!r} for {platform}: {local}; pulling it failed: "
                                     f"{exc.message}",
                                     hint=exc.hint or f"import or pull it first ('polyarch pull --platform {platform} "
                                                      f"{ref}')")
                    self._failed[key] = err
                    raise err from exc
                self._pulled.add(key)
        return self.local.image(ref, platform)

    def config(self, ref: str, platform: Platform) -> ImageConfig | None:
        """The config planning needs. An image that must be pulled is not pulled here: its config is read from
        the registry, and the solver's ``image`` pulls the layers, every platform at once."""
        key = (ref, str(platform))
        try:
            if key in self._pulled or key in self._failed:
                return self.image(ref, platform).config
            if not self.pull:
                try:
                    return self.local.image(ref, platform).config
                except BuildError:
                    pass
            from polyarch.oci import reference
            from polyarch.sources.transfer import remote_config

            parsed = reference.parse(ref).defaulted()
            with self._lock:
                pinned = self._resolved.get(ref)
            if pinned is not None:  # a second platform: the index planning read for the first
                parsed = parsed.with_digest(pinned)
            try:
                found = remote_config(self._shared()[0], parsed, platform, documents=self._docs())
                with self._lock:
                    self._resolved.setdefault(ref, found.digest)
                    self._pulling[key] = found.manifest
                self._start_pull(ref, platform)
                return found.config
            except PolyarchError:
                return self.image(ref, platform).config  # the error as a pull reports it
        except PolyarchError:
            return None


def local_resolver(images: ImageStore) -> Callable[[str, Platform], ImageConfig | None]:
    """The frontend's ``resolve_image`` over the local store only (None when the store lacks the image)."""
    local = StoreSource(images)

    def resolve(ref: str, platform: Platform) -> ImageConfig | None:
        try:
            return local.image(ref, platform).config
        except PolyarchError:
            return None

    return resolve
