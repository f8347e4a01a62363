"""Registry response bodies read in bounded memory.

The client asks for ``Accept-Encoding: identity`` and reads bodies raw (never decompressed, so no
decompression bomb), and no body is read whole without a cap: a token answer stops at 1 MiB + 1 byte, a manifest
at 4 MiB + 1, an error body or any other small answer at 64 KiB (kept truncated: only its status and error code
matter). A hostile server that streams forever costs one chunk of memory past the cap.
"""

from __future__ import annotations

import httpx

__all__ = ["SMALL_BODY", "buffered", "read_capped"]

SMALL_BODY = 64 << 10


def read_capped(resp: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` raw bytes of a streamed body, and whether more followed (reading stops there)."""
    buf = bytearray()
    for chunk in resp.iter_raw():
        room = limit - len(buf)
        if len(chunk) > room:
            buf += chunk[:room]
            return bytes(buf), True
        buf += chunk
    return bytes(buf), False


def buffered(resp: httpx.Response, limit: int = SMALL_BODY) -> httpx.Response:
    """A copy of streamed ``resp`` holding at most ``limit`` bytes of its body; ``resp`` is closed.

    The copy keeps status, headers (less ``Content-Encoding``: the body is raw), request and extensions. A longer
    body is cut (its connection is not reused).
    """
    try:
        body, _ = read_capped(resp, limit)
    finally:
        resp.close()
    headers = [(k, v) for k, v in resp.headers.multi_items() if k.lower() != "content-encoding"]
    return httpx.Response(resp.status_code, headers=headers, content=body, request=resp.request,
                          extensions=resp.extensions)
