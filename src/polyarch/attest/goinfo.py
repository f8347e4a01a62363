"""A Go binary's embedded build information (``runtime/debug.BuildInfo``), read from its bytes.

API::

    MAGIC                               # b"\\xff Go buildinf:", 16-byte aligned in the binary's data
    parse_buildinfo(blob) -> BuildInfo | None   # blob: the binary's bytes from the magic on

The Go 1.18+ layout (flag bit 2 set): a 32-byte header (magic, pointer size, flags), then two strings, each a
uvarint length and its bytes: the Go version and the module info. The module info is framed by 16 sentinel
bytes on each side and holds tab-separated lines: ``path``, ``mod PATH VERSION SUM``, ``dep PATH VERSION SUM``,
``=> PATH VERSION SUM`` (replaces the line before), ``build KEY=VALUE``. Older binaries store pointers instead of
strings: they give ``None`` (no module info read), as does any malformed blob. Never raises on any bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAGIC", "MAX_INFO", "BuildInfo", "Module", "parse_buildinfo"]

MAGIC = b"\xff Go buildinf:"
MAX_INFO = 1 << 20  # the module info read at most (real ones: a few KiB per 100 dependencies)
_HEADER = 32
_INLINE = 0x2


@dataclass(frozen=True, slots=True)
class Module:
    path: str
    version: str
    sum: str = ""


@dataclass(frozen=True, slots=True)
class BuildInfo:
    go_version: str
    path: str = ""  # the main package's import path
    main: Module | None = None
    deps: tuple[Module, ...] = ()


def _uvarint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        b = data[i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    return None


def _string(data: bytes, pos: int) -> tuple[str, int] | None:
    got = _uvarint(data, pos)
    if got is None:
        return None
    size, start = got
    if size > MAX_INFO or start + size > len(data):
        return None
    return data[start:start + size].decode("utf-8", errors="replace"), start + size


def _module(fields: list[str]) -> Module | None:
    if len(fields) < 3 or not fields[1]:
        return None
    return Module(fields[1][:1024], fields[2][:256], fields[3][:256] if len(fields) > 3 else "")


def parse_buildinfo(blob: bytes) -> BuildInfo | None:
    """The build info at the start of ``blob`` (which starts with ``MAGIC``), or None."""
    if not blob.startswith(MAGIC) or len(blob) < _HEADER or not blob[15] & _INLINE:
        return None
    version = _string(blob, _HEADER)
    if version is None or not version[0].startswith("go"):
        return None
    info = _string(blob, version[1])
    text = info[0] if info is not None else ""
    if len(text) >= 33 and text[-17] == "\n":
        text = text[16:-16]
    path = ""
    main: Module | None = None
    deps: list[Module] = []
    for line in text.split("\n")[:100_000]:
        fields = line.split("\t")
        if fields[0] == "path" and len(fields) > 1:
            path = fields[1][:1024]
        elif fields[0] == "mod":
            main = _module(fields)
        elif fields[0] == "dep" and (mod := _module(fields)) is not None:
            deps.append(mod)
        elif fields[0] == "=>" and (mod := _module(fields)) is not None:
            if deps:
                deps[-1] = mod
            elif main is not None:
                main = mod
    return BuildInfo(version[0][:64], path, main, tuple(deps))
