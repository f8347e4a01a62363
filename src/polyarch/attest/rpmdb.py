"""The rpm database of an image, read from its bytes (never from a path): SQLite ``rpmdb.sqlite`` (rpm ≥ 4.16:
Fedora, RHEL 9), BerkeleyDB hash ``Packages`` (RHEL ≤ 8, CentOS, Amazon Linux 2), ndb ``Packages.db`` (SUSE) and the
rpm header blobs they hold.

API::

    headers(data) -> list[bytes]            # the header blobs of a database file (SQLite, BerkeleyDB hash or ndb)
    parse_header(blob) -> RpmHeader | None  # one header blob: name, version, release, epoch, license, arch, source rpm

A header blob is ``il`` and ``dl`` (big-endian u32), ``il`` index entries of 16 bytes (tag, type, offset, count)
and a data store of ``dl`` bytes the offsets point into. The SQLite file is opened in memory (``deserialize`` of a
copy with the WAL flag cleared) with a step budget, read-only, untrusted schema, and only a real ``Packages``
table is read. The BerkeleyDB file is walked page by page: the values of hash pages, inline or on overflow-page
chains. The ndb file is a page of slots (``Slot``, package index, block offset and count; 16-byte blocks) that
point at blobs (``BlbS``, package index, generation, length, then the header). Every offset and length is checked; any malformed part is skipped; never raises on any bytes. At most
``MAX_HEADERS`` headers of at most ``MAX_HEADER`` bytes each are returned.
"""

from __future__ import annotations

import sqlite3
import struct
from dataclasses import dataclass

__all__ = ["MAX_HEADER", "MAX_HEADERS", "RpmHeader", "headers", "parse_header"]

MAX_HEADERS = 100_000
MAX_HEADER = 16 << 20  # rpm's own limit on a header's data (HEADER_DATA_MAX is 256 MiB; real ones: < 1 MiB)
_MAX_INDEX = 0xFFFF  # rpm's HEADER_TAGS_MAX
_MAX_STRING = 4096
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_STEPS = 50_000_000  # virtual machine steps for the one query (a hostile view or schema cannot loop)

TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH = 1000, 1001, 1002, 1003
TAG_LICENSE, TAG_ARCH, TAG_SOURCERPM = 1014, 1022, 1044
_STRING_TAGS = {TAG_NAME: "name", TAG_VERSION: "version", TAG_RELEASE: "release", TAG_LICENSE: "license",
                TAG_ARCH: "arch", TAG_SOURCERPM: "sourcerpm"}
_T_INT32, _T_STRING, _T_STRING_ARRAY, _T_I18NSTRING = 4, 6, 8, 9


@dataclass(frozen=True, slots=True)
class RpmHeader:
    name: str
    version: str
    release: str = ""
    epoch: int | None = None
    license: str = ""
    arch: str = ""
    sourcerpm: str = ""


def _cstring(store: bytes, offset: int) -> str | None:
    end = store.find(b"\x00", offset, offset + _MAX_STRING + 1)
    if end < 0:
        return None
    return store[offset:end].decode("utf-8", errors="replace")


def parse_header(blob: bytes) -> RpmHeader | None:
    """The package a header blob describes, or None (malformed, or no name or version)."""
    if len(blob) < 8:
        return None
    il, dl = struct.unpack_from(">II", blob, 0)
    start = 8 + 16 * il
    if il == 0 or il > _MAX_INDEX or dl > MAX_HEADER or start + dl > len(blob):
        return None
    store = blob[start:start + dl]
    fields: dict[str, str] = {}
    epoch: int | None = None
    for i in range(il):
        tag, typ, offset, count = struct.unpack_from(">IIII", blob, 8 + 16 * i)
        if offset >= dl or count == 0:
            continue
        if tag in _STRING_TAGS and typ in (_T_STRING, _T_STRING_ARRAY, _T_I18NSTRING):
            value = _cstring(store, offset)
            if value is not None:
                fields.setdefault(_STRING_TAGS[tag], value.strip())
        elif tag == TAG_EPOCH and typ == _T_INT32 and offset + 4 <= dl:
            epoch = struct.unpack_from(">I", store, offset)[0]
    name, version = fields.get("name", ""), fields.get("version", "")
    if not name or not version:
        return None
    return RpmHeader(name, version, fields.get("release", ""), epoch, fields.get("license", ""),
                     fields.get("arch", ""), fields.get("sourcerpm", ""))


def headers(data: bytes) -> list[bytes]:
    """The header blobs of an rpm database file (SQLite, BerkeleyDB hash or ndb); [] for anything else."""
    if data.startswith(_SQLITE_MAGIC):
        return _sqlite_headers(data)
    if data.startswith(_NDB_MAGIC):
        return _ndb_headers(data)
    return _bdb_headers(data)


_NDB_MAGIC, _NDB_SLOT, _NDB_BLOB = b"RpmP", b"Slot", b"BlbS"
_NDB_PAGE, _NDB_BLOCK = 4096, 16


