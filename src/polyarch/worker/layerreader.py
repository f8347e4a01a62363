"""The uncompressed stream of a layer being applied, as a forward-only file for ``tarfile`` (``r:`` mode), hashed
on the way (the diff_id). Used by ``apply.apply_layer``.

API::

    reader = open_layer(stream, limit)     # gzip/zstd/plain by magic bytes; a plain tar in a regular file is mapped
    reader.read(n) / tell() / seek(forward) / views(n) / clean_end(offset) / empty() / digest() / close()
"""

from __future__ import annotations

import mmap
import os
import queue
import stat
import tarfile
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

from polyarch.content.compression import decompressed, sniff
from polyarch.digest import Digest, Hasher

__all__ = ["LayerReader", "open_layer"]

_CHUNK = 1 << 20
_MAP_CHUNK = 4 << 20


class LayerReader:
    """The decompressed layer as a forward-only file for ``tarfile`` in ``r:`` mode (read, tell, forward seek).

    A second thread reads ahead (decompression releases the GIL, so it overlaps file creation) and a third hashes
    every chunk read (the diff_id) while this thread writes the same chunk out. An uncompressed layer in a regular
    file (a store blob) is memory-mapped instead: no read-ahead thread and no copy, chunks are slices of the map.
    Headers are read through ``read``; file data is handed out by ``views`` as slices of the chunks and written
    straight to the target file, never copied in Python.
    """

    _END = object()

    def __init__(self, raw: Any, mapped: tuple[mmap.mmap, int] | None = None) -> None:
        self._raw = raw
        self._map = mapped[0] if mapped else None
        self._map_view = memoryview(mapped[0]) if mapped else None
        self._map_pos = mapped[1] if mapped else 0
        self._hash_ended = False
        self.hasher = Hasher("sha256")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=16)
        self._stop = threading.Event()
        self._buf = memoryview(b"")
        self._eof = False
        self._pos = 0  # stream offset of the next byte handed out
        self._last = (0, b"")  # (offset, data) of the last read(): the end-of-archive block for clean_end
        self._hash_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._hash_slots = threading.BoundedSemaphore(32)  # chunks read but not yet hashed
        self._hash_thread = threading.Thread(target=self._hash, name="layer-hasher", daemon=True)
        self._hash_thread.start()
        self._thread: threading.Thread | None = None
        if self._map_view is None:
            self._thread = threading.Thread(target=self._pump, name="layer-reader", daemon=True)
            self._thread.start()

    def _hash(self) -> None:
        while True:
            data = self._hash_queue.get()
            if data is None:
                return
            self.hasher.update(data)
            self._hash_slots.release()

    def digest(self) -> tuple[Digest, int]:
        """The digest and size of everything read ahead; call once the stream was read to its end."""
        self._hash_thread.join()
        return self.hasher.digest(), self.hasher.size

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        try:
            read = getattr(self._raw, "read1", self._raw.read)
            while True:
                data = read(_CHUNK)
                if not data:
                    self._put(self._END)
                    return
                while not self._hash_slots.acquire(timeout=0.1):
                    if self._stop.is_set():
                        return
                self._hash_queue.put(data)
                if not self._put(data):
                    return
        except BaseException as exc:  # handed to the reading thread
            self._put(exc)
        finally:
            self._end_hash()

    def _next_mapped(self, view: memoryview) -> bool:
        chunk = view[self._map_pos:self._map_pos + _MAP_CHUNK]
        if not chunk:
            self._eof = True
            self._end_hash()
            return False
        self._map_pos += len(chunk)
        self._hash_slots.acquire()
        self._hash_queue.put(chunk)
        self._buf = chunk
        return True

    def _end_hash(self) -> None:
        if not self._hash_ended:
            self._hash_ended = True
            self._hash_queue.put(None)

    def _next(self) -> bool:
        if self._eof:
            return False
        if self._map_view is not None:
            return self._next_mapped(self._map_view)
        item = self._queue.get()
        if item is self._END:
            self._eof = True
            return False
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        self._buf = memoryview(item)
        return True

    def views(self, n: int) -> Iterator[memoryview]:
        """The next ``n`` bytes as memoryviews (valid until the next call); fewer in total at the end."""
        while n > 0:
            if not self._buf and not self._next():
                return
            view = self._buf[:n]
            self._buf = self._buf[len(view):]
            self._pos += len(view)
            n -= len(view)
            yield view

    def read(self, n: int = -1) -> bytes:
        start = self._pos
        if n < 0:
            parts = [bytes(v) for v in self.views(1 << 62)]
        elif self._buf and len(self._buf) >= n:  # headers: nearly always within one chunk
            parts = [self._buf[:n].tobytes()]
            self._buf = self._buf[n:]
            self._pos += n
        else:
            parts = [bytes(v) for v in self.views(n)]
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._last = (start, data)
        return data

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset if whence == os.SEEK_SET else self._pos + offset
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or target < self._pos:
            raise tarfile.ReadError("layer stream cannot seek backwards")
        for _ in self.views(target - self._pos):
            pass
        return self._pos

    def empty(self) -> bool:
        """True when the stream holds no bytes at all."""
        return self._pos == 0 and not self._buf and not self._next()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        else:
            self._end_hash()
        self._hash_thread.join()
        if self._map is not None and self._map_view is not None:
            self._buf = memoryview(b"")
            self._map_view.release()
            try:
                self._map.close()
            except BufferError:  # a view is still referenced somewhere: the map goes with it
                pass

    def clean_end(self, offset: int) -> bool:
        """Read to EOF; True when everything from ``offset`` (where tarfile stopped) is zero padding, at least
        one 512-byte block of it: the archive ended with a proper end-of-archive marker."""
        start, data = self._last
        if offset < start or offset > self._pos:
            return False
        rest = data[offset - start:] if offset < start + len(data) else b""
        if self._pos > start + len(data):  # skipped bytes after the last header read: not an end marker
            return False
        zeros = 0
        while True:
            if rest.count(0) != len(rest):
                return False
            zeros += len(rest)
            if not self._buf and not self._next():
                return zeros >= 512
            rest = self._buf.tobytes()
            self._pos += len(rest)
            self._buf = memoryview(b"")


def _map_plain(stream: BinaryIO, limit: int) -> tuple[mmap.mmap, int] | None:
    """(map, offset) of ``stream`` when it is a regular file holding an uncompressed tar within ``limit``."""
    try:
        fd = stream.fileno()
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        start = stream.tell()
        if not 4 <= st.st_size - start <= limit or sniff(os.pread(fd, 4, start)) != "none":
            return None
        return mmap.mmap(fd, 0, prot=mmap.PROT_READ), start
    except (AttributeError, OSError, ValueError):  # not a file (io.UnsupportedOperation is an OSError)
        return None


def open_layer(stream: BinaryIO, limit: int) -> LayerReader:
    """A reader of ``stream`` decompressed and bounded by ``limit`` (LimitExceeded past it)."""
    mapped = _map_plain(stream, limit)
    return LayerReader(None, mapped) if mapped else LayerReader(decompressed(stream, limit=limit))
