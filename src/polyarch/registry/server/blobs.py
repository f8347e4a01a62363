"""Blob reads (GET/HEAD with ``Range``) and deletes.

Ranges: one ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` gives 206 with ``Content-Range``; a range past the end
or inverted (``bytes=500-0``) gives 416 with ``Content-Range: bytes */<size>``; a multi-range or any other
unit is ignored and the whole blob is sent with 200 (RFC 9110 allows ignoring Range).

A GET of a storage that has presigned URLs (S3) answers 307 to one unless ``RegistryConfig.redirect`` is off or the
blob is smaller than ``RegistryConfig.redirect_min`` (the client's ``Range`` then applies at the storage); HEAD, small
blobs and the filesystem storage always answer here, streamed from ``BlobStorage.open``, with
``Docker-Content-Digest`` (a presigned storage answer cannot carry it: see ``state.REDIRECT_MIN``).

On a pull-through mirror (``reg.proxy``) a blob the repository does not have is asked of the upstream: HEAD
answers its size, GET streams it while the mirror stores it, a GET with ``Range`` waits until it is stored.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from starlette.responses import RedirectResponse, Response, StreamingResponse

from polyarch.digest import Digest
from polyarch.errors import StoreError

from .body import _IO, run_io
from .errors import ApiError
from .proxy import UpstreamResponse
from .state import Registry
from .storage import BlobReader

__all__ = ["delete_blob", "get_blob", "parse_range"]

_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")
READ_CHUNK = 4 << 20


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (start, end) to send, or None for the whole blob. :raises ApiError: 416."""
    if not value:
        return None
    value = value.strip()
    if "," in value or not value.startswith("bytes="):
        return None
    m = _RANGE.match(value)
    unsatisfiable = ApiError("RANGE_INVALID", "requested range not satisfiable", status=416,
                             headers={"Content-Range": f"bytes */{size}"})
    if not m or (not m.group(1) and not m.group(2)):
        raise unsatisfiable
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise unsatisfiable
        return max(size - n, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if end < start or start >= size:
        raise unsatisfiable
    return start, min(end, size - 1)


async def _stream(f: BlobReader, length: int) -> AsyncIterator[bytes]:
    """Read ahead: the next chunk is read on a worker thread while the current one is being sent."""
    loop = asyncio.get_running_loop()
    ahead: asyncio.Future[bytes] | None = None
    try:
        remaining = length
        ahead = loop.run_in_executor(_IO, f.read, min(READ_CHUNK, remaining)) if remaining > 0 else None
        while ahead is not None:
            chunk: bytes = await ahead  # type: ignore[assignment]
            remaining -= len(chunk)
            ahead = loop.run_in_executor(_IO, f.read, min(READ_CHUNK, remaining)) if chunk and remaining > 0 \
                else None
            if not chunk:
                break  # the file shrank under us (deleted and replaced): stop; the length is then short
            yield chunk
    finally:
        if ahead is not None:
            try:
                await ahead
            except (OSError, StoreError):
                pass
        await run_io(f.close)


async def get_blob(reg: Registry, repo: str, digest: Digest, range_header: str | None, *,
                   head: bool) -> Response:
    size = reg.blob_size(repo, digest)
    upstream: AsyncIterator[bytes] | None = None
    if size is None and reg.proxy is not None:  # a pull-through mirror: the upstream's blob
        size = await run_io(reg.proxy.blob_size, repo, digest)
        if not head and reg.blob_size(repo, digest) is None:
            if range_header:
                await reg.proxy.fill(repo, digest, size)
            else:
                upstream = await reg.proxy.stream(repo, digest, size)
    if size is None:
        raise ApiError("BLOB_UNKNOWN", "blob unknown to registry", detail={"digest": str(digest)})
    headers = {"Docker-Content-Digest": str(digest), "Accept-Ranges": "bytes", "Content-Length": str(size),
               "ETag": f'"{digest}"', "Cache-Control": "max-age=31536000"}
    if upstream is not None:  # streamed while it is written to the storage
        return UpstreamResponse(upstream, headers=headers, media_type="application/octet-stream")
    rng = parse_range(range_header, size)
    status, start, length = 200, 0, size
    if rng is not None:
        start, end = rng
        length = end - start + 1
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(length)
    if head:
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    if reg.config.redirect and size >= reg.config.redirect_min:
        url = await run_io(reg.blobs.presign, digest, reg.config.redirect_ttl)
        if url is not None:
            return RedirectResponse(str(url), status_code=307, headers={"Docker-Content-Digest": str(digest)})
    # opened before answering, so a storage failure is a clean 5xx, not a torn 200
    f: BlobReader = await run_io(reg.blobs.open, digest, start, length)  # type: ignore[assignment]
    return StreamingResponse(_stream(f, length), status_code=status, headers=headers,
                             media_type="application/octet-stream")


async def delete_blob(reg: Registry, repo: str, digest: Digest) -> Response:
    """Unlink ``digest`` from ``repo``: 202, and the repository serves it no more (as distribution does, also
    while a manifest of the repository still references it: a re-push or mount links it again). Only the link
    goes: the bytes stay while any manifest of any repository or a local store name references them (GC's
    rule), and other repositories keep theirs. 405 when deletes are off or the blob comes only from a local
    store name (that is ``polyarch rm``'s), 404 when the repository has no link to it."""
    if not reg.config.delete_enabled:
        raise ApiError("UNSUPPORTED", "deletes are disabled on this registry", status=405)
    text = str(digest)
    if not reg.meta.has_link(repo, text):
        if text in reg.local.reachable(repo):
            raise ApiError("UNSUPPORTED", "blob belongs to a local store image; remove it with 'polyarch rm'",
                           status=405)
        raise ApiError("BLOB_UNKNOWN", "blob unknown to registry", detail={"digest": text})
    await run_io(reg.meta.unlink, repo, text)
    return Response(status_code=202, headers={"Docker-Content-Digest": text, "Content-Length": "0"})