def _ndb_headers(data: bytes) -> list[bytes]:
    if len(data) < 32:
        return []
    version, _generation, slot_pages = struct.unpack_from("<III", data, 4)
    if version != 0 or slot_pages == 0:
        return []
    out: list[bytes] = []
    for at in range(32, min(slot_pages * _NDB_PAGE, len(data)) - 15, 16):  # the file header takes two slots
        magic, pkgidx, blkoff, _blkcnt = struct.unpack_from("<4sIII", data, at)
        if magic != _NDB_SLOT or pkgidx == 0:
            continue
        start = blkoff * _NDB_BLOCK
        if start < slot_pages * _NDB_PAGE or start + 16 > len(data):
            continue
        bmagic, bidx, _gen, size = struct.unpack_from("<4sIII", data, start)
        if bmagic != _NDB_BLOB or bidx != pkgidx or size > MAX_HEADER or start + 16 + size > len(data):
            continue
        out.append(data[start + 16:start + 16 + size])
        if len(out) >= MAX_HEADERS:
            break
    return out


def _sqlite_headers(data: bytes) -> list[bytes]:
    if len(data) < 100:
        return []
    copy = bytearray(data)
    copy[18] = copy[19] = 1  # WAL → legacy journal: an in-memory database cannot be in WAL mode
    steps = 0

    def budget() -> int:
        nonlocal steps
        steps += 1000
        return 1 if steps > _SQLITE_STEPS else 0

    conn = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        conn.set_progress_handler(budget, 1000)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_HEADER)
        conn.deserialize(bytes(copy))
        for pragma in ("trusted_schema=OFF", "query_only=ON", "cell_size_check=ON"):
            conn.execute(f"PRAGMA {pragma}")
        kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'Packages'").fetchall()
        if kind != [("table",)]:
            return []
        out: list[bytes] = []
        for (blob,) in conn.execute("SELECT blob FROM Packages"):
            if isinstance(blob, bytes) and len(blob) <= MAX_HEADER:
                out.append(blob)
                if len(out) >= MAX_HEADERS:
                    break
        return out
    except (sqlite3.Error, OverflowError, MemoryError, ValueError):
        return []
    finally:
        conn.close()


# BerkeleyDB: metadata page 0 (magic at 12, page size at 20), then pages with a 26-byte header (next page at 16,
# entries at 20, hf_offset at 22 — the used length of an overflow page —, type at 25) and, on hash pages,
# ``entries`` u16 item offsets after it: items alternate key, value.
_HASH_MAGIC = 0x061561
_P_HASH_UNSORTED, _P_OVERFLOW, _P_HASH = 2, 7, 13
_H_KEYDATA, _H_OFFPAGE = 1, 3
_PAGE_HEADER = 26


def _bdb_headers(data: bytes) -> list[bytes]:
    if len(data) < 512:
        return []
    order = ""
    for candidate in ("<", ">"):
        if struct.unpack_from(candidate + "I", data, 12)[0] == _HASH_MAGIC:
            order = candidate
    if not order:
        return []
    pagesize = struct.unpack_from(order + "I", data, 20)[0]
    if pagesize < 512 or pagesize > 65536 or pagesize & (pagesize - 1):
        return []
    pages = len(data) // pagesize
    out: list[bytes] = []
    for pgno in range(1, pages):
        base = pgno * pagesize
        if data[base + 25] not in (_P_HASH, _P_HASH_UNSORTED):
            continue
        entries = struct.unpack_from(order + "H", data, base + 20)[0]
        if _PAGE_HEADER + 2 * entries > pagesize:
            continue
        for i in range(1, entries, 2):  # values: every second item
            at = struct.unpack_from(order + "H", data, base + _PAGE_HEADER + 2 * i)[0]
            blob = _bdb_item(data, order, pagesize, base, at, entries, i)
            if blob is not None:
                out.append(blob)
                if len(out) >= MAX_HEADERS:
                    return out
    return out


def _bdb_item(data: bytes, order: str, pagesize: int, base: int, at: int, entries: int, i: int) -> bytes | None:
    if at < _PAGE_HEADER or at >= pagesize:
        return None
    kind = data[base + at]
    if kind == _H_KEYDATA:  # inline: up to the previous item's start (items grow down from the page end)
        prev = pagesize if i == 0 else struct.unpack_from(order + "H", data, base + _PAGE_HEADER + 2 * (i - 1))[0]
        end = prev if at < prev <= pagesize else pagesize
        return data[base + at + 1:base + end]
    if kind != _H_OFFPAGE or at + 12 > pagesize:
        return None
    pgno, total = struct.unpack_from(order + "II", data, base + at + 4)
    if total > MAX_HEADER:
        return None
    return _overflow(data, order, pagesize, pgno, total)


def _overflow(data: bytes, order: str, pagesize: int, pgno: int, total: int) -> bytes | None:
    parts: list[bytes] = []
    got = 0
    seen: set[int] = set()
    while got < total:
        if pgno == 0 or pgno in seen or (pgno + 1) * pagesize > len(data):
            return None
        seen.add(pgno)
        base = pgno * pagesize
        if data[base + 25] != _P_OVERFLOW:
            return None
        used = struct.unpack_from(order + "H", data, base + 22)[0]
        if used > pagesize - _PAGE_HEADER:
            return None
        parts.append(data[base + _PAGE_HEADER:base + _PAGE_HEADER + used])
        got += used
        pgno = struct.unpack_from(order + "I", data, base + 16)[0]
    return b"".join(parts)[:total]
