"""Package scanners, Go build info and the streamed layer scan: exact results on real-shaped inputs, and property
tests over generated and hostile texts (truncated, huge, binary): never an exception."""

from __future__ import annotations

import io
import tarfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyarch.attest.goinfo import MAGIC, parse_buildinfo
from polyarch.attest.layers import merge, packages, scan_layer
from polyarch.attest.scanners import (
    Distro,
    apk_installed,
    dpkg_status,
    os_release,
    purl,
    python_metadata,
)

STATUS = b"""Package: libc6
Status: install ok installed
Priority: optional
Version: 2.36-9+deb12u4
Architecture: arm64
Description: GNU C Library
 continuation: Version: 9.9

Package: half-gone
Status: deinstall ok config-files
Version: 1.0

Package: zlib1g
Status: install ok installed
Version: 1:1.2.13.dfsg-1
Architecture: arm64
"""


def test_dpkg_status_installed_packages_with_purls() -> None:
    pkgs = dpkg_status(STATUS, path="/var/lib/dpkg/status", distro=Distro("debian", "12"))
    assert [(p.name, p.version, p.arch) for p in pkgs] == [("libc6", "2.36-9+deb12u4", "arm64"),
                                                           ("zlib1g", "1:1.2.13.dfsg-1", "arm64")]
    assert pkgs[1].purl == "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=arm64&distro=debian-12"


def test_apk_installed() -> None:
    db = b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:aarch64\nL:MIT\n\nP:busybox\nV:1.36.1-r5\nA:aarch64\nL:GPL-2.0-only\n"
    pkgs = apk_installed(db, path="/lib/apk/db/installed", distro=Distro("alpine", "3.19.1"))
    assert [(p.name, p.version, p.license) for p in pkgs] == [("musl", "1.2.4-r2", "MIT"),
                                                              ("busybox", "1.36.1-r5", "GPL-2.0-only")]
    assert pkgs[0].purl == "pkg:apk/alpine/musl@1.2.4-r2?arch=aarch64&distro=alpine-3.19.1"


def test_python_metadata_license_sources() -> None:
    meta = b"Metadata-Version: 2.4\nName: Foo_Bar.baz\nVersion: 1.0\nLicense-Expression: MIT OR Apache-2.0\n\nName: x\n"
    (p,) = python_metadata(meta, path="/x/Foo_Bar.baz-1.0.dist-info/METADATA")
    assert (p.name, p.version, p.license, p.purl) == ("Foo_Bar.baz", "1.0", "MIT OR Apache-2.0",
                                                      "pkg:pypi/foo-bar-baz@1.0")
    classifier = b"Name: a\nVersion: 2\nLicense: UNKNOWN\nClassifier: License :: OSI Approved :: BSD License\n"
    assert python_metadata(classifier, path="/m")[0].license == "BSD License"
    assert python_metadata(b"Name: a\n", path="/m") == []


def test_os_release_and_purl_encoding() -> None:
    assert os_release(b'NAME="Debian"\nID=debian\nVERSION_ID="12"\n') == Distro("debian", "12")
    assert purl("golang", "bar", "v1.2.3+incompatible", namespace="github.com/foo") == \
        "pkg:golang/github.com/foo/bar@v1.2.3%2Bincompatible"


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _go_blob(modinfo: str, version: str = "go1.22.1") -> bytes:
    sentinel = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6"
    info = sentinel + modinfo.encode() + b"\n" + sentinel[:15] + b"\x00"
    header = MAGIC + bytes([8, 2]) + b"\0" * 16
    return header + _uvarint(len(version)) + version.encode() + _uvarint(len(info)) + info


MODINFO = ("path\texample.com/cmd/app\nmod\texample.com\tv1.4.0\th1:abc=\n"
           "dep\tgolang.org/x/sys\tv0.18.0\th1:def=\n=>\tgolang.org/x/sys\tv0.19.0\th1:ghi=\n"
           "dep\tgithub.com/pkg/errors\tv0.9.1\th1:jkl=\nbuild\tGOARCH=arm64")


