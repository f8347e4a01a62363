"""One streamed pass over an executable file: its Go build info or its cargo-auditable dependency list.

API::

    read_binary(f, size) -> BuildInfo | AuditData | None     # f: the file's data stream (read once, forward only)

Only ELF files are read. The data is streamed in 1 MiB chunks looking for Go's build info magic (the blob after it
is read, at most ``goinfo.MAX_INFO`` bytes, and the rest of the file is left unread). A file of at most
``MAX_KEPT`` bytes is copied into one buffer of its size while it streams (one allocation per file, freed on
return: nothing kept between files), so that its section header table (at the end) can locate the ``.dep-v0``
section afterwards; larger files are only searched for Go build info.
"""

from __future__ import annotations

from typing import IO

from .cargo import AuditData, elf_section, parse_audit_data
from .goinfo import MAGIC, MAX_INFO, BuildInfo, parse_buildinfo

__all__ = ["MAX_KEPT", "read_binary"]

MAX_KEPT = 64 << 20
_CHUNK = 1 << 20
_ELF = b"\x7fELF"


def _go_stream(f: IO[bytes]) -> BuildInfo | None:
    """Go build info of a file too large to hold: chunks searched for the magic, nothing kept."""
    tail = b""
    while chunk := f.read(_CHUNK):
        buf = tail + chunk
        at = buf.find(MAGIC)
        if at >= 0:
            blob = buf[at:]
            while len(blob) < MAX_INFO and (more := f.read(_CHUNK)):
                blob += more
            return parse_buildinfo(blob[:MAX_INFO + 64])
        tail = buf[-(len(MAGIC) - 1):]
    return None


def read_binary(f: IO[bytes], size: int) -> BuildInfo | AuditData | None:
    """Go build info or cargo-auditable data of the ELF file streaming from ``f`` (``size`` bytes), or None."""
    if f.read(len(_ELF)) != _ELF:
        return None
    if size > MAX_KEPT:
        return _go_stream(f)
    buf = bytearray(max(size, len(_ELF)))
    buf[:len(_ELF)] = _ELF
    pos = len(_ELF)
    while pos < size and (chunk := f.read(min(_CHUNK, size - pos))):
        buf[pos:pos + len(chunk)] = chunk
        at = buf.find(MAGIC, max(0, pos - len(MAGIC) + 1), pos + len(chunk))
        pos += len(chunk)
        if at >= 0:
            end = min(size, at + MAX_INFO + 64)
            while pos < end and (more := f.read(end - pos)):
                buf[pos:pos + len(more)] = more
                pos += len(more)
            return parse_buildinfo(bytes(buf[at:pos]))
    section = elf_section(lambda start, stop: bytes(buf[start:min(stop, pos)]), pos)
    return parse_audit_data(section) if section is not None else None
