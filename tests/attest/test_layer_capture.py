"""The SBOM's stored per-layer captures (content/pkgfiles.py, kept in the layer's path index): the same packages and
the same SPDX bytes as scanning the layers, a second SBOM reads no layer, and a stored capture that does not check
out (garbled, tampered, another version) is ignored and the layer read again; layers the capture leaves out
(cargo-auditable binaries, odd tar headers) are read by the scanners' own reader."""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import tarfile
import zlib
from collections.abc import Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyarch.attest.binaries import MAX_KEPT
from polyarch.attest.cargo import SECTION
from polyarch.attest.goinfo import MAGIC, MAX_INFO
from polyarch.attest.layers import LayerCache, from_captured, image_packages, scan_layer
from polyarch.attest.sbom import spdx_document
from polyarch.content.compression import decompressed
from polyarch.content.pathindex import IndexBuilder, PendingIndexes, decode, encode
from polyarch.content.pkgfiles import CARGO_SECTION, GO_CAP, GO_MAGIC, from_json, to_json
from polyarch.content.pkgfiles import MAX_KEPT as CAPTURE_KEPT
from polyarch.digest import Digest
from polyarch.oci.spec import Descriptor, Manifest

STATUS = b"Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: arm64\n\n" \
         b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13\nArchitecture: arm64\n"
UPPER_STATUS = STATUS + b"\nPackage: curl\nStatus: install ok installed\nVersion: 7.88\nArchitecture: arm64\n"


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _go_elf(modinfo: str, pad: int = 3000) -> bytes:
    sentinel = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6"
    info = sentinel + modinfo.encode() + b"\n" + sentinel[:15] + b"\x00"
    blob = MAGIC + bytes([8, 2]) + b"\0" * 16 + _uvarint(8) + b"go1.22.1" + _uvarint(len(info)) + info
    return b"\x7fELF" + b"\1" * pad + blob + b"\0" * 5000


GO = _go_elf("path\tex.com/app\nmod\tex.com\tv1.4.0\th1:a=\ndep\tgolang.org/x/sys\tv0.19.0\th1:b=\n")


def _layer(entries: list[tuple[str, bytes, int] | tuple[str, bytes, int, bytes]], fmt: int = tarfile.PAX_FORMAT
           ) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data, mode, *kind in entries:
            ti = tarfile.TarInfo(name)
            ti.type = kind[0] if kind else tarfile.REGTYPE
            ti.size, ti.mode = (len(data) if ti.type == tarfile.REGTYPE else 0), mode
            tar.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return gzip.compress(buf.getvalue(), mtime=0)


