"""Over generated layer streams — every member kind, names split into the ustar prefix, long names (PAX, GNU),
PAX and global headers, base-256 numbers, odd sizes, then truncated or with header bytes corrupted (checksums
fixed or not), compressed or not, fed in random chunks — ``IndexBuilder`` with its fast header path gives exactly
what it gives with every header read by ``tarfile`` (give-ups included), and when it gives an index, that index is
what ``tarfile``'s own stream reader reads (``test_pathindex._reference``)."""

from __future__ import annotations

import gzip
import io
import tarfile
import threading
from unittest import mock

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyarch.content import tarheader
from polyarch.content.pathindex import IndexBuilder, LayerIndex
from polyarch.errors import PolyarchError

from .test_pathindex import _reference

_KINDS = [tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
          tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE]
_segment = st.one_of(st.sampled_from(["etc", "passwd", "group", "usr", "lib", ".wh.gone", ".wh..wh..opq", "..", ".",
                                      "node_modules", "package.json", "dpkg", "status", "x.dist-info", "METADATA"]),
                     st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1,
                             max_size=70))
_name = st.one_of(st.sampled_from(["etc/passwd", "etc/group", "var/lib/dpkg/status", "etc/os-release", "./etc/passwd",
                                   "/abs/path", "d/"]),
                  st.lists(_segment, min_size=1, max_size=6).map("/".join))
_data = st.one_of(st.binary(max_size=1500), st.sampled_from([b"", b"root:x:0:0::/root:/bin/sh\n",
                                                             b"\x7fELF" + b"\0" * 100 + b"\xff Go buildinf:" + bytes(60),
                                                             b"Package: a\nVersion: 1\n\n"]))
_member = st.fixed_dictionaries({
    "name": _name, "kind": st.sampled_from(_KINDS), "data": _data, "mode": st.integers(0, 0o7777),
    "uid": st.one_of(st.integers(0, 70000), st.integers(0, 1 << 40)), "gid": st.integers(0, 3000),
    "mtime": st.one_of(st.integers(0, 1 << 33), st.floats(0, 1e9)), "linkname": _name,
    "pax": st.dictionaries(st.sampled_from(["comment", "mtime", "atime", "SCHILY.xattr.user.x", "path", "uname"]),
                           st.text(max_size=40), max_size=2),
})


def _archive(fmt: int, members: list[dict], global_pax: dict[str, str]) -> tuple[bytes, int, int]:
    """The archive, how many members it holds, and where its end-of-archive blocks start."""
    written = 0
    buf = io.BytesIO()
    kw: dict = {"pax_headers": global_pax} if fmt == tarfile.PAX_FORMAT and global_pax else {}
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **kw) as tf:
        for m in members:
            ti = tarfile.TarInfo(m["name"])
            ti.type = m["kind"]
            data = m["data"] if m["kind"] in tarfile.REGULAR_TYPES else b""
            if m["kind"] == tarfile.AREGTYPE and m["name"].endswith("/"):
                data = b""  # read as a directory: with data, tarfile reads that as the next header (given up on)
            ti.size, ti.mode, ti.uid, ti.gid = len(data), m["mode"], m["uid"], m["gid"]
            ti.mtime = m["mtime"] if fmt == tarfile.PAX_FORMAT else int(m["mtime"])
            ti.linkname = m["linkname"] if m["kind"] in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            if fmt == tarfile.PAX_FORMAT:
                ti.pax_headers = {k: v for k, v in m["pax"].items() if k not in ("path", "mtime")}
            try:
                tf.addfile(ti, io.BytesIO(data) if data else None)
            except ValueError:  # a field the format cannot hold (ustar: long names, big numbers)
                continue
            written += 1
        end = tf.offset
    return buf.getvalue(), written, end


def _fix_checksum(raw: bytearray, block: int) -> None:
    at = block * 512
    raw[at + 148:at + 156] = b" " * 8
    raw[at + 148:at + 156] = b"%06o\0 " % (sum(raw[at:at + 512]) & 0o777777)


