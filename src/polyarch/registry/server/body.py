"""Request bodies read in bounded memory: a capped read for manifests, and a pump that streams blob bodies
to a blocking sink on a worker thread (hash + write of one buffer overlaps receiving the next).

A client that sends nothing for ``idle_timeout`` seconds gets 408; a disconnect aborts the request.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.types import Receive

from .errors import ApiError

__all__ = ["BUFFER", "ClientGone", "pump", "read_capped", "run_io", "write_and_hash", "write_chunks"]

BUFFER = 4 << 20
_IO = ThreadPoolExecutor(max_workers=16, thread_name_prefix="registry-io")


class ClientGone(Exception):
    """The client disconnected before the body was complete."""


async def _next(receive: Receive, idle_timeout: float) -> tuple[bytes, bool]:
    try:
        message = await asyncio.wait_for(receive(), idle_timeout)
    except TimeoutError:
        raise ApiError("BLOB_UPLOAD_INVALID", f"no request data for {idle_timeout:g} seconds", status=408,
                       headers={"Connection": "close"}) from None
    if message["type"] == "http.disconnect":
        raise ClientGone()
    return message.get("body", b""), bool(message.get("more_body", False))


async def read_capped(receive: Receive, limit: int, idle_timeout: float) -> bytes:
    """The whole body, at most ``limit`` bytes; :raises ApiError: 413 as soon as the body passes the limit."""
    buf = bytearray()
    more = True
    while more:
        chunk, more = await _next(receive, idle_timeout)
        if len(buf) + len(chunk) > limit:
            raise ApiError("SIZE_INVALID", f"request body larger than {limit} bytes", status=413,
                           headers={"Connection": "close"})
        buf += chunk
    return bytes(buf)


async def pump(receive: Receive, sink: Callable[[list[bytes]], object], idle_timeout: float,
               limit: int | None = None) -> int:
    """Stream the body into ``sink`` (called on a worker thread, one call at a time, in order, with a list of
    chunks of at least ``BUFFER`` bytes); returns the byte count. Receiving goes on while the sink works, up
    to ``4 * BUFFER`` bytes ahead; chunks are handed over as received, never copied here."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[object] | None = None
    chunks: list[bytes] = []
    buffered = 0
    total = 0
    more = True
    try:
        while more:
            chunk, more = await _next(receive, idle_timeout)
            total += len(chunk)
            if limit is not None and total > limit:
                raise ApiError("SIZE_INVALID", f"blob larger than {limit} bytes", status=413,
                               headers={"Connection": "close"})
            if chunk:
                chunks.append(chunk)
                buffered += len(chunk)
            if not chunks or (more and buffered < BUFFER):
                continue
            if pending is not None and not pending.done():
                if more and buffered < 4 * BUFFER:
                    continue  # keep receiving while the sink is busy
                await pending
            if pending is not None:
                pending.result()
            pending = loop.run_in_executor(_IO, sink, chunks)
            chunks, buffered = [], 0
        if pending is not None:
            await pending
            pending = None
        if chunks:
            await loop.run_in_executor(_IO, sink, chunks)
    finally:
        if pending is not None:
            try:
                await pending
            except Exception:
                pass
    return total


_HASH = ThreadPoolExecutor(max_workers=4, thread_name_prefix="registry-hash")


def write_and_hash(fd: int, chunks: list[bytes], hasher: Any) -> None:
    """Write ``chunks`` to ``fd`` while ``hasher`` digests them on another thread (both release the GIL)."""
    def digest() -> None:
        for chunk in chunks:
            hasher.update(chunk)

    done = _HASH.submit(digest)
    try:
        write_chunks(fd, chunks)
    finally:
        done.result()


def write_chunks(fd: int, chunks: list[bytes]) -> None:
    """Write every chunk to ``fd`` (``os.writev`` in batches, resuming after short writes)."""
    views = [memoryview(c) for c in chunks]
    while views:
        n = os.writev(fd, views[:512])
        while n and views:
            if n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][n:]
                n = 0


async def run_io(func: Callable[..., object], *args: object) -> object:
    """Run blocking file work on the I/O pool."""
    return await asyncio.get_running_loop().run_in_executor(_IO, func, *args)
