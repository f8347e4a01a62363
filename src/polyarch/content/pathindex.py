"""Path index of a layer blob: the table of contents COPY, WORKDIR, ADD and USER need (``solver.rootview``), made
in the same pass that hashes the blob while it is pulled, so a base layer's bytes are read once.

A layer's index is its members in order: ``(path, PathInfo)``, whiteouts (``PathInfo`` None) and opaque markers,
plus the bytes of ``etc/passwd`` and ``etc/group`` (< 1 MiB), and — when ``IndexBuilder`` made it — what the SBOM's
package scanners read (``packages``: ``pkgfiles.Capture`` fed the same members, so ``attest`` reads no base layer
again; a stored capture that does not check out decodes as None and the layer is scanned again). ``add_member`` is the one rule that turns a tar
member into an entry; ``solver.rootview`` uses it when it reads a stored blob, ``IndexBuilder`` when bytes arrive.

``IndexBuilder`` is fed the blob's compressed bytes (``feed``) and decompresses them as they come
(``compression.Inflater``: isal, zstandard). A plain member's header block is read in place by ``tarheader.plain``
(the ``TarInfo`` ``fromtarfile`` would make of it); every other header — PAX, GNU long names, global headers in
force, anything ``plain`` is not sure of — is parsed by ``tarfile``'s own ``TarInfo.fromtarfile`` over exactly the
member's buffered header blocks, so names, PAX and GNU long names mean what they mean to ``tarfile``; file data is
skipped by counting. It gives up (``result`` is None) on anything it is not sure ``tarfile``'s stream reader
would read the same way — corrupt compression, a bad header, sparse members, truncation, a member's headers over
``_MAX_HEADERS`` or too deep for ``tarfile``'s recursion, a size that would move backwards, more than
``DEFAULT_DECOMPRESS_LIMIT`` inflated — and the solver then reads the blob from the store as before, with the
errors it always gave. ``IndexingSink`` wraps a ``registry.sink.BlobSink``: the index is handed to a
``LayerIndexes`` store (the build cache, made by the CLI) only after the blob verified and committed.
"""

from __future__ import annotations

import base64
import io
import json
import posixpath
import queue
import tarfile
import threading
import zlib
from dataclasses import dataclass
from typing import Protocol

from polyarch.digest import Digest
from polyarch.errors import PolyarchError

from . import tarheader
from .compression import DEFAULT_DECOMPRESS_LIMIT, Inflater, sniff
from .pkgfiles import Capture, PackageFiles, from_json, to_json, whiteout

__all__ = ["IndexBuilder", "IndexingSink", "LayerIndex", "LayerIndexes", "PathInfo", "PendingIndexes",
           "add_member", "decode", "encode", "record", "wanted_data"]

SMALL_FILES = ("etc/passwd", "etc/group")
_SMALL_LIMIT = 1 << 20
_MAX_HEADERS = 16 << 20  # PAX / GNU long-name blocks of one member at most
_QUEUED = 8  # chunks waiting for the index thread (a download reads up to 1 MiB at a time: <= 8 MiB a blob)
_EXTENDED = (b"L", b"K", b"x", b"g", b"X", b"S")
_CHAINED = (b"L", b"K", b"x", b"g", b"X")  # tarfile reads the next header block as part of these members
# the package capture is kept only for layers ``worker.tarmembers`` reads without error: a member's headers within
# 8 KiB (its bounds: 16 metadata headers, 1 MiB each, 4 MiB a member) and global PAX headers within 1 MiB in total
_PKG_HEADERS = 8 << 10
_PKG_GLOBAL = 1 << 20


@dataclass(frozen=True, slots=True)
class PathInfo:
    kind: str  # dir | file | symlink | other
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    linkname: str = ""


Entry = tuple[str, PathInfo | None, bool]  # (path, info or None = whiteout, opaque marker)


@dataclass(frozen=True, slots=True)
class LayerIndex:
    entries: tuple[Entry, ...]
    small: dict[str, bytes]
    packages: PackageFiles | None = None  # what the SBOM's scanners read (``pkgfiles``); None: not captured


