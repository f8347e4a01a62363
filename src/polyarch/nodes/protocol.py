"""The node protocol's framing (docs/node-protocol.md): length-prefixed JSON messages and raw blob frames.

A frame is one type byte, a 4-byte big-endian payload length and the payload: ``J`` a JSON object (at most
``MAX_MESSAGE`` bytes, its ``type`` key says what it is), ``B`` a chunk of blob bytes (at most ``CHUNK``). A blob
travels as a ``blob`` message ``{"type": "blob", "digest", "size"}`` followed by exactly ``size`` bytes of ``B``
frames; the receiver streams them into its content store and verifies the digest before publishing.
``PROTOCOL_VERSION`` is sent in both ``hello`` messages; a peer of another version is refused (``check_version``).
A ``Channel`` is safe to send on from several threads; one thread receives.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterable
from typing import Any, BinaryIO

from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import PolyarchError

__all__ = ["CHUNK", "MAX_MESSAGE", "PROTOCOL_VERSION", "Channel", "ConnectionLost", "ProtocolError",
           "check_version"]

PROTOCOL_VERSION = 2
MAX_MESSAGE = 64 << 20
CHUNK = 1 << 20
_HEADER = struct.Struct(">cI")


class ProtocolError(PolyarchError):
    """The peer sent something the protocol does not allow."""


class ConnectionLost(ProtocolError):
    """The stream ended (peer gone, ssh killed)."""


def check_version(theirs: object, *, peer: str) -> None:
    """:raises ProtocolError: ``theirs`` is not this polyarch's ``PROTOCOL_VERSION`` (both named)."""
    if theirs != PROTOCOL_VERSION:
        raise ProtocolError(f"{peer} speaks node protocol {theirs}, this polyarch speaks {PROTOCOL_VERSION}",
                            hint="install the same polyarch version on both machines")


class Channel:
    """Frames over a pair of byte streams (a child's pipes, or this process's stdin/stdout)."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = threading.Lock()
        self.sent = 0  # bytes written (frames included)
        self.received = 0

    # --- sending ------------------------------------------------------------------------------------------------

    def _frame(self, kind: bytes, payload: bytes | memoryview) -> None:
        self._writer.write(_HEADER.pack(kind, len(payload)))
        self._writer.write(payload)
        self.sent += _HEADER.size + len(payload)

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        if len(data) > MAX_MESSAGE:
            raise ProtocolError(f"message {message.get('type')!r} is too large ({len(data)} bytes)")
        try:
            with self._lock:
                self._frame(b"J", data)
                self._writer.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise ConnectionLost(f"connection lost ({exc.__class__.__name__})") from None

    def send_blobs(self, store: ContentStore, digests: Iterable[Digest]) -> None:
        """Every blob of ``digests`` from ``store``: a ``blob`` message, then its bytes."""
        for digest in digests:
            size = store.stat(digest)
            if size is None:
                raise ProtocolError(f"blob {digest} is not in the store")
            with store.open(digest) as src:
                self.send_blob(str(digest), size, src)

    def send_blob(self, digest: str, size: int, src: BinaryIO) -> None:
        """A ``blob`` message, then exactly ``size`` bytes of ``src``."""
        try:
            with self._lock:
                self._frame(b"J", json.dumps({"type": "blob", "digest": digest, "size": size}).encode())
                left = size
                while left:
                    chunk = src.read(min(CHUNK, left))
                    if not chunk:
                        raise ProtocolError(f"blob {digest} is shorter than {size} bytes")
                    self._frame(b"B", chunk)
                    left -= len(chunk)
                self._writer.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise ConnectionLost(f"connection lost ({exc.__class__.__name__})") from None

    # --- receiving ----------------------------------------------------------------------------------------------

    def _exact(self, n: int) -> bytes:
        parts: list[bytes] = []
        left = n
        while left:
            try:
                chunk = self._reader.read(left)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                raise ConnectionLost("connection lost")
            parts.append(chunk)
            left -= len(chunk)
        self.received += n
        return b"".join(parts)

    def _next_frame(self) -> tuple[bytes, bytes]:
        kind, length = _HEADER.unpack(self._exact(_HEADER.size))
        if kind not in (b"J", b"B") or length > max(MAX_MESSAGE, CHUNK):
            raise ProtocolError(f"bad frame (type {kind!r}, {length} bytes)")
        return kind, self._exact(length)

    def recv(self) -> dict[str, Any]:
        """The next JSON message. :raises ConnectionLost: the stream ended; ProtocolError: not a message."""
        kind, payload = self._next_frame()
        if kind != b"J":
            raise ProtocolError("expected a message, got blob bytes")
        try:
            message = json.loads(payload)
        except ValueError as exc:
            raise ProtocolError(f"bad message: {exc}") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ProtocolError("bad message: not an object with a type")
        return message

    def expect(self, message: dict[str, Any], *types: str) -> dict[str, Any]:
        if message["type"] not in types:
            raise ProtocolError(f"expected {' or '.join(types)}, got {message['type']!r}")
        return message

    def recv_blob(self, store: ContentStore, header: dict[str, Any]) -> Digest:
        """The bytes announced by the ``blob`` message ``header`` into ``store``, digest verified."""
        try:
            digest = Digest.parse(str(header["digest"]))
            size = int(header["size"])
        except (KeyError, ValueError, PolyarchError) as exc:
            raise ProtocolError(f"bad blob header: {exc}") from None
        if size < 0:
            raise ProtocolError("bad blob header: negative size")
        writer = store.writer(digest.algorithm)
        try:
            left = size
            while left:
                kind, chunk = self._next_frame()
                if kind != b"B" or len(chunk) > left:
                    raise ProtocolError(f"blob {digest}: bad data frame")
                writer.write(chunk)
                left -= len(chunk)
            writer.commit(expected=digest, size=size)
        except BaseException:
            writer.abort()
            raise
        return digest

    def close(self) -> None:
        for stream in (self._writer, self._reader):
            try:
                stream.close()
            except OSError:
                pass
