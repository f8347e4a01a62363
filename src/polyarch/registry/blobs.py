"""Blob download (resumable, verified) and upload (skip, mount, monolithic or chunked) for ``RegistryClient``,
which this module sees only through the ``RegistrySession`` protocol (so it never imports the client).

Download: GET streams into a fresh sink (the content store's ``BlobWriter``); after a mid-body failure the next
attempt asks for ``Range: bytes=N-`` and keeps the N bytes already written; a server that ignores the range (200)
restarts the sink. The sink verifies digest and size on commit, so nothing partial is ever published.

A layer the registry answers 404 for but whose descriptor has ``urls`` (non-distributable) is fetched from them
only when the user allows it, under the rules of :mod:`.foreign`.

Upload: HEAD skips a blob the repository has; a blob seen in another repository of the same registry is mounted
(``POST ?mount=&from=``); otherwise a session is opened (POST) and the blob sent either in one ``PUT ?digest=``
(blobs up to ``chunk_threshold``) or as ``PATCH`` chunks with ``Content-Range`` and a final empty PUT. A failed
chunk resumes from the offset the registry reports (GET on the session); a lost session starts over.

Both directions report to the client's ``observer`` (see :mod:`.observer`): each retry with its reason, and per
blob its start, the bytes moved so far and its end with the outcome.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import httpx

from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, RegistryError
from polyarch.oci.reference import Reference
from polyarch.oci.spec import Descriptor

from .auth import scope_for
from .endpoints import ClientOptions, Endpoint
from .foreign import ALLOW_ENV, fetch_foreign
from .httperrors import transport_error
from .observer import TransferObserver, describe_failure
from .sink import BlobSink

__all__ = ["READ_CHUNK", "FileSlice", "RegistrySession", "fetch_blob", "push_blob"]

OCTET = "application/octet-stream"
READ_CHUNK = 1 << 20


class RegistrySession(Protocol):
    """What blob transfer needs from a registry client (``RegistryClient`` is one): endpoints, the one request
    path with auth and retries, the error of a failed answer, and the record of blobs seen per repository."""

    @property
    def options(self) -> ClientOptions: ...
    @property
    def ssl_context(self) -> ssl.SSLContext: ...
    @property
    def observer(self) -> TransferObserver: ...
    def endpoint(self, domain: str, *, push: bool = False) -> Endpoint: ...
    def call(self, reg: Endpoint, method: str, url: str | httpx.URL, *, scopes: Sequence[str],
             headers: dict[str, str] | None = None, body: Callable[[], Any] | None = None,
             stream: bool = False, retry: bool = True) -> httpx.Response: ...
    def fail(self, reg: Endpoint, resp: httpx.Response, what: str, scopes: Sequence[str]) -> RegistryError: ...
    def backoff(self, attempt: int, retry_after: str | None = None, *, registry: str = "", what: str = "",
                reason: str = "") -> None: ...
    def note_seen(self, ref: Reference, digest: Digest) -> None: ...
    def seen_in(self, domain: str, digest: Digest) -> list[str]: ...
    def blob_size(self, ref: Reference, digest: Digest, *, push: bool = False) -> int | None: ...


def _reason(exc: RegistryError) -> str:
    """``503 Service Unavailable`` for a status failure, else the failure's first line."""
    if exc.status:
        return f"{exc.status} {httpx.codes.get_reason_phrase(exc.status)}".strip()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _sent(client: RegistrySession, desc: Descriptor) -> Callable[[int], None]:
    observer = client.observer
    return lambda done: observer.blob_progress(desc, done)


def _retryable(exc: RegistryError) -> bool:
    return isinstance(exc.__cause__, httpx.TransportError) or (exc.status or 0) in (408, 429, 500, 502, 503, 504)