class LayerIndexes(Protocol):
    """Persistent layer indexes by blob digest (``solver.cache.BuildCache`` implements it)."""

    def layer_index(self, digest: str) -> bytes | None: ...
    def put_layer_index(self, digest: str, data: bytes) -> None: ...


def encode(index: LayerIndex) -> bytes:
    doc = {"e": [[p, None if i is None else [i.kind, i.mode, i.uid, i.gid, i.linkname], o]
                 for p, i, o in index.entries],
           "s": {k: base64.b64encode(v).decode() for k, v in index.small.items()}}
    if index.packages is not None:
        doc["p"] = to_json(index.packages)
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)


def decode(data: bytes) -> LayerIndex | None:
    try:
        doc = json.loads(zlib.decompress(data))
        entries = tuple((p, None if i is None else PathInfo(*i), bool(o)) for p, i, o in doc["e"])
        packages = from_json(doc["p"]) if "p" in doc else None  # a bad one is left out: scanned again
        return LayerIndex(entries, {k: base64.b64decode(v) for k, v in doc["s"].items()}, packages)
    except (ValueError, KeyError, TypeError, zlib.error):
        return None


def _kind(m: tarfile.TarInfo) -> str:
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.isreg() or m.islnk():
        return "file"
    return "other"


def add_member(entries: list[Entry], m: tarfile.TarInfo) -> str | None:
    """Append ``m``'s entry; returns the normalized path when its data belongs in the index (``wanted_data``)."""
    name = posixpath.normpath(m.name.lstrip("/"))
    if name in (".", "") or name.startswith("../"):
        return None
    if (wh := whiteout(name)) is not None:
        entries.append((wh[0], None, wh[1]))
    else:
        entries.append((name, PathInfo(_kind(m), m.mode & 0o7777, m.uid, m.gid, m.linkname), False))
        if wanted_data(name, m):
            return name
    return None


def wanted_data(name: str, m: tarfile.TarInfo) -> bool:
    return name in SMALL_FILES and m.isreg() and m.size < _SMALL_LIMIT


class _Headers:
    """What ``TarInfo.fromtarfile`` reads from its tar file object: buffered header blocks."""

    encoding = "utf-8"
    errors = "surrogateescape"

    def __init__(self, data: bytes, pax_headers: dict[str, str]) -> None:
        self.fileobj = io.BytesIO(data)
        self.pax_headers = pax_headers
        self.offset = 0


class _GiveUp(Exception):
    pass


