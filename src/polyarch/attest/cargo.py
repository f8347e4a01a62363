"""A Rust binary's cargo-auditable dependency list (the ``.dep-v0`` ELF section), read from its bytes.

API::

    SECTION                                   # b".dep-v0"
    elf_section(read_at, size, name) -> bytes | None   # one ELF section's bytes (read_at(start, end) -> bytes)
    parse_audit_data(compressed) -> AuditData | None   # the section: zlib-compressed JSON

The section holds ``{"packages": [{"name", "version", "source", "kind", "dependencies", "root"}, …]}`` compressed
with zlib. ELF files of either class (32/64-bit) and byte order are read through their section header table;
every offset and size is checked against the file, the section is at most ``MAX_SECTION`` bytes and its JSON at
most ``MAX_JSON`` bytes once decompressed (a bomb stops there and gives None). Every package is returned, build
dependencies and the root crate included, as cargo-auditable records them. Never raises on any bytes.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_JSON", "MAX_SECTION", "SECTION", "AuditData", "Crate", "elf_section", "parse_audit_data"]

SECTION = b".dep-v0"
MAX_SECTION = 8 << 20
MAX_JSON = 8 << 20  # cargo-auditable's own default limit on the decompressed data
_MAX_SECTIONS = 65_536
_MAX_CRATES = 100_000
_SHT_NOBITS = 8


@dataclass(frozen=True, slots=True)
class Crate:
    name: str
    version: str
    source: str = ""  # crates.io, git, local, registry, …
    kind: str = "runtime"  # or build


@dataclass(frozen=True, slots=True)
class AuditData:
    crates: tuple[Crate, ...]


def _header(read_at: Callable[[int, int], bytes], size: int) -> tuple[str, bool, int, int, int, int] | None:
    """(byte order, 64-bit, shoff, shentsize, shnum, shstrndx) of an ELF file, or None."""
    ident = read_at(0, 64)
    if len(ident) < 52 or not ident.startswith(b"\x7fELF") or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        return None
    order = "<" if ident[5] == 1 else ">"
    if ident[4] == 2:
        if len(ident) < 64:
            return None
        shoff = struct.unpack_from(order + "Q", ident, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", ident, 0x3A)
        wide, need = True, 64
    else:
        shoff = struct.unpack_from(order + "I", ident, 0x20)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", ident, 0x2E)
        wide, need = False, 40
    if shoff == 0 or shentsize < need or shoff + shentsize > size:
        return None
    if shnum == 0 or shstrndx == 0xFFFF:  # extended numbering: the real values are in section 0
        first = read_at(shoff, shoff + shentsize)
        if len(first) < need:
            return None
        if shnum == 0:
            shnum = struct.unpack_from(order + ("Q" if wide else "I"), first, 32 if wide else 20)[0]
        if shstrndx == 0xFFFF:
            shstrndx = struct.unpack_from(order + "I", first, 40 if wide else 24)[0]
    if shnum > _MAX_SECTIONS or shstrndx >= shnum or shoff + shnum * shentsize > size:
        return None
    return order, wide, shoff, shentsize, shnum, shstrndx


def elf_section(read_at: Callable[[int, int], bytes], size: int, name: bytes = SECTION) -> bytes | None:
    """The bytes of the section called ``name`` in an ELF file of ``size`` bytes, or None."""
    head = _header(read_at, size)
    if head is None:
        return None
    order, wide, shoff, shentsize, shnum, shstrndx = head
    table = read_at(shoff, shoff + shnum * shentsize)
    if len(table) < shnum * shentsize:
        return None

    def entry(i: int) -> tuple[int, int, int, int]:  # name offset, type, file offset, size
        at = i * shentsize
        if wide:
            sh_name, sh_type = struct.unpack_from(order + "II", table, at)
            off, sz = struct.unpack_from(order + "QQ", table, at + 24)
        else:
            sh_name, sh_type = struct.unpack_from(order + "II", table, at)
            off, sz = struct.unpack_from(order + "II", table, at + 16)
        return sh_name, sh_type, off, sz

    _n, _t, str_off, str_size = entry(shstrndx)
    if str_off + str_size > size or str_size > MAX_SECTION:
        return None
    names = read_at(str_off, str_off + str_size)
    for i in range(shnum):
        sh_name, sh_type, off, sz = entry(i)
        if names[sh_name:sh_name + len(name) + 1] != name + b"\x00":
            continue
        if sh_type == _SHT_NOBITS or sz > MAX_SECTION or off + sz > size:
            return None
        return read_at(off, off + sz)
    return None


def _text(value: object, limit: int = 256) -> str:
    return value[:limit] if isinstance(value, str) else ""


def parse_audit_data(compressed: bytes) -> AuditData | None:
    """The crates of a ``.dep-v0`` section, or None (not zlib, over ``MAX_JSON`` decompressed, not the JSON shape)."""
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed[:MAX_SECTION], MAX_JSON)
        if inflater.unconsumed_tail:
            return None
        doc = json.loads(raw)
    except (zlib.error, ValueError, RecursionError, MemoryError):
        return None
    items = doc.get("packages") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return None
    crates: list[Crate] = []
    for item in items[:_MAX_CRATES]:
        if not isinstance(item, dict):
            continue
        name, version = _text(item.get("name")).strip(), _text(item.get("version")).strip()
        if name and version:
            crates.append(Crate(name, version, _text(item.get("source")), _text(item.get("kind")) or "runtime"))
    return AuditData(tuple(crates))
