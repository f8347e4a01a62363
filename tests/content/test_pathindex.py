"""The streaming path index (content/pathindex.py) equals what tarfile's stream reader gives, fed in any chunking;
on anything it cannot be sure of it gives up (None) rather than differ."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest
import zstandard

from polyarch.content.compression import decompressed
from polyarch.content.pathindex import IndexBuilder, LayerIndex, add_member, decode, encode
from polyarch.content.pkgfiles import Capture


def _reference(blob: bytes) -> LayerIndex:
    """tarfile's stream reader; the package capture fed from ``extractfile`` (all of each member's data)."""
    entries: list = []
    small: dict[str, bytes] = {}
    capture = Capture()
    with tarfile.open(fileobj=decompressed(io.BytesIO(blob)), mode="r|") as tf:
        for m in tf:
            feed = capture.begin(m)
            name = add_member(entries, m)
            f = tf.extractfile(m) if name is not None or feed else None
            data = f.read() if f is not None else b""
            if name is not None:
                small[name] = data
            if feed:
                capture.feed(data)
                capture.end()
    return LayerIndex(tuple(entries), small, capture.result())


def _streamed(blob: bytes, chunk: int) -> LayerIndex | None:
    b = IndexBuilder()
    for i in range(0, len(blob), chunk):
        b.feed(blob[i:i + chunk])
    return b.result()


def _tar(fmt: int, *, end: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **kw: object) -> None:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            for k, v in kw.items():
                setattr(ti, k, v)
            tf.addfile(ti, io.BytesIO(data) if data else None)
        add("etc", tarfile.DIRTYPE, mode=0o755)
        add("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", mode=0o644)
        add("etc/group", data=b"", mode=0o644)
        add("usr/" + "long-directory-name/" * 12 + "file.txt", data=b"x" * 7000, uid=5, gid=6)
        add("usr/lnk", tarfile.SYMTYPE, linkname="/" + "t" * 150)
        add("usr/hard", tarfile.LNKTYPE, linkname="etc/passwd")
        add("usr/ünïcode-名前", data=b"y" * 513, mode=0o4755)
        add("var/.wh.gone")
        add("opt/.wh..wh..opq")
        add("./dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("big", data=bytes(range(256)) * 4096)
    data = buf.getvalue()
    if not end:
        data = data[: len(data) - 1024]
        while data.endswith(b"\0" * 512):
            data = data[:-512]
    return data


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("compress", ["none", "gzip", "gzip2", "zstd"])
def test_streamed_index_equals_tarfile(fmt: int, compress: str) -> None:
    raw = _tar(fmt)
    blob = {"none": raw, "gzip": gzip.compress(raw, mtime=0),
            "gzip2": gzip.compress(raw[:5000], mtime=0) + gzip.compress(raw[5000:], mtime=0),
            "zstd": zstandard.ZstdCompressor().compress(raw)}[compress]
    ref = _reference(blob)
    assert ref.small["etc/passwd"].startswith(b"root:")
    assert any(p.startswith("usr/long-directory-name/") for p, _i, _o in ref.entries)
    for chunk in (1, 7, 512, 4096, 1 << 20):
        assert _streamed(blob, chunk) == ref, chunk
    assert decode(encode(ref)) == ref


def test_archive_without_end_blocks() -> None:
    blob = _tar(tarfile.PAX_FORMAT, end=False)
    assert _streamed(blob, 999) == _reference(blob)


@pytest.mark.parametrize("damage", ["truncated", "corrupt-gzip", "bad-header", "short"])
def test_gives_up_rather_than_differ(damage: str) -> None:
    raw = _tar(tarfile.PAX_FORMAT)
    blob = gzip.compress(raw, mtime=0)
    if damage == "truncated":
        blob = blob[: len(blob) // 2]
    elif damage == "corrupt-gzip":
        blob = blob[:40] + bytes(b ^ 0xFF for b in blob[40:80]) + blob[80:]
    elif damage == "bad-header":
        blob = gzip.compress(b"\1" * 512 + raw, mtime=0)
    else:
        blob = b"\x1f"
    assert _streamed(blob, 4096) is None


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes, /) -> int:
        self.data += data
        return len(data)

    def commit(self, expected=None, size=None):  # type: ignore[no-untyped-def]
        from polyarch.digest import Digest

        got = Digest.of(bytes(self.data))
        if expected is not None and got != expected:
            raise ValueError("mismatch")
        return got, len(self.data)

    def abort(self) -> None:
        self.data = bytearray()


def test_indexing_sink_records_only_committed_blobs() -> None:
    from polyarch.content.pathindex import IndexingSink, PendingIndexes
    from polyarch.digest import Digest

    blob = gzip.compress(_tar(tarfile.PAX_FORMAT), mtime=0)
    store = PendingIndexes()
    sink = IndexingSink(_Sink(), store)
    for i in range(0, len(blob), 1000):
        sink.write(blob[i:i + 1000])
    digest, _ = sink.commit(Digest.of(blob), len(blob))
    got = store.layer_index(str(digest))
    assert got is not None and decode(got) == _reference(blob)

    other = PendingIndexes()
    sink = IndexingSink(_Sink(), other)
    sink.write(blob[:5000])
    sink.abort()
    with pytest.raises(ValueError):
        bad = IndexingSink(_Sink(), other)
        bad.write(blob)
        bad.commit(Digest.of(b"something else"))
    assert other.layer_index(str(Digest.of(blob))) is None
    assert not bad._thread.is_alive() and not sink._thread.is_alive()