def _chain(head: bytearray, pos: int) -> tuple[int, bool]:
    """Walk a member's header blocks (extended headers and their data, then its own header) buffered in ``head``
    from the block at ``pos``: ``(offset of its own header, True)`` once that is buffered, else ``(offset of the
    next block to look at, False)``. Gives up where ``tarfile`` would always fail or the member is sparse (never
    indexed)."""
    while len(head) >= pos + 512:
        kind = head[pos + 156:pos + 157]
        if kind == tarfile.GNUTYPE_SPARSE:
            raise _GiveUp
        if kind not in _CHAINED:
            return pos, True
        try:
            size = tarfile.nti(bytes(head[pos + 124:pos + 136]))
        except (tarfile.HeaderError, ValueError) as exc:
            raise _GiveUp from exc  # frombuf fails on this block
        if size < 0:
            raise _GiveUp  # tarfile would read "all the rest" here
        pos += 512 + -(-size // 512) * 512
        if pos + 512 > _MAX_HEADERS:
            raise _GiveUp
    return pos, False


class IndexBuilder:
    """Fed a layer blob's bytes in order; ``result()`` is its ``LayerIndex``, or None when it gave up."""

    def __init__(self, limit: int = DEFAULT_DECOMPRESS_LIMIT) -> None:
        self._inflater: Inflater | None = None
        self._sniff = b""
        self._limit = limit
        self._inflated = 0
        self._head = bytearray()  # header blocks of the next member, not parsed yet
        self._walked = 0  # offset in _head of the next of its blocks to look at (``_chain``)
        self._skip = 0  # data bytes of the current member still to pass
        self._capture: bytearray | None = None
        self._capture_left = 0
        self._capture_name = ""
        self._pax: dict[str, str] = {}
        self._entries: list[Entry] = []
        self._small: dict[str, bytes] = {}
        self._ended = False  # end-of-archive block seen
        self._failed = False
        self._pkg: Capture | None = Capture()  # None: given up on (see _PKG_HEADERS)
        self._pkg_left = -1  # data bytes of the current member still to feed the capture (-1: none)

    def feed(self, data: bytes | memoryview) -> None:
        if self._failed or self._ended:
            return
        try:
            if self._inflater is None:
                self._sniff += bytes(data)
                if len(self._sniff) < 4:
                    return
                self._inflater = Inflater(sniff(self._sniff))
                data, self._sniff = self._sniff, b""
            for piece in self._inflater.feed(data):
                self._inflated += len(piece)
                if self._inflated > self._limit:
                    raise _GiveUp
                self._tar(piece)
                if self._ended:
                    return
        except (_GiveUp, PolyarchError, RecursionError):  # (tarfile recurses once per chained extended header)
            self._fail()

    def _fail(self) -> None:
        self._failed = True
        self._head = bytearray()
        self._entries = []
        self._small = {}
        self._pkg = None

    def _take(self, data: memoryview) -> None:
        """Pass ``data`` (the current member's data and padding), keeping what ``wanted_data`` asked for."""
        if self._capture is not None:
            keep = min(len(data), self._capture_left)
            self._capture += data[:keep]
            self._capture_left -= keep
            if not self._capture_left:
                self._small[self._capture_name] = bytes(self._capture)
                self._capture = None
        if self._pkg_left > 0 and self._pkg is not None:
            keep = min(len(data), self._pkg_left)
            self._pkg.feed(data[:keep])
            self._pkg_left -= keep
            if not self._pkg_left:
                self._pkg.end()
                self._pkg_left = -1
        self._skip -= len(data)

    def _tar(self, piece: bytes) -> None:
        n = len(piece)
        pos = 0
        while pos < n:
            if self._skip:
                take = min(self._skip, n - pos)
                if self._capture is None and self._pkg_left <= 0:
                    self._skip -= take  # nothing of this data is kept: no view, no call
                else:
                    self._take(memoryview(piece)[pos:pos + take])
                pos += take
                continue
            if not self._head and n - pos >= tarheader.BLOCK and not self._pax:
                m = tarheader.plain(piece, pos)  # the common member, straight from the block
                if m is not None:
                    pos += tarheader.BLOCK
                    self._begin(m, tarheader.next_header(m))
                    continue
            if len(self._head) < 512:
                need = 512 - len(self._head)
                self._head += piece[pos:pos + need]
                pos = min(pos + need, n)
                if len(self._head) < 512:
                    return
                if self._head.count(0) == 512:
                    self._ended = True  # tarfile's stream reader stops at the first zero block too
                    return
            if self._head[156:157] in _EXTENDED:  # buffer exactly the member's header blocks, nothing past them
                while True:
                    self._walked, complete = _chain(self._head, self._walked)
                    if complete:
                        break
                    if pos == n:
                        return
                    take = min(self._walked + 512 - len(self._head), n - pos)
                    self._head += piece[pos:pos + take]
                    pos += take
            self._member()

    def _member(self) -> None:
        """Parse the buffered header blocks (all of one member's, no more) with ``tarfile``."""
        fake = _Headers(bytes(self._head), dict(self._pax))
        try:
            m = tarfile.TarInfo.fromtarfile(fake)  # type: ignore[arg-type]
        except (tarfile.HeaderError, ValueError, IndexError, EOFError) as exc:
            raise _GiveUp from exc  # the same blocks parse the same way however many bytes follow
        if m.sparse is not None or m.type == tarfile.GNUTYPE_SPARSE:
            raise _GiveUp
        self._pax = fake.pax_headers
        self._head = bytearray()
        self._walked = 0
        self._begin(m, fake.offset)

    def _begin(self, m: tarfile.TarInfo, end: int) -> None:
        """Enter member ``m``, whose data starts at ``m.offset_data`` and the next header at ``end`` (both counted
        from its first header block)."""
        if m.type in tarfile.SUPPORTED_TYPES and m.type not in tarfile.REGULAR_TYPES and m.size:
            raise _GiveUp  # tarfile would not skip this data; such odd layers are left to the blob reader
        if end < m.offset_data:
            raise _GiveUp  # a negative size: tarfile's stream reader cannot seek back either
        self._packages(m)
        name = add_member(self._entries, m)
        if name is not None:
            self._capture, self._capture_left, self._capture_name = bytearray(), m.size, name
            if not m.size:
                self._small[name] = b""
                self._capture = None
        self._skip = end - m.offset_data

    def _packages(self, m: tarfile.TarInfo) -> None:
        if self._pkg is None:
            return
        if m.offset_data > _PKG_HEADERS or sum(len(k) + len(v) for k, v in self._pax.items()) > _PKG_GLOBAL:
            self._pkg = None  # the SBOM reads this layer itself (and reports what worker.tarmembers finds)
            return
        if self._pkg.begin(m):
            self._pkg_left = m.size
            if not m.size:
                self._pkg.end()
                self._pkg_left = -1

    def result(self) -> LayerIndex | None:
        """The index, when the whole archive was read and understood."""
        if self._failed or self._inflater is None:
            return None
        # without an end-of-archive block, tarfile also ends at the end of the input on a header boundary
        if not self._ended and (self._head or self._skip or not self._inflater.complete()):
            return None
        packages = self._pkg.result() if self._pkg is not None and self._pkg_left == -1 else None
        return LayerIndex(tuple(self._entries), dict(self._small), packages)


class PendingIndexes:
    """Indexes kept in memory until the transfer that made them succeeded (``flush_to`` the build cache then):
    a failed pull or load leaves the store, build cache included, as it was."""

    def __init__(self) -> None:
        self._items: dict[str, bytes] = {}

    def layer_index(self, digest: str) -> bytes | None:
        return self._items.get(digest)

    def put_layer_index(self, digest: str, data: bytes) -> None:
        self._items[digest] = data

    def flush_to(self, store: LayerIndexes) -> None:
        for digest, data in self._items.items():
            store.put_layer_index(digest, data)
        self._items.clear()


def record(store: LayerIndexes, digest: Digest, builder: IndexBuilder) -> None:
    """Keep ``builder``'s index of the blob ``digest`` (verified by the caller) when it has one."""
    index = builder.result()
    if index is not None:
        try:
            store.put_layer_index(str(digest), encode(index))
        except PolyarchError:
            pass  # a hint only: the solver reads the blob when it needs the index


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def commit(self, expected: Digest | None = None, size: int | None = None) -> tuple[Digest, int]: ...
    def abort(self) -> None: ...


class IndexingSink:
    """A blob sink that also builds the blob's path index; after a verified commit the index goes to ``store``
    (a store that fails to keep it is left aside: the solver reads the blob later instead).

    The index is built on a thread of its own, fed through a bounded queue: inflating (isal and zstandard release
    the GIL) overlaps receiving, hashing and writing the blob instead of stalling them; the queue bounds the
    memory (``_QUEUED`` chunks) and slows the download down only when the inflater falls behind. Whatever the
    builder raises, the thread keeps draining the queue (the blob then has no index)."""

    def __init__(self, sink: _Sink, store: LayerIndexes) -> None:
        self._sink = sink
        self._store = store
        self._builder = IndexBuilder()
        self._queue: queue.Queue[bytes | None] = queue.Queue(_QUEUED)
        self._thread = threading.Thread(target=self._run, name="layer-index", daemon=True)
        self._thread.start()
        self._done = False
        self._aborted = False

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if not self._aborted:
                try:
                    self._builder.feed(data)
                except Exception:  # the index is a hint: never stop draining (a full queue would hang the
                    self._builder._fail()  # transfer); the solver reads the blob from the store when it needs it

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._queue.put(None)
            self._thread.join()

    def write(self, data: bytes, /) -> int:
        n = self._sink.write(data)
        self._queue.put(bytes(data))
        return n

    def commit(self, expected: Digest | None = None, size: int | None = None) -> tuple[Digest, int]:
        try:
            got = self._sink.commit(expected, size)
        finally:
            self._finish()
        record(self._store, got[0], self._builder)
        return got

    def abort(self) -> None:
        try:
            self._sink.abort()
        finally:
            self._aborted = True  # the queue drains without inflating
            self._finish()