def test_go_buildinfo_modules_and_replacements() -> None:
    info = parse_buildinfo(_go_blob(MODINFO))
    assert info is not None and info.go_version == "go1.22.1" and info.path == "example.com/cmd/app"
    assert info.main is not None and info.main.version == "v1.4.0"
    assert [(d.path, d.version) for d in info.deps] == [("golang.org/x/sys", "v0.19.0"),
                                                         ("github.com/pkg/errors", "v0.9.1")]
    old_style = MAGIC + bytes([8, 0]) + b"\0" * 16  # pointer format (before Go 1.18): not read
    assert parse_buildinfo(old_style) is None


def _tar(entries: list[tuple[str, bytes, int]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), mode
            tar.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_layer_scan_merge_whiteouts_and_layer_of_each_package() -> None:
    elf = b"\x7fELF" + b"\0" * 5000 + _go_blob(MODINFO) + b"\0" * 100
    lower = scan_layer(_tar([("etc/os-release", b"ID=debian\nVERSION_ID=12\n", 0o644),
                             ("var/lib/dpkg/status", STATUS, 0o644),
                             ("usr/lib/python3/dist-packages/old-1.0.dist-info/METADATA",
                              b"Name: old\nVersion: 1.0\n", 0o644),
                             ("usr/local/bin/app", elf, 0o755)]))
    upper_status = STATUS + b"\nPackage: curl\nStatus: install ok installed\nVersion: 7.88.1\n"
    upper = scan_layer(_tar([("./var/lib/dpkg/status", upper_status, 0o644),
                             ("usr/lib/python3/dist-packages/.wh.old-1.0.dist-info", b"", 0o644),
                             ("../escape/var/lib/dpkg/status", b"Package: evil\nVersion: 1\n", 0o644)]))
    pkgs = packages(merge([("sha256:lower", lower), ("sha256:upper", upper)]))
    by_name = {p.name: p for p in pkgs}
    assert "old" not in by_name and "evil" not in by_name
    assert by_name["libc6"].layer == "sha256:lower" and by_name["curl"].layer == "sha256:upper"
    assert by_name["golang.org/x/sys"].layer == "sha256:lower" and by_name["stdlib"].version == "go1.22.1"
    assert by_name["libc6"].purl.endswith("distro=debian-12")
    opaque = scan_layer(_tar([("usr/local/bin/.wh..wh..opq", b"", 0o644)]))
    after = {p.name for p in packages(merge([("a", lower), ("b", opaque)]))}
    assert "stdlib" not in after and "libc6" in after


texts = st.one_of(
    st.binary(max_size=4096),
    st.text(max_size=2048).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(["Package: a", "Version: 1", "Status: install ok installed", "", " cont", ":",
                              "P:x", "V:", "Name: n", "Version:", "\x00\xff", "License: " + "x" * 200]),
             max_size=200).map(lambda lines: "\n".join(lines).encode()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts, st.integers(min_value=0, max_value=4096))
def test_scanners_never_raise(data: bytes, cut: int) -> None:
    for blob in (data, data[:cut]):
        for pkg in [*dpkg_status(blob, path="/s"), *apk_installed(blob, path="/a"),
                    *python_metadata(blob, path="/m")]:
            assert pkg.name and pkg.version and pkg.purl.startswith("pkg:")
        os_release(blob)
        parse_buildinfo(MAGIC + bytes([8, 2]) + b"\0" * 16 + blob)
        parse_buildinfo(blob)


def test_huge_inputs_are_bounded() -> None:
    many = b"".join(b"Package: p%d\nVersion: 1\n\n" % i for i in range(120_000))
    assert len(dpkg_status(many, path="/s")) == 100_000
    long_value = b"Name: " + b"n" * 1_000_000 + b"\nVersion: 1\n"
    (p,) = python_metadata(long_value, path="/m")
    assert len(p.name) == 4096
    assert parse_buildinfo(MAGIC + bytes([8, 2]) + b"\0" * 16 + b"\xff" * 20) is None  # varint overflow