def fetch_blob(client: RegistrySession, ref: Reference, desc: Descriptor,
               sink_factory: Callable[[], BlobSink]) -> None:
    reg = client.endpoint(ref.domain)
    scopes = [scope_for(ref.path, "pull")]
    url = f"{reg.base}/v2/{ref.path}/blobs/{desc.digest}"
    what = f"GET /v2/{ref.path}/blobs/{desc.digest}"
    observer = client.observer
    started = time.monotonic()
    observer.blob_started(desc, "pull")
    sink = sink_factory()
    offset = 0
    failures = 0
    try:
        while True:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            resp = client.call(reg, "GET", url, scopes=scopes, headers=headers, stream=True)
            try:
                if resp.status_code == 404 and desc.urls:
                    resp.close()
                    sink.abort()
                    sink = _fetch_foreign(client, ref, desc, sink_factory)
                    offset = desc.size
                    break
                if resp.status_code not in (200, 206):
                    raise client.fail(reg, resp, f"blob {desc.digest} of {ref.name}", scopes)
                start = _range_start(resp) if resp.status_code == 206 else 0
                if start != offset:
                    sink.abort()
                    sink = sink_factory()
                    offset = 0
                    if start != 0:
                        resp.close()
                        continue
                for chunk in resp.iter_raw():
                    if offset + len(chunk) > desc.size:
                        raise DigestMismatch(f"blob {desc.digest} from {ref.name}: more than the expected "
                                             f"{desc.size} bytes")
                    sink.write(chunk)
                    offset += len(chunk)
                    observer.blob_progress(desc, offset)
            except httpx.TransportError as exc:
                failures += 1
                if failures > client.options.retries:
                    raise transport_error(reg.name, exc, attempts=failures) from exc
                client.backoff(failures, registry=reg.name, what=what,
                               reason=f"{describe_failure(exc)} after {offset} of {desc.size} bytes")
                continue
            finally:
                resp.close()
            if offset < desc.size:
                failures += 1
                if failures > client.options.retries:
                    raise RegistryError(f"blob {desc.digest} from {reg.name}: stream ended after {offset} of "
                                        f"{desc.size} bytes, {failures} times")
                client.backoff(failures, registry=reg.name, what=what,
                               reason=f"stream ended after {offset} of {desc.size} bytes")
                continue
            break
        sink.commit(desc.digest, desc.size)
        client.note_seen(ref, desc.digest)
        observer.blob_done(desc, "pull", "fetched", time.monotonic() - started)
    except BaseException:
        sink.abort()
        raise


def _range_start(resp: httpx.Response) -> int:
    value = resp.headers.get("content-range", "")
    try:
        return int(value.split()[-1].split("-")[0])
    except (ValueError, IndexError):
        return -1


def _fetch_foreign(client: RegistrySession, ref: Reference, desc: Descriptor,
                   sink_factory: Callable[[], BlobSink]) -> BlobSink:
    """A non-distributable layer the registry does not have: from its ``urls`` when the user allows it."""
    if not client.options.allow_nondistributable:
        raise RegistryError(f"layer {desc.digest} of {ref.name} is non-distributable and not in the registry; "
                            f"its urls ({desc.urls[0][:100]}…) are not fetched by default",
                            hint="pass --allow-nondistributable-artifacts (or set "
                                 f"{ALLOW_ENV}=1) to fetch it from there")
    return fetch_foreign(desc, sink_factory, verify=client.ssl_context, timeout=client.options.timeout)


class FileSlice:
    """A re-iterable request body: ``length`` bytes of a file from ``offset``, read in large chunks.

    ``tell``/``seek`` let httpx compute Content-Length without reading it.
    """

    def __init__(self, path: Path, offset: int, length: int, sent: Callable[[int], None] | None = None) -> None:
        """``sent(n)`` is told the position in the file (``offset`` + bytes read) after each read."""
        self.path, self.offset, self.length, self.sent = path, offset, length, sent

    def tell(self) -> int:
        return 0

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.length if whence == os.SEEK_END else 0

    def __iter__(self) -> Iterator[bytes]:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            pos, end = self.offset, self.offset + self.length
            while pos < end:
                data = os.pread(fd, min(4 * READ_CHUNK, end - pos), pos)
                if not data:
                    raise RegistryError(f"{self.path} shrank while uploading")
                pos += len(data)
                if self.sent is not None:
                    self.sent(pos)
                yield data
        finally:
            os.close(fd)


# --- upload ----------------------------------------------------------------------------------------------------

def push_blob(client: RegistrySession, ref: Reference, desc: Descriptor,
              opener: Callable[[], AbstractContextManager[Path]], *, mount_from: Sequence[str] = ()) -> str:
    started = time.monotonic()
    observer = client.observer
    outcome = _push_blob(client, ref, desc, opener, mount_from)
    observer.blob_done(desc, "push", outcome, time.monotonic() - started)
    return outcome


def _push_blob(client: RegistrySession, ref: Reference, desc: Descriptor,
               opener: Callable[[], AbstractContextManager[Path]], mount_from: Sequence[str]) -> str:
    reg = client.endpoint(ref.domain, push=True)
    scopes = [scope_for(ref.path, "pull,push")]
    if client.blob_size(ref, desc.digest, push=True) == desc.size:
        return "exists"
    uploads = f"{reg.base}/v2/{ref.path}/blobs/uploads/"
    location: httpx.URL | None = None
    candidates = [r for r in dict.fromkeys([*mount_from, *client.seen_in(ref.domain, desc.digest)]) if r != ref.path]
    for repo in candidates[:3]:
        url = httpx.URL(uploads, params={"mount": str(desc.digest), "from": repo})
        resp = client.call(reg, "POST", url, scopes=[*scopes, scope_for(repo, "pull")], body=lambda: b"")
        resp.close()
        if resp.status_code == 201:
            client.note_seen(ref, desc.digest)
            return "mounted"
        if resp.status_code == 202 and resp.headers.get("location"):
            location = resp.url.join(resp.headers["location"])
            break
    client.observer.blob_started(desc, "push")
    with opener() as path:
        _upload(client, reg, scopes, uploads, location, desc, path)
    client.note_seen(ref, desc.digest)
    return "uploaded"


