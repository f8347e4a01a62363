"""content/tarheader.plain reads a header block exactly as tarfile.TarInfo.fromtarfile does, or says it is not sure
(None); it is sure of every block tarfile itself writes for a plain member."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from polyarch.content import tarheader

_SLOTS = [s for s in tarfile.TarInfo.__slots__ if s not in ("tarfile", "_sparse_structs")]


class _File:
    """What fromtarfile reads from a TarFile: the blocks, empty global PAX headers, UTF-8 + surrogateescape."""

    encoding = "utf-8"
    errors = "surrogateescape"

    def __init__(self, data: bytes) -> None:
        self.fileobj = io.BytesIO(data)
        self.pax_headers: dict[str, str] = {}
        self.offset = 0


def _tarfile(block: bytes) -> tuple[tarfile.TarInfo, int] | None:
    f = _File(block + bytes(4096))
    try:
        m = tarfile.TarInfo.fromtarfile(f)  # type: ignore[arg-type]
    except (tarfile.HeaderError, ValueError):
        return None
    return m, f.offset


def _same(block: bytes, pos: int = 0) -> tarfile.TarInfo | None:
    got = tarheader.plain(block, pos)
    if got is None:
        return None
    ref = _tarfile(block[pos:pos + 512])
    assert ref is not None, block
    m, end = ref
    assert [getattr(got, s, None) for s in _SLOTS] == [getattr(m, s, None) for s in _SLOTS]
    assert tarheader.next_header(got) == end
    return got


def _with_checksum(block: bytearray, kind: str = "unsigned") -> bytes:
    block[148:156] = b" " * 8
    total = sum(block) if kind == "unsigned" else sum(b - 256 if b > 127 else b for b in block)
    block[148:156] = b"%06o\0 " % (total & 0o777777) if total >= 0 else b"%06o\0 " % 0
    return bytes(block)


_NUMBERS = {"mode": (100, 8), "uid": (108, 8), "gid": (116, 8), "size": (124, 12), "mtime": (136, 12),
            "devmajor": (329, 8), "devminor": (337, 8)}

_octal = st.one_of(
    st.integers(0, 0o7777777).map(lambda n: b"%07o\0" % n),
    st.integers(0, 0o777).map(lambda n: b"  %o \0" % n),
    st.integers(0, 0o7777).map(lambda n: b"%o" % n),
)
_field = st.one_of(
    _octal,
    st.sampled_from([b"", b"\0", b"   ", b" \0", b"\t7\0", b"8", b"19\0", b"+7", b"0o7", b"1_2", b"7 7", b"\xff",
                     b"\x80\0\0\0\0\0\1\2", b"\xff\xff\xff\xff\xff\xff\xff\xfe", b"7\0garbage", b"\x1c7"]),
    st.binary(max_size=12),
)


@st.composite
def _blocks(draw: st.DrawFn) -> bytes:
    block = bytearray(512)
    name = draw(st.one_of(st.binary(max_size=100), st.text(max_size=40).map(lambda t: t.encode()[:100])))
    block[0:len(name)] = name
    block[156] = ord(draw(st.sampled_from([*b"0\0001234567xgLKSAV", 0xFF])).to_bytes(1, "big"))
    link = draw(st.binary(max_size=100))
    block[157:157 + len(link)] = link
    block[257:265] = draw(st.sampled_from([b"ustar\x0000", b"ustar  \0", b"\0" * 8, b"garbage!"]))
    for start, end in ((265, 297), (297, 329), (345, 500)):
        text = draw(st.one_of(st.just(b""), st.binary(max_size=end - start), st.just(b"usr/lib/")))
        block[start:start + len(text)] = text
    clean = draw(st.booleans())  # half of the blocks with numbers in the forms plain is sure of
    for start, width in _NUMBERS.values():
        value = draw(_octal if clean else _field)[:width]
        block[start:start + width] = value + bytes(width - len(value))
    return _with_checksum(block, draw(st.sampled_from(["unsigned", "unsigned", "signed"])))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_blocks(), st.binary(max_size=700))
@example(bytes(512), b"")
def test_plain_reads_what_tarfile_reads(block: bytes, before: bytes) -> None:
    _same(before + block, len(before))


def _written(fmt: int, **kw: object) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        ti = tarfile.TarInfo(str(kw.pop("name")))
        for k, v in kw.items():
            setattr(ti, k, v)
        tf.addfile(ti, io.BytesIO(b"x" * ti.size) if ti.size else None)
    return buf.getvalue()[:512]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT]),
       st.sampled_from([tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
                        tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE]),
       st.lists(st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1,
                        max_size=30), min_size=1, max_size=6).map("/".join).filter(lambda n: len(n.encode()) <= 90),
       st.integers(0, 0o7777), st.integers(0, 0o7777777), st.integers(0, 3000), st.booleans())
def test_plain_is_sure_of_what_tarfile_writes(fmt: int, kind: bytes, name: str, mode: int, uid: int, size: int,
                                              slash: bool) -> None:
    if kind == tarfile.AREGTYPE and slash:
        name += "/"
    block = _written(fmt, name=name, type=kind, mode=mode, uid=uid, gid=uid // 3, linkname="t/" + name,
                     size=size if kind in tarfile.REGULAR_TYPES else 0)
    assert _same(block) is not None


def test_prefix_field_and_base256() -> None:
    name = "usr/" + "d" * 120 + "/file.txt"  # ustar: 'usr/ddd…' in the prefix field, 'file.txt' in the name
    block = _written(tarfile.USTAR_FORMAT, name=name, size=700)
    assert block[345:349] == b"usr/"
    m = _same(block)
    assert m is not None and m.name == name and tarheader.next_header(m) == 512 + 1024
    big = _written(tarfile.GNU_FORMAT, name="f", uid=1 << 40, size=5)
    assert big[108] == 0o200
    m = _same(big)
    assert m is not None and m.uid == 1 << 40


@pytest.mark.parametrize("change", ["signed-checksum", "bad-checksum", "pax", "longname", "sparse", "negative",
                                    "tab", "zero"])
def test_not_sure_leaves_it_to_tarfile(change: str) -> None:
    block = bytearray(_written(tarfile.USTAR_FORMAT, name="é" * 10, size=3))
    if change == "signed-checksum":
        block = bytearray(_with_checksum(block, "signed"))
    elif change == "bad-checksum":
        block[148] ^= 1
    elif change in ("pax", "longname", "sparse"):
        block[156] = {"pax": ord("x"), "longname": ord("L"), "sparse": ord("S")}[change]
        block = bytearray(_with_checksum(block))
    elif change == "negative":
        block[124:136] = b"\xff" * 12
        block = bytearray(_with_checksum(block))
    elif change == "tab":
        block[100:108] = b"\t644\0\0\0\0"
        block = bytearray(_with_checksum(block))
    else:
        block = bytearray(512)
    assert tarheader.plain(bytes(block)) is None