@st.composite
def _streams(draw: st.DrawFn) -> tuple[bytes, bool, bool, bool]:
    """(blob, whole: the compressed stream is complete, clean: the tar bytes are as written, empty: no tar bytes)"""
    fmt = draw(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.PAX_FORMAT]))
    members = draw(st.lists(_member, max_size=8))
    global_pax = draw(st.dictionaries(st.sampled_from(["comment", "uname", "gid", "uid", "mtime"]),
                                      st.sampled_from(["a", "7", "", "12"]), max_size=3))
    tar, written, end = _archive(fmt, members, global_pax)
    raw = bytearray(tar)
    # a global header needs a member after it (tarfile: "end of file header")
    clean = written > 0 or fmt != tarfile.PAX_FORMAT or not global_pax
    for _ in range(draw(st.integers(0, 3))):  # corrupt header bytes: type, numbers, names, checksums
        blocks = [i for i in range(len(raw) // 512) if raw[i * 512:i * 512 + 512].count(0) != 512]
        if not blocks:
            break
        block = draw(st.sampled_from(blocks))
        offset = draw(st.sampled_from([156, 124, 125, 135, 100, 108, 148, 0, 99, 345, 500, 257]))
        value = draw(st.sampled_from([0, 0x20, 0x30, 0x37, 0x38, 0x80, 0xFF, ord("x"), ord("g"), ord("L"), ord("S"),
                                      ord("5"), ord("/"), ord("\t")]))
        raw[block * 512 + offset] = value
        if draw(st.booleans()):
            _fix_checksum(raw, block)
        clean = False
    if draw(st.booleans()):  # no end-of-archive blocks
        del raw[end:]
    if draw(st.integers(0, 4)) == 0 and raw:
        del raw[draw(st.integers(0, len(raw) - 1)):]
        clean = False
    compress = draw(st.sampled_from(["none", "gzip", "zstd"]))
    blob = {"none": bytes(raw), "gzip": gzip.compress(bytes(raw), mtime=0, compresslevel=1),
            "zstd": zstandard.ZstdCompressor().compress(bytes(raw))}[compress]
    whole = True
    if compress != "none" and draw(st.integers(0, 5)) == 0:
        blob = blob[:draw(st.integers(0, len(blob)))]
        whole = False
    return blob, whole, clean, not raw


def _build(blob: bytes, cuts: list[int]) -> LayerIndex | None:
    b = IndexBuilder()
    start = 0
    for cut in [*sorted({c % (len(blob) + 1) for c in cuts}), len(blob)]:
        b.feed(blob[start:cut])
        start = cut
    return b.result()


def _oracle(blob: bytes) -> LayerIndex | None:
    try:
        return _reference(blob)
    except (tarfile.TarError, EOFError, OSError, ValueError, zstandard.ZstdError, PolyarchError):
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_streams(), st.lists(st.integers(0, 1 << 20), max_size=12))
def test_fast_path_changes_nothing(stream: tuple[bytes, bool, bool, bool], cuts: list[int]) -> None:
    blob, whole, clean, empty = stream
    got = _build(blob, cuts)
    with mock.patch.object(tarheader, "plain", lambda buf, pos=0: None):  # every header through tarfile
        slow = _build(blob, cuts)
    assert got == slow
    if got is not None and whole and not empty:  # (tarfile refuses an empty stream, the builder indexes nothing)
        assert got == _oracle(blob)
    if clean and whole and blob:  # (an empty blob is no layer)
        assert got is not None  # nothing here is beyond the builder: a give-up would hide a difference


def test_plain_members_never_reach_tarfile() -> None:
    """A layer of plain members is indexed by the fast path alone (tarfile's header reader is not called)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(50):
            ti = tarfile.TarInfo(f"usr/{'d' * 110}/f{i}" if i % 2 else f"etc/{i}")
            ti.size = i * 37
            tf.addfile(ti, io.BytesIO(b"z" * ti.size))
    blob = gzip.compress(buf.getvalue(), mtime=0)
    with mock.patch.object(tarfile.TarInfo, "fromtarfile", side_effect=AssertionError("slow path")):
        got = _build(blob, [1000, 5000])
    assert got is not None and got == _reference(blob) and len(got.entries) == 50


@pytest.mark.parametrize("size", [b"-600", b"-1"])
def test_negative_pax_size(size: bytes) -> None:
    """A PAX size below -511 would move tarfile's reader backwards: the builder gives up (it once looped); -1 still
    ends the member where it starts, as tarfile reads it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("f")
        ti.pax_headers = {"size": "7" * len(size)}
        tf.addfile(ti)
        tf.addfile(tarfile.TarInfo("g"))
    raw = buf.getvalue().replace(b"size=" + b"7" * len(size), b"size=" + size)
    got = _build(raw, [])
    if size == b"-600":
        assert got is None
    else:
        assert got is not None and got == _reference(raw) and [e[0] for e in got.entries] == ["f", "g"]


@pytest.mark.parametrize("count", [100, 2000])
def test_many_chained_extended_headers(count: int) -> None:
    """A member behind ``count`` PAX headers: indexed as tarfile reads it, or given up on where tarfile's header
    reader runs out of recursion (it once escaped and stopped the index thread, hanging the pull)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("f")
        ti.pax_headers = {"comment": "x"}
        tf.addfile(ti)
    raw = buf.getvalue()
    raw = raw[:1024] * count + raw
    got = _build(gzip.compress(raw, mtime=0), [4096, 100000])
    if count == 100:  # (headers past 8 KiB: the SBOM reads such a layer itself, no package capture)
        ref = _reference(raw)
        assert got is not None and (got.entries, got.small, got.packages) == (ref.entries, ref.small, None)
    else:
        assert got is None


def test_indexing_sink_survives_a_failing_builder() -> None:
    """Whatever the builder raises, the index thread keeps draining: the transfer completes, without an index."""
    from polyarch.content.pathindex import IndexingSink, PendingIndexes
    from polyarch.digest import Digest

    class _Sink:
        def write(self, data: bytes, /) -> int:
            return len(data)

        def commit(self, expected: Digest | None = None, size: int | None = None) -> tuple[Digest, int]:
            return Digest.of(b"x"), 1

        def abort(self) -> None:
            pass

    store = PendingIndexes()
    sink = IndexingSink(_Sink(), store)

    def transfer() -> None:
        for _ in range(50):  # far more chunks than the queue holds
            sink.write(gzip.compress(b"y" * 1000))
        sink.commit()

    with mock.patch.object(IndexBuilder, "_tar", side_effect=TypeError("boom")):
        t = threading.Thread(target=transfer, daemon=True)
        t.start()
        t.join(30)
    assert not t.is_alive(), "the transfer hangs on a dead index thread"
    assert store.layer_index(str(Digest.of(b"x"))) is None