def _upload(client: RegistrySession, reg: Endpoint, scopes: list[str], uploads: str, location: httpx.URL | None,
            desc: Descriptor, path: Path) -> None:
    failures = 0
    while True:
        try:
            if location is None:
                location = _start(client, reg, uploads, scopes)
            if desc.size <= client.options.chunk_threshold:
                _monolithic(client, reg, scopes, location, desc, path)
            else:
                _chunked(client, reg, scopes, location, desc, path)
            return
        except RegistryError as exc:
            failures += 1
            if not _retryable(exc) or failures > client.options.retries:
                raise
            client.backoff(failures, registry=reg.name, what=f"upload of blob {desc.digest}",
                           reason=_reason(exc))
            location = None


def _start(client: RegistrySession, reg: Endpoint, uploads: str, scopes: list[str]) -> httpx.URL:
    resp = client.call(reg, "POST", uploads, scopes=scopes, body=lambda: b"")
    resp.close()
    if resp.status_code != 202 or not resp.headers.get("location"):
        raise client.fail(reg, resp, "start blob upload", scopes)
    return resp.url.join(resp.headers["location"])


def _finish_url(location: httpx.URL, desc: Descriptor) -> httpx.URL:
    return location.copy_merge_params({"digest": str(desc.digest)})


def _check_created(client: RegistrySession, reg: Endpoint, resp: httpx.Response, desc: Descriptor,
                   scopes: list[str]) -> None:
    if resp.status_code not in (201, 204):
        raise client.fail(reg, resp, f"upload of blob {desc.digest}", scopes)
    header = resp.headers.get("docker-content-digest")
    if header and header != str(desc.digest):
        raise DigestMismatch(f"registry {reg.name} stored blob {desc.digest} as {header}")


def _monolithic(client: RegistrySession, reg: Endpoint, scopes: list[str], location: httpx.URL,
                desc: Descriptor, path: Path) -> None:
    resp = client.call(reg, "PUT", _finish_url(location, desc), scopes=scopes, headers={"Content-Type": OCTET},
                       body=lambda: FileSlice(path, 0, desc.size, _sent(client, desc)), retry=False)
    resp.close()
    _check_created(client, reg, resp, desc, scopes)


def _chunked(client: RegistrySession, reg: Endpoint, scopes: list[str], location: httpx.URL,
             desc: Descriptor, path: Path) -> None:
    offset = 0
    failures = 0
    chunk = max(1 << 20, client.options.chunk_size)
    while offset < desc.size:
        n = min(chunk, desc.size - offset)
        start = offset
        try:
            resp = client.call(reg, "PATCH", location, scopes=scopes, retry=False,
                               headers={"Content-Type": OCTET, "Content-Range": f"{start}-{start + n - 1}"},
                               body=lambda s=start, k=n: FileSlice(path, s, k, _sent(client, desc)))  # type: ignore[misc]
            resp.close()
            if resp.status_code != 202:
                raise client.fail(reg, resp, f"upload of blob {desc.digest}", scopes)
            location = resp.url.join(resp.headers.get("location") or str(location))
            offset = start + n
        except RegistryError as exc:
            failures += 1
            if not _retryable(exc) or failures > client.options.retries:
                raise
            client.backoff(failures, registry=reg.name, what=f"upload of blob {desc.digest} at byte {start}",
                           reason=_reason(exc))
            resumed = _upload_offset(client, reg, scopes, location)
            if resumed is None:
                raise
            location, offset = resumed
    resp = client.call(reg, "PUT", _finish_url(location, desc), scopes=scopes, body=lambda: b"",
                       headers={"Content-Type": OCTET})
    resp.close()
    _check_created(client, reg, resp, desc, scopes)


def _upload_offset(client: RegistrySession, reg: Endpoint, scopes: list[str],
                   location: httpx.URL) -> tuple[httpx.URL, int] | None:
    """Where an upload session stands (``Range: 0-N`` → N+1), or None when it is gone."""
    try:
        resp = client.call(reg, "GET", location, scopes=scopes)
    except RegistryError:
        return None
    resp.close()
    if resp.status_code not in (200, 204):
        return None
    rng = resp.headers.get("range", "")
    if rng in ("", "0-0"):  # distribution reports 0-0 for both 0 and 1 byte: start over
        return None
    try:
        end = int(rng.rsplit("-", 1)[1]) + 1 if rng else 0
    except (ValueError, IndexError):
        return None
    return resp.url.join(resp.headers.get("location") or str(location)), end
