"""One streamed pass over an executable file: its Go build info or its cargo-auditable dependency list.

API::

    read_binary(f, size) -> BuildInfo | AuditData | None     # f: the file's data stream (read once, forward only)

Only ELF files are read. The data is streamed in 1 MiB chunks looking for Go's build info magic (the blob after it
is read, at most ``goinfo.MAX_INFO`` bytes, and the rest of the file is left unread). A file of at most
``MAX_KEPT`` bytes is held in memory while it streams, so that its section header table (at the end) can locate
the ``.dep-v0`` section afterwards; larger files are only searched for Go build info.
"""

from __future__ import annotations

import bisect
from typing import IO

from .cargo import AuditData, elf_section, parse_audit_data
from .goinfo import MAGIC, MAX_INFO, BuildInfo, parse_buildinfo

__all__ = ["MAX_KEPT", "read_binary"]

MAX_KEPT = 64 << 20
_CHUNK = 1 << 20


class _Kept:
    """The chunks of a file read so far, addressable by file offset."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.starts: list[int] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.starts.append(self.size)
        self.chunks.append(chunk)
        self.size += len(chunk)

    def read_at(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if start >= end:
            return b""
        i = bisect.bisect_right(self.starts, start) - 1
        parts: list[bytes] = []
        while i < len(self.chunks) and self.starts[i] < end:
            base = self.starts[i]
            parts.append(self.chunks[i][max(0, start - base):end - base])
            i += 1
        return b"".join(parts)


def read_binary(f: IO[bytes], size: int) -> BuildInfo | AuditData | None:
    """Go build info or cargo-auditable data of the ELF file streaming from ``f`` (``size`` bytes), or None."""
    head = f.read(4)
    if head != b"\x7fELF":
        return None
    kept: _Kept | None = _Kept() if size <= MAX_KEPT else None
    if kept is not None:
        kept.add(head)
    tail = b""
    while chunk := f.read(_CHUNK):
        if kept is not None:
            kept.add(chunk)
        buf = tail + chunk
        at = buf.find(MAGIC)
        if at >= 0:
            blob = buf[at:]
            while len(blob) < MAX_INFO and (more := f.read(_CHUNK)):
                blob += more
            return parse_buildinfo(blob[:MAX_INFO + 64])
        tail = buf[-(len(MAGIC) - 1):]
    if kept is None:
        return None
    section = elf_section(kept.read_at, kept.size)
    return parse_audit_data(section) if section is not None else None
