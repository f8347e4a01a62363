"""A fast reader of the common tar header block: the one ``pathindex.IndexBuilder`` meets for almost every member
of a layer, parsed straight from the 512 bytes instead of through ``tarfile.TarInfo.fromtarfile``.

``plain(buf, pos)`` returns the ``tarfile.TarInfo`` that ``fromtarfile`` makes of the block at ``buf[pos:pos +
512]`` when that block is a member of its own — read by a ``tarfile`` whose ``pax_headers`` are empty, with
offset 0 — and None whenever it is not sure: the caller then uses ``tarfile`` itself. It is sure only of a block
whose

- type is one of ``tarfile``'s plain ones: regular (``0``, NUL, contiguous ``7``), hard link, symlink, character
  or block device, directory, FIFO (never PAX, GNU long name, sparse or an unknown type);
- checksum is the unsigned sum (``tarfile`` also takes the signed one: left to it);
- numeric fields are octal digits between optional spaces, ended by NUL or the field's end, or positive base-256
  (leading ``0o200``), as ``tarfile.nti`` reads them (anything else: left to ``tarfile``).

The fields are set as ``TarInfo.frombuf`` and ``_proc_builtin`` set them (names decoded as UTF-8 with
``surrogateescape``, a type-NUL name ending in ``/`` is a directory, the 155-byte prefix field joined to the name
whatever the magic, as ``tarfile`` does, a directory's trailing slashes removed), with ``offset`` 0 and
``offset_data`` 512; ``next_header`` says where the next header starts. An all-zero block fails the checksum: None.
"""

from __future__ import annotations

import re
import struct
import tarfile
import zlib

__all__ = ["BLOCK", "next_header", "plain"]

BLOCK = 512
_FIELDS = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s")
_PLAIN = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE,
                    tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE))
_ERRORS = "surrogateescape"
# the numbers as tarfile, GNU tar and Go write them (octal, NUL-ended; device numbers may be all NUL): one match
# instead of a parse each; any other form goes through ``_number``
_CANONICAL = re.compile(rb"([0-7]{7})\0([0-7]{7})\0([0-7]{7})\0([0-7]{11})\0([0-7]{11})\0")  # mode … mtime
_DEVICE = re.compile(rb"(?:([0-7]{7})\0|\0{8})(?:([0-7]{7})\0|\0{8})")  # devmajor, devminor


def _number(field: bytes) -> int:
    """``tarfile.nti`` for the forms it is sure of; ValueError for any other."""
    if field[0] == 0o200:
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\0", 1)[0].strip(b" ")
    if digits.isdigit():
        return int(digits, 8)  # ValueError on 8 or 9, as in tarfile
    if digits:
        raise ValueError(digits)
    return 0


def plain(buf: bytes, pos: int = 0) -> tarfile.TarInfo | None:
    """The member whose header block is ``buf[pos:pos + 512]`` (``len(buf) >= pos + 512``), or None: not sure."""
    (name, mode, uid, gid, size, mtime, chksum, kind, linkname, _magic, _version, uname, gname, devmajor,
     devminor, prefix) = _FIELDS.unpack_from(buf, pos)
    if kind not in _PLAIN:
        return None
    try:
        stored = _number(chksum)
        # the unsigned sum with the checksum field read as spaces; adler32's low half is 1 + the sum of its bytes,
        # exact for 256 bytes (at most 65280 < 65521)
        total = (zlib.adler32(buf[pos:pos + 256]) & 0xFFFF) + (zlib.adler32(buf[pos + 256:pos + BLOCK]) & 0xFFFF) \
            - 2 - sum(chksum) + 256
        if stored != total:
            return None
        m = tarfile.TarInfo()
        if (found := _CANONICAL.match(buf, pos + 100)) is not None:
            mode, uid, gid, size, mtime = found.groups()
            m.mode, m.uid, m.gid, m.size, m.mtime = int(mode, 8), int(uid, 8), int(gid, 8), int(size, 8), int(mtime, 8)
        else:
            m.mode, m.uid, m.gid, m.size, m.mtime = map(_number, (mode, uid, gid, size, mtime))
        if (found := _DEVICE.match(buf, pos + 329)) is not None:
            major, minor = found.groups()
            m.devmajor, m.devminor = int(major or b"0", 8), int(minor or b"0", 8)
        else:
            m.devmajor, m.devminor = _number(devmajor), _number(devminor)
    except ValueError:
        return None
    m.chksum = stored
    m.linkname = linkname.split(b"\0", 1)[0].decode("utf-8", _ERRORS)  # tarfile.nts, inlined (as below)
    m.uname = uname.split(b"\0", 1)[0].decode("utf-8", _ERRORS)
    m.gname = gname.split(b"\0", 1)[0].decode("utf-8", _ERRORS)
    text = name.split(b"\0", 1)[0].decode("utf-8", _ERRORS)
    if kind == tarfile.AREGTYPE and text.endswith("/"):
        kind = tarfile.DIRTYPE
    m.type = kind
    if kind == tarfile.DIRTYPE:
        text = text.rstrip("/")
    head = prefix.split(b"\0", 1)[0].decode("utf-8", _ERRORS)
    if head:
        text = head + "/" + text
        if kind == tarfile.DIRTYPE:
            text = text.rstrip("/")
    m.name = text
    m.offset = 0
    m.offset_data = BLOCK
    return m


def next_header(m: tarfile.TarInfo) -> int:
    """Where the header after ``plain``'s member starts: its data (regular files only) rounded up to blocks."""
    if m.type in tarfile.REGULAR_TYPES:
        return BLOCK + -(-m.size // BLOCK) * BLOCK
    return BLOCK
