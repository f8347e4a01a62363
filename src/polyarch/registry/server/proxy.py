"""The pull-through mirror (``proxy.remoteurl``): the registry caches what its clients pull from one upstream.

- **Manifests** are fetched when a client asks for them and kept in the storage and the database as if pushed,
  under the client's repository name. An index is cached alone: a client pulling one platform fetches only that
  platform's manifest (by digest) and its blobs from the upstream.
- **Tags** are re-checked against the upstream once their check is older than ``ProxyConfig.tag_ttl`` (a HEAD:
  only the digest travels; a new digest is fetched and the tag moved). When the upstream cannot answer (down,
  5xx, refused) or no longer knows the tag, the cached tag is served. Check times are kept in memory: after a
  restart each tag is checked once again on its first pull. ``tag_ttl`` 0: a cached tag is never re-checked.
- **Blobs** a repository does not have are looked up upstream (HEAD: size, and the repository may read it), then
  streamed to the client while being written to the storage; the bytes are published in the storage (and the
  repository linked) only after their digest and size were verified. A blob the storage already holds (pulled
  through another repository) is only linked. The client's blob download resumes with ``Range`` after a
  mid-body upstream failure; when it gives up, nothing is published: a client that had no byte yet gets 503,
  one that had bytes gets a cut connection (its length falls short: its last chunk is held back until the blob
  is stored), and its retry fetches again. A client that
  goes away does not stop the fetch: the blob is still stored. A second request for a blob being fetched, and a
  ``Range`` request of a blob not cached yet, wait for the fetch and are served from the storage.
- **Tag lists** add the upstream's tags to the cached ones (the cached ones alone when it cannot answer).
- **Pushes** are refused (405 ``UNSUPPORTED``, as distribution's proxy does) unless ``ProxyConfig.allow_push``.

The upstream is a ``Upstream`` (polyarch's ``RegistryClient``: bearer-token auth, retries, resume), made by the CLI
and passed in; this module never makes one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from starlette.responses import StreamingResponse
from starlette.types import Send

from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, PolyarchError, RegistryError
from polyarch.oci.reference import Reference
from polyarch.oci.spec import INDEX_TYPES, MANIFEST_ACCEPT, MANIFEST_TYPES, Descriptor, MediaType

from .body import run_io
from .errors import ApiError
from .manifestdoc import describe
from .metastore import MetadataStore
from .storage import BlobStorage, UploadWriter

if TYPE_CHECKING:
    from polyarch.registry.client import FetchedManifest
    from polyarch.registry.sink import BlobSink

__all__ = ["DEFAULT_TAG_TTL", "ProxyConfig", "PullThrough", "Upstream", "UpstreamCut", "UpstreamResponse"]

log = logging.getLogger("polyarch.registry")
DEFAULT_TAG_TTL = 168 * 3600.0  # distribution's proxy.ttl default
WINDOW = 16  # chunks queued for one client before the fetch waits for it
BATCH = 4 << 20  # bytes gathered before one storage append
MAX_TAG_PAGES = 20  # an upstream tag list longer than this many pages is not merged in
_DOCUMENT_TYPES = MANIFEST_TYPES | INDEX_TYPES


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    remote: str  # the upstream's domain as references name it: "docker.io", "127.0.0.1:5001"
    tag_ttl: float = DEFAULT_TAG_TTL  # seconds; 0: a cached tag is never re-checked
    allow_push: bool = False
    idle_timeout: float = 60.0  # a client that takes no chunk this long is detached (the fetch goes on)


class Upstream(Protocol):
    """What the mirror needs of a registry client (``RegistryClient`` fits)."""

    def get_manifest(self, ref: Reference, *, accept: str = MANIFEST_ACCEPT) -> FetchedManifest: ...

    def head_manifest(self, ref: Reference, *, push: bool = False) -> Descriptor | None: ...

    def blob_size(self, ref: Reference, digest: Digest, *, push: bool = False) -> int | None: ...

    def fetch_blob(self, ref: Reference, desc: Descriptor, sink_factory: Callable[[], BlobSink]) -> None: ...

    def list_tags(self, ref: Reference, *, max_pages: int = 100) -> list[str]: ...


class UpstreamCut(Exception):
    """The upstream failed after the client got bytes: the answer is cut short (the server closes it)."""


class UpstreamResponse(StreamingResponse):
    """A blob answer streamed from the upstream: cut short (never completed) when the upstream fails mid-way, so
    the server closes the connection and the client sees a short body (the cause is logged once, by the fetch)."""

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except UpstreamCut:
            pass


def _unavailable(exc: BaseException) -> ApiError:
    log.warning("upstream registry: %s", exc)
    return ApiError("UNAVAILABLE", "upstream registry unavailable, retry later", status=503,
                    headers={"Retry-After": "5"})


def _upstream_error(exc: RegistryError, code: str, what: str) -> ApiError:
    if exc.status == 404:
        return ApiError(code, "unknown to the upstream registry", detail={"reference": what})
    return _unavailable(exc)


class _Tee:
    """One attempt's sink: bytes go to a storage session (batched) and, past what the client already got, to
    the client; ``commit`` verifies digest and size before the storage publishes the blob."""

    def __init__(self, fetch: _Fetch) -> None:
        self.fetch = fetch
        self.writer: UploadWriter = fetch.storage.begin(secrets.token_hex(16))
        self.hash = hashlib.new(fetch.desc.digest.algorithm)
        self.pos = 0
        self.batch: list[bytes] = []
        self.batched = 0

    def _drain(self) -> None:
        if self.batch:
            self.writer.append(self.batch)
            self.batch, self.batched = [], 0

    def write(self, data: bytes, /) -> int:
        data = bytes(data)
        self.hash.update(data)
        self.batch.append(data)
        self.batched += len(data)
        if self.batched >= BATCH:
            self._drain()
        self.fetch.forward(self.pos, data)
        self.pos += len(data)
        return len(data)

    def commit(self, expected: Digest | None = None, size: int | None = None) -> tuple[Digest, int]:
        desc = self.fetch.desc
        self._drain()
        if self.pos != desc.size or self.hash.hexdigest() != desc.digest.hex:
            raise DigestMismatch(f"blob {desc.digest} from the upstream failed verification")
        if not self.writer.complete(desc.digest, verified=True):
            raise DigestMismatch(f"blob {desc.digest} failed verification in the storage")
        return desc.digest, desc.size

    def abort(self) -> None:
        self.batch = []
        self.writer.abort()


class _Fetch:
    """One blob on its way from the upstream into the storage, with at most one client reading along."""

    def __init__(self, loop: asyncio.AbstractEventLoop, mirror: PullThrough, repo: str, desc: Descriptor,
                 *, client: bool) -> None:
        self.loop, self.mirror, self.repo, self.desc = loop, mirror, repo, desc
        self.storage = mirror.storage
        self.queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.slots = threading.Semaphore(WINDOW)
        self.attached = client
        self.sent = 0
        self.done = asyncio.Event()
        self.error: BaseException | None = None

    def _post(self, fn: Callable[..., object], *args: object) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed (shutdown): nobody listens any more
            self.attached = False

    # --- the fetching thread ---------------------------------------------------------------------------------

    def forward(self, pos: int, data: bytes) -> None:
        end = pos + len(data)
        if not self.attached or end <= self.sent:
            return
        if pos > self.sent:  # cannot happen (every attempt starts at 0); never send a gap
            self.attached = False
            return
        if not self.slots.acquire(timeout=self.mirror.config.idle_timeout):
            self.attached = False  # the client stalled: it is cut, the blob is still stored
            return
        piece = data[self.sent - pos:]
        self.sent = end
        self._post(self.queue.put_nowait, piece)

    def run(self) -> None:
        try:
            self.mirror.upstream.fetch_blob(self.mirror.ref(self.repo), self.desc, lambda: _Tee(self))
            self.mirror.meta.link(self.repo, str(self.desc.digest))
        except Exception as exc:  # handed to the waiting requests
            self.error = exc
            log.warning("upstream blob %s of %s: %s", self.desc.digest, self.repo, exc)
        self._post(self.queue.put_nowait, self.error)
        self._post(self._finish)

    # --- the event loop ----------------------------------------------------------------------------------------

    def _finish(self) -> None:
        self.done.set()
        self.mirror._inflight.pop(str(self.desc.digest), None)

    async def wait(self) -> None:
        """Until the blob is stored. :raises ApiError: it could not be."""
        await self.done.wait()
        if self.error is not None:
            raise self._api_error()

    def _api_error(self) -> ApiError:
        err = self.error
        if isinstance(err, RegistryError):
            return _upstream_error(err, "BLOB_UNKNOWN", str(self.desc.digest))
        if isinstance(err, ApiError):
            return err
        return _unavailable(err or RuntimeError("fetch failed"))

    async def first(self) -> bytes | None:
        """The first chunk for the client (None: an empty blob). :raises ApiError: failed before any byte."""
        item = await self.queue.get()
        if isinstance(item, BaseException):
            self.attached = False
            raise self._api_error()
        if item is not None:
            self.slots.release()
        return item

    async def chunks(self, head: bytes | None) -> AsyncIterator[bytes]:
        """The client's chunks, the last one held back until the blob is stored: a client that has every byte
        finds it in the storage on its next request, and one whose fetch failed never has them all."""
        try:
            pending = head
            while pending is not None:
                item = await self.queue.get()
                if isinstance(item, BaseException):
                    raise UpstreamCut(f"upstream failed after {self.sent} of {self.desc.size} bytes")
                if item is not None:
                    self.slots.release()
                yield pending
                pending = item
        finally:
            self.attached = False
            for _ in range(WINDOW):  # a fetch blocked on this client goes on
                self.slots.release()


class PullThrough:
    """The mirror's state beside the registry's: tag check times and blobs being fetched. ``close()`` stops
    taking fetches (the upstream client belongs to the caller)."""

    def __init__(self, upstream: Upstream, config: ProxyConfig, storage: BlobStorage, meta: MetadataStore, *,
                 max_manifest: int, clock: Callable[[], float] = time.monotonic, workers: int = 8) -> None:
        self.upstream, self.config, self.storage, self.meta = upstream, config, storage, meta
        self.max_manifest = max_manifest
        self.clock = clock
        self._checked: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._inflight: dict[str, _Fetch] = {}  # touched on the event loop only
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="registry-proxy")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def ref(self, repo: str, *, tag: str = "", digest: Digest | None = None) -> Reference:
        return Reference(self.config.remote, repo, tag, digest)

    # --- manifests (blocking: the handlers call these through run_io) ------------------------------------------

    def _fresh(self, repo: str, tag: str) -> bool:
        with self._lock:
            checked = self._checked.get((repo, tag))
        if checked is None:
            return False
        return self.config.tag_ttl == 0 or self.clock() - checked < self.config.tag_ttl

    def _mark(self, repo: str, tag: str) -> None:
        with self._lock:
            if len(self._checked) >= 100_000:
                self._checked.clear()
            self._checked[(repo, tag)] = self.clock()

    def manifest(self, repo: str, ref: Digest | str) -> None:
        """Make the local copy of ``repo``'s manifest ``ref`` current (see the module's rules); the handler then
        serves it as any other. :raises ApiError: the upstream does not have it, or cannot be reached and
        nothing is cached."""
        if isinstance(ref, Digest):
            if self.meta.manifest(repo, str(ref)) is not None and self.storage.stat(ref) is not None:
                return
            self._cache(repo, ref, ())
            return
        local = self.meta.tag(repo, ref)
        if local is not None and self._fresh(repo, ref):
            return
        fetched: FetchedManifest | None = None
        try:
            desc = self.upstream.head_manifest(self.ref(repo, tag=ref))
            if desc is None:  # 404, or an answer without a digest: the GET tells
                fetched = self.upstream.get_manifest(self.ref(repo, tag=ref))
                digest = fetched.digest
            else:
                digest = desc.digest
        except RegistryError as exc:
            if local is not None:
                log.warning("upstream registry: %s; serving the cached tag %s:%s", exc, repo, ref)
                return
            raise _upstream_error(exc, "MANIFEST_UNKNOWN", ref) from None
        if local != str(digest) or self.storage.stat(digest) is None:
            try:
                self._cache(repo, digest, (ref,), fetched)
            except ApiError:
                if local is None:
                    raise
                log.warning("upstream manifest %s of %s could not be cached; serving the cached tag %s", digest,
                            repo, ref)
                return
        self._mark(repo, ref)

    def _cache(self, repo: str, digest: Digest, tags: tuple[str, ...], fetched: FetchedManifest | None = None) -> None:
        raw: bytes | None = None
        media_type: str | None = None
        if fetched is None and self.storage.stat(digest) is not None:
            try:
                raw = self.storage.read(digest, limit=self.max_manifest)
            except PolyarchError:
                raw = None
            if raw is not None and Digest.of(raw, digest.algorithm) != digest:
                raw = None
        if raw is None:
            try:
                fetched = fetched or self.upstream.get_manifest(self.ref(repo, digest=digest))
            except RegistryError as exc:
                raise _upstream_error(exc, "MANIFEST_UNKNOWN", str(digest)) from None
            except PolyarchError as exc:  # digest mismatch, no media type
                raise _unavailable(exc) from None
            raw, media_type = fetched.raw, fetched.media_type
        try:
            described = describe(repo, raw, digest, media_type if media_type in _DOCUMENT_TYPES else None)
        except PolyarchError as exc:
            raise _unavailable(exc) from None
        if fetched is not None:
            self.storage.write(raw, digest)
        self.meta.put_manifest(described.row, described.refs, tags, lambda: None)

    def tags(self, repo: str) -> list[str] | None:
        """The upstream's tags of ``repo`` (as distribution's proxy lists them), or None when it cannot say."""
        try:
            return self.upstream.list_tags(self.ref(repo), max_pages=MAX_TAG_PAGES)
        except (RegistryError, PolyarchError) as exc:
            if not (isinstance(exc, RegistryError) and exc.status == 404):
                log.warning("upstream tags of %s: %s", repo, exc)
            return None

    # --- blobs -------------------------------------------------------------------------------------------------

    def blob_size(self, repo: str, digest: Digest) -> int:
        """The size of a blob ``repo`` does not have yet, as the upstream says (linked at once when the storage
        already holds it). :raises ApiError: unknown upstream (404) or the upstream cannot be reached (503)."""
        try:
            size = self.upstream.blob_size(self.ref(repo), digest)
        except RegistryError as exc:
            raise _upstream_error(exc, "BLOB_UNKNOWN", str(digest)) from None
        if size is None:
            raise ApiError("BLOB_UNKNOWN", "blob unknown to registry", detail={"digest": str(digest)})
        if size < 0:
            raise _unavailable(RegistryError(f"upstream gave no size for blob {digest}"))
        if self.storage.stat(digest) == size:
            self.meta.link(repo, str(digest))
        return size

    async def stream(self, repo: str, digest: Digest, size: int) -> AsyncIterator[bytes] | None:
        """Start fetching and hand back the client's chunks, once the first one came (None: another request is
        fetching it, and it is now stored: serve it from the storage). :raises ApiError: failed before any byte."""
        running = self._inflight.get(str(digest))
        if running is not None:
            await self._join(running, repo)
            return None
        fetch = self._start(repo, Descriptor(MediaType.OCI_LAYER, digest, size), client=True)
        head = await fetch.first()
        return fetch.chunks(head)

    async def fill(self, repo: str, digest: Digest, size: int) -> None:
        """Fetch the whole blob into the storage (or wait for the fetch under way). :raises ApiError:"""
        running = self._inflight.get(str(digest))
        if running is None:
            running = self._start(repo, Descriptor(MediaType.OCI_LAYER, digest, size), client=False)
        await self._join(running, repo)

    async def _join(self, running: _Fetch, repo: str) -> None:
        """Wait for a fetch; one made for another repository links this one too (the upstream let it read it)."""
        await running.wait()
        if running.repo != repo:
            await run_io(self.meta.link, repo, str(running.desc.digest))

    def _start(self, repo: str, desc: Descriptor, *, client: bool) -> _Fetch:
        fetch = _Fetch(asyncio.get_running_loop(), self, repo, desc, client=client)
        self._inflight[str(desc.digest)] = fetch
        try:
            self._pool.submit(fetch.run)
        except RuntimeError:  # shut down
            del self._inflight[str(desc.digest)]
            raise ApiError("UNAVAILABLE", "registry is shutting down", status=503) from None
        return fetch
