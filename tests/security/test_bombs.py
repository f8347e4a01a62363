"""RELIABILITY T9 and issue 13 items 6 and 7 through ``polyarch run``: entry bombs, oversized PAX headers and
sparse files that would expand on disk — each ends with one clear error (or a bounded result), in bounded time
and memory, with nothing left behind and the sentinel untouched."""

from __future__ import annotations

import hashlib
import os
import tarfile
import zlib
from collections.abc import Iterable

import pytest

from tests.conftest import BASE_NAME
from tests.security.conftest import HOSTILE_NAME, PLATFORM, World, assert_clean_failure
from tests.security.hostile import Entry, HostileImage, layer_tar

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _gzip_stream(chunks: Iterable[bytes]) -> tuple[bytes, str]:
    """(gzip of the concatenated chunks, sha256 diff_id of the uncompressed stream), never holding it whole."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    h = hashlib.sha256()
    out = []
    for c in chunks:
        h.update(c)
        out.append(comp.compress(c))
    out.append(comp.flush())
    return b"".join(out), "sha256:" + h.hexdigest()


def _load_gzipped(world: World, chunks: Iterable[bytes]) -> str:
    return world.load(HostileImage([], base=world.base, gzipped=[_gzip_stream(chunks)]))


def _after(world: World) -> None:
    assert world.names() == {BASE_NAME, HOSTILE_NAME}
    left = {k: v for k, v in world.leftovers().items() if v}
    assert not left, f"left behind: {left}"


def test_t9_million_entries(world: World) -> None:
    """10^6 entries (the same directory header again and again) in a ~1 MB gzip layer: the entry limit stops it
    within 60 s."""
    ti = tarfile.TarInfo("d/")
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
    header = ti.tobuf(tarfile.USTAR_FORMAT)
    block = header * 10_000
    name = _load_gzipped(world, [*[block] * 100, b"\0" * 1024])
    proc, elapsed, rss = world.cli_measured("run", "--platform", PLATFORM, name, "true", timeout=300)
    assert_clean_failure(proc)
    assert "entries" in proc.stderr
    assert elapsed < 60, f"{elapsed:.0f} s to refuse 10^6 entries"
    # (~350 MiB measured here, once 556 MiB under load: the 500,000 entries before the limit are tracked)
    assert rss < 768 << 20, f"peak RSS {rss >> 20} MiB"
    _after(world)


def test_item6_huge_pax_header(world: World) -> None:
    """A 256 MiB PAX header (``comment``) before a small file: refused without reading it whole."""
    size = 256 << 20
    head = b"%d comment=" % size
    ti = tarfile.TarInfo("././@PaxHeader")
    ti.type, ti.size, ti.mode = tarfile.XHDTYPE, size, 0o644

    def chunks() -> Iterable[bytes]:
        yield ti.tobuf(tarfile.USTAR_FORMAT) + head
        left = size - len(head) - 1
        while left:
            n = min(left, 1 << 20)
            yield b"a" * n
            left -= n
        yield b"\n"  # (size is a multiple of 512: no padding)
        yield layer_tar([Entry("after", data=b"x")], fmt=tarfile.USTAR_FORMAT)

    name = _load_gzipped(world, chunks())
    proc, _, rss = world.cli_measured("run", "--platform", PLATFORM, name, "true", timeout=300)
    assert_clean_failure(proc)
    assert rss < 200 << 20, f"peak RSS {rss >> 20} MiB for a 256 MiB PAX header"
    _after(world)


def test_item7_sparse_file_does_not_fill_the_disk(world: World) -> None:
    """A GNU sparse entry of 2 GiB holding 512 bytes of data: refused, or written with holes (a few blocks on
    disk), never 2 GiB of zeros."""
    size = 2 << 30
    layer = layer_tar([Entry("sparse", "sparse", data=b"s" * 512, size=size)])
    name = world.load(HostileImage([layer], base=world.base))
    (world.ctx / "Dockerfile").write_text(f"FROM {name}\n")
    proc, elapsed, _ = world.cli_measured("build", str(world.ctx), "--progress", "plain", "--platform", PLATFORM,
                                          "-o", f"type=local,dest={world.out}", timeout=300)
    if proc.returncode != 0:
        assert_clean_failure(proc)
    else:
        st = os.stat(world.out / "sparse")
        assert st.st_size == size
        assert st.st_blocks * 512 < 16 << 20, f"{st.st_blocks * 512 >> 20} MiB on disk for 512 bytes of data"
        with open(world.out / "sparse", "rb") as f:
            assert f.read(513) == b"s" * 512 + b"\0"
    assert elapsed < 30, f"{elapsed:.0f} s"
