"""A fast, reproducible tar stream writer (ustar headers, PAX extended headers only where needed).

API::

    w = TarWriter(out)            # out: anything with write(bytes)
    w.entry(name, kind, mode=…, uid=…, gid=…, mtime=…, size=…, linkname=…, dev=(maj, min), pax={…}, fd=…)
    w.file(raw_name, mode, uid, gid, mtime, size, fd, xattrs)   # the hot path for regular files
    w.close()                     # two zero blocks; does not close ``out``

Why not ``tarfile``: its stream writer re-copies its whole buffer on every small write (quadratic with a large
buffer) and spends ~100 µs per header; layers of tens of thousands of small files need far less. Output is
readable by tarfile, GNU tar and Go's archive/tar: names that do not fit ustar's 100-byte field, non-ASCII
names or link targets, ids or sizes beyond octal range, and xattrs go into a PAX ``x`` header (keys sorted,
values as raw bytes like Go writes them).

Writes to ``out``: small entries are batched until at least 1 MiB is pending; a file over 1 MiB goes out in 4 MiB
pieces. These boundaries are part of the output contract: gzip (igzip) output depends on how its input is split,
so they never change (layer digests stay the same across versions). ``TarWriter(out, chunk=N)`` batches and
streams in N-byte writes instead, for outputs whose result does not depend on the split (uncompressed layers):
fewer hand-offs to the writing thread (diff uses 2 MiB). A small file with a short ASCII name and no xattrs has its header
filled in place from a per-(mode, owner, mtime) template. File data is read with ``readv`` straight
into two preallocated buffers per kind (no per-file allocation); with ``threaded=True`` the writes run on a
second thread (hashing/compressing in ``out`` overlaps reading files) while the other buffer fills. ``out`` gets
memoryviews when it is an ``io`` object (they take any buffer), bytes otherwise; it must not keep them.
"""

from __future__ import annotations

import io
import os
import struct
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["BLOCK", "TarWriter"]

BLOCK = 512
_BATCH = 1 << 20  # flush pending small entries once this much is buffered (the default)
_SMALL = 1 << 20  # files up to this size are copied into the batch; larger ones are streamed in pieces
_PIECE = 4 * _BATCH  # a large file's data goes out in pieces of this size (the default)
_TYPES = {"file": b"0", "link": b"1", "symlink": b"2", "chr": b"3", "blk": b"4", "dir": b"5", "fifo": b"6"}
_ZERO = bytes(BLOCK)
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s64s8s8s167s")
_MAGIC = b"ustar\x0000"
_DEV0 = b"0000000\0"
_MAX7 = 8**7
_MAX11 = 8**11
# Header checksum of the constant fields of a plain header: the checksum field as spaces, magic, zero devices.
_CONST_SUM = 8 * 32 + sum(_MAGIC) + 2 * sum(_DEV0)
# (mode, uid, gid, mtime) → their formatted header fields and the fields' byte sum (see _plain_header).
_META_CACHE: dict[tuple[int, int, int, int], tuple[bytes, bytes, bytes, bytes, int]] = {}
# (mode, uid, gid, mtime) → a regular file's header with empty name, size and checksum, and the checksum of
# that (see TarWriter.file): filled in place in the output buffer.
_FILE_TEMPLATES: dict[tuple[int, int, int, int], tuple[bytes, int]] = {}


def _octal(value: int, width: int) -> bytes | None:
    text = b"%0*o" % (width - 1, value)
    return text + b"\0" if value >= 0 and len(text) == width - 1 else None


def _pax_record(key: str, value: bytes) -> bytes:
    body = key.encode() + b"=" + value + b"\n"
    n = len(body) + 2
    while True:
        rec = str(n).encode() + b" " + body
        if len(rec) == n:
            return rec
        n = len(rec)


def _plain_header(name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
                  linkname: bytes) -> bytes | None:
    """The header when no PAX record is needed (the common case), byte-identical to the general path; else None."""
    if (len(name) > 100 or not name.isascii() or len(linkname) > 100 or not linkname.isascii()
            or not (0 <= uid < _MAX7 and 0 <= gid < _MAX7 and 0 <= size < _MAX11 and 0 <= mtime < _MAX11)):
        return None
    key = (mode & 0o7777, uid, gid, mtime)
    meta = _META_CACHE.get(key)
    if meta is None:  # entries of one tree share few (mode, owner, mtime) combinations: format them once
        if len(_META_CACHE) >= 4096:
            _META_CACHE.clear()
        fields = b"%07o\0%07o\0%07o\0%011o\0" % key
        meta = _META_CACHE[key] = (fields[:8], fields[8:16], fields[16:24], fields[24:36], sum(fields))
    size_field = b"%011o\0" % size
    check = _CONST_SUM + sum(name) + meta[4] + sum(size_field) + typeflag[0] + sum(linkname)
    return _USTAR.pack(name, meta[0], meta[1], meta[2], size_field, meta[3],
                       b"%06o\0 " % check, typeflag, linkname, _MAGIC, b"", _DEV0, _DEV0, b"")


