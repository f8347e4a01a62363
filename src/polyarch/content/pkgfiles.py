"""The files of a layer that package scanners read (``attest.layers``, the SBOM), captured from the layer's tar
members as they stream by: one rule and one capture for both readers of a layer — ``pathindex.IndexBuilder``
while a blob is pulled, loaded or read from the store (the result is kept in the blob's path index), and
``attest.layers.scan_layer`` over a ``tarfile`` stream — so the two give the same files by construction.

API::

    capture = Capture()
    capture.begin(member) -> bool      # a tar member (in archive order); True: feed its data next
    capture.feed(data)                 # the member's data bytes (exactly member.size, no padding), in order
    capture.more() -> bool             # False: the rest of this member's data changes nothing (may be skipped)
    capture.end()                      # after the data (also for a member of size 0)
    capture.result() -> PackageFiles | None   # None: this layer needs the scanners' own reader (see below)
    to_json(files) -> dict;  from_json(doc) -> PackageFiles | None    # checksummed; anything odd gives None

Kept: ``etc/os-release`` (or ``usr/lib/os-release``), ``var/lib/dpkg/status`` and ``status.d/*``,
``lib/apk/db/installed``, the rpm database (``rpmdb.sqlite``, ``Packages`` or ``Packages.db`` under
``var/lib/rpm`` or ``usr/lib/sysimage/rpm``), ``*.dist-info/METADATA``, ``*.egg-info/PKG-INFO`` and
``node_modules/[@scope/]NAME/package.json`` (each at most ``MAX_DB`` bytes; ``attest.layers`` reads the same
names: a test keeps the rules equal), and for an executable ELF file the Go build-info blob (``GoBlob``: from
the first ``GO_MAGIC`` on, the bytes ``attest.goinfo.parse_buildinfo`` reads). Whiteouts are listed as deleted
paths and opaque directories; a later entry of a path replaces (or, not being a kept file, removes) an earlier one.
Names with ``..`` components are skipped.

What is not captured makes ``result`` None, and the SBOM then reads the layer itself (``attest.binaries``): an
executable ELF file without Go build info that names a ``.dep-v0`` section (cargo-auditable data, read from the
whole file), and Go build info longer than ``GO_INFO`` bytes (where that reader's chunking decides what it sees).
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CARGO_SECTION", "GO_CAP", "GO_INFO", "GO_MAGIC", "MAX_DB", "MAX_GO_BINARY", "MAX_KEPT", "Capture", "GoBlob",
           "PackageFiles", "from_json", "name_of", "to_json",
           "wanted"]

MAX_DB = 64 << 20
MAX_GO_BINARY = 1 << 30
GO_MAGIC = b"\xff Go buildinf:"  # attest.goinfo.MAGIC (a test keeps them equal)
GO_CAP = (1 << 20) + 64  # attest.goinfo.MAX_INFO + 64: never reached by a captured blob (GO_INFO)
GO_INFO = 1 << 19  # the longest build-info blob captured (real ones: a few KiB per 100 dependencies)
CARGO_SECTION = b".dep-v0"  # attest.cargo.SECTION (a test keeps them equal)
MAX_KEPT = 64 << 20  # attest.binaries.MAX_KEPT: larger files are not read for cargo data
_OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
_DPKG = "var/lib/dpkg/status"
_DPKG_D = "var/lib/dpkg/status.d/"
_APK = "lib/apk/db/installed"
_RPM = tuple(f"{d}/{f}" for d in ("var/lib/rpm", "usr/lib/sysimage/rpm")
             for f in ("rpmdb.sqlite", "Packages", "Packages.db"))
_VERSION = 1


@dataclass(frozen=True, slots=True)
class GoBlob:
    """A Go binary's build-info bytes, from the magic on (``attest.goinfo.parse_buildinfo`` reads them)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PackageFiles:
    """What one layer holds for the scanners: path → bytes (databases) or ``GoBlob``, in archive order; the paths
    its whiteouts delete and the directories it makes opaque."""

    files: dict[str, bytes | GoBlob] = field(default_factory=dict)
    deleted: tuple[str, ...] = ()
    opaque: tuple[str, ...] = ()