LOWER = _layer([("etc/os-release", b"ID=debian\nVERSION_ID=12\n", 0o644), ("var/lib/dpkg/status", STATUS, 0o644),
                ("usr/local/bin/app", GO, 0o755), ("usr/bin/plain", b"\x7fELF" + b"\0" * 200, 0o755),
                ("usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA",
                 b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nLicense: Apache-2.0\n", 0o644),
                ("app/node_modules/@scope/left-pad/package.json",
                 b'{"name": "@scope/left-pad", "version": "1.3.0", "license": "MIT"}', 0o644),
                ("lib/apk/db/installed", b"P:musl\nV:1.2.4-r2\nA:aarch64\nL:MIT\n", 0o644),
                ("var/lib/dpkg/status", STATUS + b"\n", 0o644),  # a later entry of the same path replaces it
                ("a/../etc/escape/METADATA", b"Name: bad\nVersion: 1\n", 0o644)])
UPPER = _layer([("./var/lib/dpkg/status", UPPER_STATUS, 0o644), ("usr/local/bin/.wh.app", b"", 0o644),
                ("usr/lib/python3/.wh..wh..opq", b"", 0o644), ("usr/bin/go2", GO, 0o700),
                ("usr/bin/go2", b"", 0o755, tarfile.SYMTYPE), ("usr/bin/go3", GO, 0o755)])


class _Source:
    """A ContentSource over blobs in memory; counts the blobs opened."""

    def __init__(self, blobs: list[bytes]) -> None:
        self.blobs = {str(Digest.of(b)): b for b in blobs}
        self.opened = 0

    @contextlib.contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[io.BytesIO]:
        self.opened += 1
        yield io.BytesIO(self.blobs[str(desc.digest)])


def _desc(blob: bytes) -> Descriptor:
    return Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", Digest.of(blob), len(blob))


def _manifest(blobs: list[bytes]) -> Manifest:
    config = Descriptor("application/vnd.oci.image.config.v1+json", Digest.of(b"{}"), 2)
    return Manifest(config=config, layers=tuple(_desc(b) for b in blobs))


def _sbom(blobs: list[bytes], indexes: PendingIndexes | None, source: _Source | None = None) -> bytes:
    source = source or _Source(blobs)
    diff_ids = [Digest.of(gzip.decompress(b)) for b in blobs]
    pkgs = image_packages(source, _manifest(blobs), diff_ids, LayerCache(), indexes)  # type: ignore[arg-type]
    doc = spdx_document(pkgs, image_name="app:1", manifest_digest=Digest.of(b"m"), platform="linux/arm64",
                        created="2023-11-14T22:13:20Z", tool="polyarch-test")
    return json.dumps(doc, sort_keys=True).encode()


def _captured(blob: bytes):  # type: ignore[no-untyped-def]
    b = IndexBuilder()
    for i in range(0, len(blob), 777):
        b.feed(blob[i:i + 777])
    index = b.result()
    assert index is not None
    return index


def test_constants_agree_with_the_scanners() -> None:
    assert GO_MAGIC == MAGIC and GO_CAP == MAX_INFO + 64 and CARGO_SECTION == SECTION and CAPTURE_KEPT == MAX_KEPT


def test_capture_equals_scan_and_sbom_bytes_are_identical() -> None:
    for blob in (LOWER, UPPER):
        index = _captured(blob)
        assert index.packages is not None
        assert from_captured(index.packages) == scan_layer(decompressed(io.BytesIO(blob)))
    plain = _sbom([LOWER, UPPER], None)
    assert b"curl" in plain and b"left-pad" in plain and b"golang.org/x/sys" in plain and b"musl" in plain
    indexes = PendingIndexes()
    assert _sbom([LOWER, UPPER], indexes) == plain  # read once through IndexBuilder, captures kept
    assert all(decode(indexes.layer_index(str(Digest.of(b))) or b"") is not None for b in (LOWER, UPPER))
    again = _Source([LOWER, UPPER])
    assert _sbom([LOWER, UPPER], indexes, again) == plain and again.opened == 0  # no layer read again


def _tamper(data: bytes, how: str) -> bytes:
    doc = json.loads(zlib.decompress(data))
    if how == "content":
        entries = doc["p"]["p"][0]
        entries[0][2] = base64.b64encode(b"Package: evil\nVersion: 6.6.6\n").decode()
    elif how == "version":
        doc["p"]["v"] = 99
    elif how == "shape":
        doc["p"]["p"] = {"x": 1}
        doc["p"]["h"] = "0" * 64
    return zlib.compress(json.dumps(doc).encode())


def test_garbled_or_tampered_capture_is_ignored_and_the_layer_read_again() -> None:
    plain = _sbom([LOWER], None)
    good = PendingIndexes()
    _sbom([LOWER], good)
    stored = good.layer_index(str(Digest.of(LOWER)))
    assert stored is not None
    for bad in (stored[:-7] + b"garbage", stored[: len(stored) // 2], b"\x00" * 40, _tamper(stored, "content"),
                _tamper(stored, "version"), _tamper(stored, "shape")):
        indexes = PendingIndexes()
        indexes.put_layer_index(str(Digest.of(LOWER)), bad)
        source = _Source([LOWER])
        assert _sbom([LOWER], indexes, source) == plain and source.opened == 1
        assert b"evil" not in plain


def test_layers_the_capture_leaves_out_are_read_by_the_scanners() -> None:
    cargo_like = b"\x7fELF" + b"\0" * 100 + CARGO_SECTION + b"\0" * 100  # no Go build info: cargo data may follow
    long_header = "usr/lib/" + "d" * 9000 + "/METADATA"  # PAX headers beyond the capture's bound
    for blob in (_layer([("usr/bin/rusty", cargo_like, 0o755), ("var/lib/dpkg/status", STATUS, 0o644)]),
                 _layer([(long_header, b"Name: x\nVersion: 1\n", 0o644), ("var/lib/dpkg/status", STATUS, 0o644)])):
        index = _captured(blob)
        assert index.packages is None and index.entries  # the path index itself is still made
        indexes = PendingIndexes()
        source = _Source([blob])
        assert _sbom([blob], indexes, source) == _sbom([blob], None) and source.opened == 2


def test_stored_capture_round_trip() -> None:
    index = _captured(LOWER)
    assert index.packages is not None
    assert decode(encode(index)) == index
    assert from_json(to_json(index.packages)) == index.packages
    assert from_json({"v": 1, "p": [[], [], []], "h": "x"}) is None and from_json([1]) is None


_NAMES = st.sampled_from(["var/lib/dpkg/status", "var/lib/dpkg/status.d/base", "etc/os-release", "lib/apk/db/installed",
                          "usr/bin/app", "usr/bin/.wh.app", "usr/.wh..wh..opq", "x/node_modules/p/package.json",
                          "./usr/lib/p-1.dist-info/METADATA", "a/../var/lib/dpkg/status", "/etc/os-release",
                          "var/lib/rpm/rpmdb.sqlite", "usr/bin/go"])
_DATA = st.one_of(st.binary(max_size=300), st.just(GO), st.just(GO[:3100]), st.just(b"\x7fELF" + MAGIC * 3),
                  st.just(STATUS), st.builds(lambda a, b: a + MAGIC + b, st.binary(max_size=40), st.binary(max_size=80)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_NAMES, _DATA, st.sampled_from([0o644, 0o755]),
                          st.sampled_from([tarfile.REGTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.DIRTYPE])),
                max_size=8),
       st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]))
def test_capture_equals_scan_for_any_layer(entries: list[tuple[str, bytes, int, bytes]], fmt: int) -> None:
    blob = _layer(entries, fmt)  # type: ignore[arg-type]
    index = _captured(blob)
    want = scan_layer(decompressed(io.BytesIO(blob)))
    if index.packages is not None:
        assert from_captured(index.packages) == want
    assert _sbom([blob], PendingIndexes()) == _sbom([blob], None)