def _file_template(key: tuple[int, int, int, int]) -> tuple[bytes, int] | None:
    """The cached header template of a regular file with these (mode, uid, gid, mtime); None if out of ustar range."""
    mode, uid, gid, mtime = key
    if not (0 <= uid < _MAX7 and 0 <= gid < _MAX7 and 0 <= mtime < _MAX11):
        return None
    if len(_FILE_TEMPLATES) >= 4096:
        _FILE_TEMPLATES.clear()
    block = _USTAR.pack(b"", b"%07o\0" % mode, b"%07o\0" % uid, b"%07o\0" % gid, bytes(12), b"%011o\0" % mtime,
                        b"        ", b"0", b"", _MAGIC, b"", _DEV0, _DEV0, b"")
    template = _FILE_TEMPLATES[key] = (block, sum(block))
    return template


def _read_full(fd: int, view: memoryview, name: str) -> None:
    got, want = 0, len(view)
    while got < want:
        n = os.readv(fd, [view[got:]])
        if not n:
            raise OSError(f"{name} shrank while it was being archived")
        got += n


class TarWriter:
    def __init__(self, out: object, *, threaded: bool = False, chunk: int | None = None) -> None:
        """``chunk`` (bytes) replaces both the batch and the piece size: for outputs where write boundaries do not
        change the result (uncompressed layers), larger writes mean fewer thread hand-offs."""
        self._out = out
        self._views_ok = isinstance(out, io.IOBase)
        self._pool = ThreadPoolExecutor(max_workers=1) if threaded else None
        self._pending: Future[object] | None = None
        self._batch = chunk or _BATCH
        self._piece = chunk or _PIECE
        size = self._batch + _SMALL + (64 << 10)  # a batch is < batch + one entry of <= _SMALL data (+ headers)
        self._bufs = [bytearray(size), bytearray(size)]
        self._idx = 0
        self._buf = self._bufs[0]
        self._pos = 0
        self._pieces: list[bytearray] | None = None
        self._piece_idx = 0
        self._pax_count = 0

    # --- output ----------------------------------------------------------------------------------------------

    def _emit(self, data: memoryview) -> None:
        payload: memoryview | bytes = data if self._views_ok else bytes(data)
        if self._pool is None:
            self._out.write(payload)  # type: ignore[attr-defined]
            return
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self._out.write, payload)  # type: ignore[attr-defined]

    def _flush(self) -> None:
        # The buffer handed out stays untouched until the next emit has waited for it: the other one fills.
        if self._pos:
            self._emit(memoryview(self._buf)[: self._pos])
            self._idx ^= 1
            self._buf = self._bufs[self._idx]
            self._pos = 0

    def _room(self, n: int) -> int:
        end = self._pos + n
        if end > len(self._buf):  # only with huge PAX headers: replace (never resize) the buffer
            grown = bytearray(max(end, 2 * len(self._buf)))
            grown[: self._pos] = self._buf[: self._pos]
            self._bufs[self._idx] = self._buf = grown
        return end

    def _put(self, data: bytes) -> None:
        end = self._room(len(data))
        self._buf[self._pos:end] = data
        self._pos = end

    # --- headers ---------------------------------------------------------------------------------------------

    def _header(self, name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
                linkname: bytes, dev: tuple[int, int], pax: dict[str, bytes]) -> bytes:
        if not pax and dev == (0, 0):
            plain = _plain_header(name, typeflag, mode, uid, gid, size, mtime, linkname)
            if plain is not None:
                return plain
        fields = {}
        for key, value, width in (("uid", uid, 8), ("gid", gid, 8), ("size", size, 12), ("mtime", mtime, 12)):
            enc = _octal(value, width)
            if enc is None:
                pax[key] = str(value).encode()
                enc = _octal(0, width)
            fields[key] = enc
        if len(name) > 100 or not name.isascii():
            pax["path"] = name
            name = name[:100].decode("ascii", "replace").encode("ascii", "replace")[:100]
        if len(linkname) > 100 or not linkname.isascii():
            pax["linkpath"] = linkname
            linkname = b""
        header = b""
        if pax:
            header = self._pax_header(pax, mtime)
        block = _USTAR.pack(name, b"%07o\0" % (mode & 0o7777), fields["uid"], fields["gid"], fields["size"],
                            fields["mtime"], b"        ", typeflag, linkname, _MAGIC, b"",
                            _octal(dev[0], 8) or b"", _octal(dev[1], 8) or b"", b"")
        return header + block[:148] + b"%06o\0 " % sum(block) + block[156:]

    def _pax_header(self, pax: dict[str, bytes], mtime: int) -> bytes:
        # Values are raw bytes, as Go's archive/tar writes them; no hdrcharset (GNU tar warns about it, and
        # readers fall back to byte-preserving decoding for values that are not UTF-8).
        records = b"".join(_pax_record(k, pax[k]) for k in sorted(pax))
        mtime = min(max(mtime, 0), _MAX11 - 1)  # the real value is in the records; never recurse
        head = self._header(b"././@PaxHeader", b"x", 0o644, 0, 0, len(records), mtime, b"", (0, 0), {})
        pad = -len(records) % BLOCK
        return head + records + bytes(pad)

    # --- entries ---------------------------------------------------------------------------------------------

    def entry(self, name: str | bytes, kind: str, *, mode: int = 0o644, uid: int = 0, gid: int = 0, mtime: int = 0,
              size: int = 0, linkname: str | bytes = "", dev: tuple[int, int] = (0, 0),
              xattrs: dict[str, bytes] | None = None, fd: int | None = None) -> None:
        """One entry; a regular file's ``size`` bytes are read from ``fd`` (which the caller closes)."""
        raw = os.fsencode(name)
        if kind == "dir" and not raw.endswith(b"/"):
            raw += b"/"
        if kind == "file" and size:
            assert fd is not None
            self.file(raw, mode, uid, gid, mtime, size, fd, xattrs, name if isinstance(name, str) else None)
            return
        pax = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()} if xattrs else {}
        self._put(self._header(raw, _TYPES[kind], mode, uid, gid, 0, mtime, os.fsencode(linkname), dev, pax))
        if self._pos >= self._batch:
            self._flush()

    def file(self, raw: bytes, mode: int, uid: int, gid: int, mtime: int, size: int, fd: int,
             xattrs: dict[str, bytes] | None = None, name: str | None = None) -> None:
        """A regular file named ``raw`` (bytes) whose ``size`` bytes are read from ``fd`` (the caller closes it).

        The hot path (a small file with a short ASCII name and no xattrs, once per file of a layer) fills a cached
        header template in place: the same bytes as ``_plain_header``, without building the header on its own."""
        if size <= _SMALL and not xattrs and len(raw) <= 100 and raw.isascii():
            key = (mode & 0o7777, uid, gid, mtime)
            template = _FILE_TEMPLATES.get(key) or _file_template(key)
            if template is not None:
                pad = -size % BLOCK
                pos = self._pos
                end = pos + BLOCK + size + pad
                buf = self._buf
                if end > len(buf):
                    self._room(BLOCK + size + pad)
                    buf = self._buf
                buf[pos:pos + BLOCK] = template[0]
                buf[pos:pos + len(raw)] = raw
                size_field = b"%011o\0" % size
                buf[pos + 124:pos + 136] = size_field
                buf[pos + 148:pos + 156] = b"%06o\0 " % (template[1] + sum(raw) + sum(size_field))
                if size:
                    view = memoryview(buf)[pos + BLOCK:pos + BLOCK + size]
                    n = os.readv(fd, [view])
                    if n < size:
                        _read_full(fd, view[n:], name if name is not None else os.fsdecode(raw))
                    if pad:
                        buf[end - pad:end] = _ZERO[:pad]
                self._pos = end
                if end >= self._batch:
                    self._flush()
                return
        header = None
        if not xattrs:
            header = _plain_header(raw, b"0", mode, uid, gid, size, mtime, b"")
        if header is None:
            pax = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()} if xattrs else {}
            header = self._header(raw, b"0", mode, uid, gid, size, mtime, b"", (0, 0), pax)
        if size > _SMALL:
            self._put(header)
            self._large(fd, size, name if name is not None else os.fsdecode(raw))
            pad = -size % BLOCK
            if pad:
                self._put(_ZERO[:pad])
        else:  # header, data and padding straight into the batch buffer
            hlen = len(header)
            pad = -size % BLOCK
            self._room(hlen + size + pad)
            buf, pos = self._buf, self._pos
            buf[pos:pos + hlen] = header
            pos += hlen
            if size:
                view = memoryview(buf)[pos:pos + size]
                n = os.readv(fd, [view])
                if n < size:
                    _read_full(fd, view[n:], name if name is not None else os.fsdecode(raw))
                pos += size
                if pad:
                    buf[pos:pos + pad] = _ZERO[:pad]
                    pos += pad
            self._pos = pos
        if self._pos >= self._batch:
            self._flush()

    def _large(self, fd: int, size: int, name: str) -> None:
        self._flush()
        if self._pieces is None:
            self._pieces = [bytearray(self._piece), bytearray(self._piece)]
        remaining = size
        while remaining:
            want = min(self._piece, remaining)
            view = memoryview(self._pieces[self._piece_idx])[:want]
            self._piece_idx ^= 1  # the piece emitted last may still be in flight: fill the other one next
            _read_full(fd, view, name)
            self._emit(view)
            remaining -= want

    def close(self) -> None:
        self._put(_ZERO + _ZERO)
        self._flush()
        self._finish(wait=True)

    def discard(self) -> None:
        """Stop after a failure: wait for the write in flight (its error is dropped) and release the thread."""
        self._finish(wait=False)

    def _finish(self, *, wait: bool) -> None:
        pending, self._pending = self._pending, None
        try:
            if pending is not None:
                if wait:
                    pending.result()
                else:
                    pending.exception()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None