def name_of(raw: str) -> str | None:
    """A member's name as the scanners see it: normalized, relative; None with a ``..`` component."""
    name = posixpath.normpath("/" + raw).lstrip("/")
    if not name or ".." in raw.split("/"):
        return None
    return name


def whiteout(name: str) -> tuple[str, bool] | None:
    """For a whiteout entry's normalized ``name``: ``(directory, True)`` for an opaque marker, ``(deleted path,
    False)`` for ``.wh.NAME``; None for any other entry."""
    base = posixpath.basename(name)
    if not base.startswith(".wh."):
        return None
    parent = posixpath.dirname(name)
    if base == ".wh..wh..opq":
        return parent, True
    return posixpath.join(parent, base[4:]), False


def wanted(name: str) -> bool:
    """A package database or metadata file the scanners read (``name`` normalized, relative)."""
    if name in _OS_RELEASE or name in (_DPKG, _APK) or name in _RPM:
        return True
    if name.startswith(_DPKG_D):
        rest = name[len(_DPKG_D):]
        return "/" not in rest and not rest.endswith((".md5sums", ".list")) and bool(rest)
    base = posixpath.basename(name)
    parent = posixpath.basename(posixpath.dirname(name))
    return (base == "METADATA" and parent.endswith(".dist-info")) or \
        (base == "PKG-INFO" and parent.endswith(".egg-info")) or (base == "package.json" and _npm(name))


