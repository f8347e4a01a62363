"""The performance paths give the same results as the plain ones: memory-mapped apply of a file vs a stream,
the ustar header fast path vs the general one, uncompressed layers hashed once, batching boundaries."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from polyarch.content.compression import LayerWriter
from polyarch.content.store import ContentStore
from polyarch.errors import InvalidLayer
from polyarch.worker import tarwriter
from polyarch.worker.apply import apply_layer
from polyarch.worker.diff import LayerOptions, layer_from_dir, write_tree
from tests.worker.conftest import E, make_tar, tree


def _layer() -> bytes:
    return make_tar([
        E("d", kind="dir"), E("d/small", data=b"s" * 700), E("d/big", data=os.urandom((5 << 20) + 3)),
        E("d/" + "long" * 40, data=b"x"), E("d/link", kind="symlink", link="big"),
        E("d/hard", kind="link", link="d/big"), E("d/x", data=b"x", pax=(("SCHILY.xattr.user.a", "b"),)),
        E("d/empty"),
    ])


def test_mapped_file_apply_equals_stream_apply(tmp_path: Path) -> None:
    data = _layer()
    blob = tmp_path / "layer.tar"
    blob.write_bytes(data)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    r1 = apply_layer(io.BytesIO(data), tmp_path / "a")
    with open(blob, "rb") as f:  # a regular file: the memory-mapped path
        r2 = apply_layer(f, tmp_path / "b")
    assert r1 == r2
    assert r1.diff_id.hex == hashlib.sha256(data).hexdigest() and r1.size == len(data)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


@pytest.mark.parametrize("cut", [700, 1000, 3 << 20, (5 << 20) + 1600])
def test_mapped_file_truncated(tmp_path: Path, cut: int) -> None:
    blob = tmp_path / "layer.tar"
    blob.write_bytes(_layer()[:cut])
    (tmp_path / "r").mkdir()
    with open(blob, "rb") as f, pytest.raises(InvalidLayer):
        apply_layer(f, tmp_path / "r")


def test_mapped_file_from_offset(tmp_path: Path) -> None:
    data = _layer()
    blob = tmp_path / "layer.tar"
    blob.write_bytes(b"junk" + data)
    (tmp_path / "r").mkdir()
    with open(blob, "rb") as f:
        f.read(4)
        result = apply_layer(f, tmp_path / "r")
    assert result.diff_id.hex == hashlib.sha256(data).hexdigest()


def test_plain_header_matches_general_path() -> None:
    w = tarwriter.TarWriter(io.BytesIO())
    cases = [(b"a", 0o644, 0, 0, 0, 0), (b"x" * 100, 0o4755, 8**7 - 1, 5, 8**11 - 1, 123),
             (b"dir/", 0o755, 1000, 1000, 12345, 1_700_000_000)]
    for name, mode, uid, gid, size, mtime in cases:
        for flag in (b"0", b"2", b"5"):
            fast = tarwriter._plain_header(name, flag, mode, uid, gid, size, mtime, b"t")
            assert fast is not None
            # a device number forces the general path: the same bytes except devminor and the checksum
            general = w._header(name, flag, mode, uid, gid, size, mtime, b"t", (0, 1), {})
            assert (fast[:148], fast[156:337], fast[345:]) == (general[:148], general[156:337], general[345:])
            info = tarfile.TarInfo.frombuf(fast, "utf-8", "surrogateescape")
            assert (info.name.encode(), info.mode, info.uid, info.size, info.mtime) == \
                (name.rstrip(b"/") if flag == b"5" else name, mode & 0o7777, uid, size, mtime)
    assert tarwriter._plain_header(b"x" * 101, b"0", 0, 0, 0, 0, 0, b"") is None
    assert tarwriter._plain_header(b"\xc3\xa9", b"0", 0, 0, 0, 0, 0, b"") is None
    assert tarwriter._plain_header(b"a", b"0", 0, 8**7, 0, 0, 0, b"") is None


def test_plain_header_cached_fields_match_general_path() -> None:
    # entries sharing (mode, owner, mtime) reuse formatted fields: sizes and names still differ correctly
    w = tarwriter.TarWriter(io.BytesIO())
    for size in (0, 1, 511, 4096, 8**11 - 1, 7, 0):
        for name in (b"a", b"b/c", b"zz" * 40):
            fast = tarwriter._plain_header(name, b"0", 0o100644, 0, 0, size, 1_700_000_000, b"")
            assert fast is not None
            general = w._header(name, b"0", 0o100644, 0, 0, size, 1_700_000_000, b"", (0, 1), {})
            assert (fast[:148], fast[156:337], fast[345:]) == (general[:148], general[156:337], general[345:])
            info = tarfile.TarInfo.frombuf(fast, "utf-8", "surrogateescape")  # checks the checksum
            assert (info.name.encode(), info.size, info.mode) == (name, size, 0o644)


def test_far_future_mtime_goes_to_pax() -> None:
    out = io.BytesIO()
    w = tarwriter.TarWriter(out)
    w.entry("f", "dir", mtime=8**12)  # used to recurse forever building the PAX header's own header
    w.close()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert [m.mtime for m in tf] == [8**12]


def test_uncompressed_layer_digest_is_diff_id(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    data = _layer()
    with LayerWriter(store, "none") as lw:
        for i in range(0, len(data), 3 << 20):  # large writes: hashed on the helper thread
            lw.write(memoryview(data)[i:i + (3 << 20)])
        result = lw.close_layer()
    assert result.descriptor.digest == result.diff_id
    assert result.diff_id.hex == hashlib.sha256(data).hexdigest() and result.uncompressed_size == len(data)
    assert store.read(result.descriptor.digest, limit=len(data)) == data


def test_threaded_layer_equals_plain_tar(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i:02}").write_bytes(os.urandom(i * 70_000))  # crosses the 1 MiB batch and 4 MiB piece sizes
    (src / "big").write_bytes(os.urandom(9 << 20))
    plain = io.BytesIO()
    write_tree(src, plain, epoch=1)
    store = ContentStore(tmp_path / "store")
    for compression in ("none", "gzip"):
        a = layer_from_dir(store, src, LayerOptions(compression=compression, epoch=1))
        b = layer_from_dir(store, src, LayerOptions(compression=compression, epoch=1))
        assert a == b
        assert a.diff_id.hex == hashlib.sha256(plain.getvalue()).hexdigest()
