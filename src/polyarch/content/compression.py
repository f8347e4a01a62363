"""Layer compression and decompression, keeping the uncompressed digest (diff_id) and the blob digest apart.

gzip uses python-isal (igzip, several times faster than zlib) when installed, else zlib; the gzip header carries
no name and mtime 0, so the same bytes in give the same blob out. zstd uses ``zstandard``. Decompression sniffs
the magic bytes and enforces a limit on inflated bytes (decompression bombs). ``select_gzip("zlib")`` makes the
process use zlib even with isal installed (the CLI calls it for ``POLYARCH_GZIP=zlib``: comparisons in bench/).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Protocol

from polyarch.digest import Digest, Hasher
from polyarch.errors import InvalidLayer, LimitExceeded, UsageError
from polyarch.oci.spec import Descriptor, layer_media_type

from .store import BlobWriter, ContentStore

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_DECOMPRESS_LIMIT",
    "Inflater",
    "LayerResult",
    "LayerWriter",
    "decompressed",
    "select_gzip",
    "sniff",
]

COMPRESSIONS = ("gzip", "zstd", "none")
DEFAULT_DECOMPRESS_LIMIT = 64 << 30
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_BACKENDS = ("isal", "zlib")
_gzip_backend = "isal"  # process-wide, set once by the composition root through select_gzip


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return bytes(data)

    def flush(self) -> bytes:
        return b""


def select_gzip(backend: str) -> None:
    """Compress gzip with ``backend`` from now on in this process: ``isal`` (the default, zlib when isal is
    missing) or ``zlib``."""
    global _gzip_backend
    if backend not in GZIP_BACKENDS:
        raise UsageError(f"unknown gzip backend {backend!r}", hint="use " + " or ".join(GZIP_BACKENDS))
    _gzip_backend = backend


def _gzip_compressor(level: int | None) -> _Compressor:
    try:
        if _gzip_backend == "zlib":
            raise ImportError
        from isal import isal_zlib

        # isal has levels 0..3; map buildx's 0..9 onto them (default 1: fast and about zlib-6's ratio class).
        isal_level = 1 if level is None else min(3, (level + 2) // 3)
        return isal_zlib.compressobj(isal_level, isal_zlib.DEFLATED, 31)  # type: ignore[no-any-return]
    except ImportError:  # pragma: no cover - isal is a dependency, this is a safety net
        return zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)


def _zstd_compressor(level: int | None) -> _Compressor:
    import zstandard

    return zstandard.ZstdCompressor(level=3 if level is None else level).compressobj()  # type: ignore[no-any-return]


def compressor(compression: str, level: int | None = None) -> _Compressor:
    if compression == "gzip":
        return _gzip_compressor(level)
    if compression == "zstd":
        return _zstd_compressor(level)
    if compression in ("none", "uncompressed"):
        return _Identity()
    raise UsageError(f"unknown compression {compression!r}", hint="use gzip, zstd or uncompressed")


@dataclass(frozen=True, slots=True)
class LayerResult:
    descriptor: Descriptor
    diff_id: Digest
    uncompressed_size: int


class LayerWriter(io.RawIOBase):
    """A writable stream of uncompressed layer tar bytes that lands compressed in the content store.

    ``close_layer()`` commits the blob and returns its descriptor and diff_id. Use as a context manager: an
    exception aborts the ingest and leaves nothing in the store. ``write`` takes any bytes-like object and does
    not keep it. Uncompressed layers are hashed once: their blob digest is the diff_id.
    """

    def __init__(self, store: ContentStore, compression: str = "gzip", *, level: int | None = None,
                 oci: bool = True) -> None:
        super().__init__()
        if compression == "uncompressed":
            compression = "none"
        self._compression = compression
        self._media_type = layer_media_type(compression, oci=oci)
        self._compressor = compressor(compression, level)
        self._plain = compression == "none"
        self._diff = None if self._plain else Hasher("sha256")
        self._blob: BlobWriter = store.writer()
        self.result: LayerResult | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._diff is None:
            return self._blob.write(data)
        self._diff.update(data)
        out = self._compressor.compress(data)
        if out:
            self._blob.write(out)
        return len(data)

    def close_layer(self) -> LayerResult:
        if self.result is None:
            if self._diff is None:
                digest, size = self._blob.commit()
                self.result = LayerResult(Descriptor(self._media_type, digest, size), digest, size)
                return self.result
            tail = self._compressor.flush()
            if tail:
                self._blob.write(tail)
            digest, size = self._blob.commit()
            self.result = LayerResult(Descriptor(self._media_type, digest, size), self._diff.digest(),
                                      self._diff.size)
        return self.result

    def abort(self) -> None:
        self._blob.abort()

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None or self.result is None:
            self.abort()


def sniff(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


class _Gunzip(io.RawIOBase):
    """gzip (several members allowed) decompressed incrementally, never more than 1 MiB per step."""

    def __init__(self, raw: BinaryIO, head: bytes) -> None:
        super().__init__()
        self._raw = raw
        self._in = head
        self._d = _gzip_decompressor()
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._done:
            if not self._in:
                self._in = self._raw.read(1 << 20)
                if not self._in:
                    if not self._d.eof:
                        raise InvalidLayer("compressed stream is truncated")
                    self._done = True
                    break
            try:
                out = self._d.decompress(self._in, len(b))
            except (*_GZIP_ERRORS, OSError, ValueError, EOFError) as exc:
                raise InvalidLayer(f"corrupt gzip stream: {exc}") from exc
            self._in = self._d.unconsumed_tail
            if self._d.eof:
                rest = self._d.unused_data + self._in
                self._d = _gzip_decompressor()
                self._in = rest
                if not rest:
                    self._in = self._raw.read(1 << 20)
                    if not self._in:
                        self._done = True
            if out:
                b[: len(out)] = out
                return len(out)
        return 0


class _Unzstd(io.RawIOBase):
    """zstd decompressed incrementally; input is fed in small slices so one step inflates to a bounded size
    (at most ~64 MiB even for run-length bombs), and a missing frame end is reported as truncation."""

    _SLICE = 2048

    def __init__(self, raw: BinaryIO, head: bytes) -> None:
        super().__init__()
        import zstandard

        self._zstd = zstandard
        self._raw = raw
        self._in = head
        self._d = zstandard.ZstdDecompressor().decompressobj()
        self._out = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._out and not self._done:
            if not self._in:
                self._in = self._raw.read(1 << 20)
                if not self._in:
                    if not self._d.eof:
                        raise InvalidLayer("compressed stream is truncated")
                    self._done = True
                    break
            if self._d.eof:  # another frame follows
                self._d = self._zstd.ZstdDecompressor().decompressobj()
            view = memoryview(self._in)  # slices of a view: the rest is not copied at every step
            piece, self._in = view[: self._SLICE], view[self._SLICE:]
            try:
                self._out = self._d.decompress(piece)
            except self._zstd.ZstdError as exc:
                raise InvalidLayer(f"corrupt zstd stream: {exc}") from exc
            if self._d.eof and self._d.unused_data:
                self._in = self._d.unused_data + self._in
        n = min(len(b), len(self._out))
        b[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


class _Limited(io.RawIOBase):
    """Counts bytes read from ``inner`` and fails past ``limit``."""

    def __init__(self, inner: Any, limit: int) -> None:
        super().__init__()
        self._inner = inner
        self._limit = limit
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n: int = self._inner.readinto(b)
        self._count += n
        if self._count > self._limit:
            raise LimitExceeded(f"layer inflates past the limit of {self._limit} bytes")
        return n


class _Prefixed(io.RawIOBase):
    def __init__(self, raw: BinaryIO, head: bytes) -> None:
        super().__init__()
        self._raw = raw
        self._head = head

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        readinto = getattr(self._raw, "readinto", None)
        if readinto is not None:  # straight into the caller's buffer: no intermediate copy
            n: int | None = readinto(b)
            if n is not None:
                return n
        data = self._raw.read(len(b))
        b[: len(data)] = data
        return len(data)


def _gzip_errors() -> tuple[type[Exception], ...]:
    try:
        from isal import isal_zlib

        return (zlib.error, isal_zlib.error)
    except ImportError:  # pragma: no cover
        return (zlib.error,)


_GZIP_ERRORS = _gzip_errors()


def _gzip_decompressor() -> Any:
    try:
        from isal import isal_zlib

        return isal_zlib.decompressobj(31)
    except ImportError:  # pragma: no cover
        return zlib.decompressobj(31)


class Inflater:
    """Push-mode decompression for a consumer that is handed bytes as they arrive (a blob being downloaded):
    ``feed`` yields decompressed pieces of at most ``step`` bytes (gzip members and zstd frames chained, as
    ``decompressed`` reads them); ``complete`` says the input ended at a member or frame boundary.

    :raises InvalidLayer: corrupt input.
    """

    def __init__(self, kind: str, *, step: int = 1 << 20) -> None:
        self.kind = kind
        self._step = step
        self._d: Any = None
        self._started = False
        if kind == "zstd":
            import zstandard

            self._zstd = zstandard

    def _new(self) -> Any:
        if self.kind == "gzip":
            return _gzip_decompressor()
        return self._zstd.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes | memoryview) -> Iterator[bytes]:
        if self.kind == "none":
            if data:
                yield bytes(data)
            return
        rest: bytes | memoryview = bytes(data)
        while rest:
            if self._d is None or self._d.eof:
                self._d = self._new()
            self._started = True
            try:
                if self.kind == "gzip":
                    out = self._d.decompress(rest, self._step)
                    rest = self._d.unconsumed_tail
                else:  # zstd: small slices bound what one call inflates (views: slicing copies nothing)
                    view = memoryview(rest)
                    piece, rest = view[:2048], view[2048:]
                    out = self._d.decompress(piece)
            except (*_GZIP_ERRORS, OSError, ValueError, EOFError) as exc:
                raise InvalidLayer(f"corrupt {self.kind} stream: {exc}") from exc
            except Exception as exc:  # zstandard.ZstdError
                if self.kind == "zstd" and isinstance(exc, self._zstd.ZstdError):
                    raise InvalidLayer(f"corrupt zstd stream: {exc}") from exc
                raise
            if self._d.eof and self._d.unused_data:
                rest = self._d.unused_data + rest
            if out:
                yield out
            while not rest and self.kind == "gzip" and not self._d.eof:  # output held back by ``step``
                try:
                    out = self._d.decompress(b"", self._step)
                except (*_GZIP_ERRORS, OSError, ValueError, EOFError) as exc:
                    raise InvalidLayer(f"corrupt gzip stream: {exc}") from exc
                rest = self._d.unconsumed_tail
                if not out:
                    break
                yield out

    def complete(self) -> bool:
        return self.kind == "none" or (self._started and self._d is not None and self._d.eof)


def decompressed(raw: BinaryIO, *, limit: int = DEFAULT_DECOMPRESS_LIMIT) -> IO[bytes]:
    """A buffered reader of ``raw`` decompressed (gzip, zstd or plain, by magic bytes), bounded by ``limit``."""
    head = raw.read(4)
    kind = sniff(head)
    inner: Any
    if kind == "gzip":
        inner = _Gunzip(raw, head)
    elif kind == "zstd":
        inner = _Unzstd(raw, head)
    else:
        inner = _Prefixed(raw, head)
    return io.BufferedReader(_Limited(inner, limit), buffer_size=1 << 20)