def _npm(name: str) -> bool:
    """``…/node_modules/NAME/package.json`` or ``…/node_modules/@SCOPE/NAME/package.json``."""
    parts = name.split("/")
    return (len(parts) >= 3 and parts[-3] == "node_modules" and not parts[-2].startswith("@")) or \
        (len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@"))


def _uvarint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        value |= (data[i] & 0x7F) << shift
        if data[i] < 0x80:
            return value, i + 1
        shift += 7
    return None


def _go_end(blob: bytes) -> int:
    """How much of ``blob`` the build-info parser can read: the 32-byte header and two uvarint-framed strings."""
    if len(blob) < 32 or not blob[15] & 0x2:
        return min(len(blob), 32)
    pos = 32
    for _ in range(2):
        got = _uvarint(blob, pos)
        if got is None:
            return len(blob)
        pos = got[1] + got[0]
        if pos >= len(blob):
            return len(blob)
    return pos


class _GoSearch:
    """Streams an executable's data: ELF magic first, then the first ``GO_MAGIC`` and up to ``GO_CAP`` after it."""

    __slots__ = ("blob", "cargo", "done", "head", "tail")

    def __init__(self) -> None:
        self.head = b""
        self.tail = b""
        self.blob: bytearray | None = None
        self.done = False
        self.cargo = False  # CARGO_SECTION seen before any GO_MAGIC

    def feed(self, data: bytes | memoryview) -> None:
        if self.done:
            return
        if self.blob is not None:
            self.blob += data[:GO_CAP - len(self.blob)]
            self.done = len(self.blob) >= GO_CAP
            return
        chunk = bytes(data)
        if len(self.head) < 4:
            need = 4 - len(self.head)
            self.head += chunk[:need]
            chunk = chunk[need:]
            if len(self.head) < 4:
                return
            if self.head != b"\x7fELF":
                self.done = True
                return
        buf = self.tail + chunk
        at = buf.find(GO_MAGIC)
        if at >= 0:
            self.blob = bytearray(buf[at:at + GO_CAP])
            self.done = len(self.blob) >= GO_CAP
        else:
            self.cargo = self.cargo or CARGO_SECTION in buf
            self.tail = buf[-(len(GO_MAGIC) - 1):]

    def result(self, size: int) -> GoBlob | bool | None:
        """The blob, None (nothing to read), or False (not captured: see the module docstring)."""
        if self.blob is None:
            return False if self.cargo and size <= MAX_KEPT else None
        data = bytes(self.blob)
        end = _go_end(data)
        return GoBlob(data[:end]) if end <= GO_INFO else False


class Capture:
    """Fed a layer's members in order (``begin`` / ``feed`` / ``end``); ``result`` is what they hold for the
    scanners. Memory: the kept files, and one file's bytes while it is read (at most ``MAX_DB``)."""

    def __init__(self) -> None:
        self._files: dict[str, bytes | GoBlob] = {}
        self._deleted: list[str] = []
        self._opaque: list[str] = []
        self._name = ""
        self._size = 0
        self._complete = True
        self._db: bytearray | None = None
        self._go: _GoSearch | None = None

    def begin(self, member: tarfile.TarInfo) -> bool:
        self._db, self._go = None, None
        name = name_of(member.name)
        if name is None:
            return False
        if (wh := whiteout(name)) is not None:
            (self._opaque if wh[1] else self._deleted).append(wh[0])
            return False
        self._files.pop(name, None)  # a later entry of the same path replaces it
        if not member.isreg():
            return False
        self._name, self._size = name, member.size
        if wanted(name):
            if member.size > MAX_DB:
                return False
            self._db = bytearray()
            return True
        if 64 <= member.size <= MAX_GO_BINARY and member.mode & 0o111:
            self._go = _GoSearch()
            return True
        return False

    def feed(self, data: bytes | memoryview) -> None:
        if self._db is not None:
            self._db += data
        elif self._go is not None:
            self._go.feed(data)

    def more(self) -> bool:
        """Whether the current member's remaining data can still change the result (else it may be skipped)."""
        return self._db is not None or (self._go is not None and not self._go.done)

    def end(self) -> None:
        if self._db is not None:
            self._files[self._name] = bytes(self._db)
        elif self._go is not None:
            found = self._go.result(self._size)
            if isinstance(found, GoBlob):
                self._files[self._name] = found
            elif found is False:
                self._complete = False
        self._db, self._go = None, None

    def result(self) -> PackageFiles | None:
        if not self._complete:
            return None
        return PackageFiles(dict(self._files), tuple(self._deleted), tuple(self._opaque))


def _payload(files: PackageFiles) -> list[Any]:
    return [[[p, "g" if isinstance(c, GoBlob) else "d",
              base64.b64encode(c.data if isinstance(c, GoBlob) else c).decode()] for p, c in files.files.items()],
            list(files.deleted), list(files.opaque)]


def to_json(files: PackageFiles) -> dict[str, Any]:
    """A JSON-ready form, with a format version and the sha256 of its payload."""
    body = _payload(files)
    raw = json.dumps(body, separators=(",", ":")).encode()
    return {"v": _VERSION, "p": body, "h": hashlib.sha256(raw).hexdigest()}


def from_json(doc: Any) -> PackageFiles | None:
    """``to_json``'s form back; None for anything else (another version, a wrong type, a checksum mismatch)."""
    try:
        if not isinstance(doc, dict) or doc.get("v") != _VERSION or not isinstance(doc.get("h"), str):
            return None
        body = doc["p"]
        raw = json.dumps(body, separators=(",", ":")).encode()
        if hashlib.sha256(raw).hexdigest() != doc["h"]:
            return None
        entries, deleted, opaque = body
        files: dict[str, bytes | GoBlob] = {}
        for path, kind, data in entries:
            if not isinstance(path, str) or kind not in ("d", "g") or not isinstance(data, str):
                return None
            value = base64.b64decode(data, validate=True)
            files[path] = GoBlob(value) if kind == "g" else value
        if not all(isinstance(p, str) for p in (*deleted, *opaque)):
            return None
        return PackageFiles(files, tuple(deleted), tuple(opaque))
    except (ValueError, TypeError, KeyError):
        return None
