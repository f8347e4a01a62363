"""rpm databases (a real rpmdb.sqlite made by Debian's rpm, and the same headers in a real BerkeleyDB hash file made by
db5.3_load and read back by rpm), node_modules package.json, cargo-auditable ELF sections; the layer scan finds each;
property tests over generated, truncated, binary and huge inputs: never an exception, bounded output."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyarch.attest.binaries import read_binary
from polyarch.attest.cargo import MAX_JSON, AuditData, Crate, elf_section, parse_audit_data
from polyarch.attest.layers import merge, packages, scan_layer
from polyarch.attest.rpmdb import headers, parse_header
from polyarch.attest.scanners import Distro, cargo_binary, npm_package, rpm_database

SPEC = """Name: {name}
Version: {version}
Release: {release}
{epoch}Summary: test
License: {license}
BuildArch: noarch
%description
test package
%files
"""


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: scripts/setup.sh installs Debian's rpm and db5.3-util")


def make_rpm_db(top: Path) -> Path:
    """A real rpm database (rpm --initdb, rpm -i --justdb of two rpmbuild-made packages) under ``top``: its
    directory."""
    _need("rpm", "rpmbuild")
    (top / "SPECS").mkdir(parents=True)
    for fields in ({"name": "hello-poly", "version": "2.1.3", "release": "4.fc39", "epoch": "Epoch: 2\n",
                    "license": "MIT AND (Apache-2.0 OR BSD-3-Clause)"},
                   {"name": "libtwo", "version": "0.9", "release": "1", "epoch": "", "license": "GPL-2.0-or-later"}):
        spec = top / "SPECS" / f"{fields['name']}.spec"
        spec.write_text(SPEC.format(**fields))
        subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "-bb", str(spec)], check=True,
                       capture_output=True)
    db = top / "db"
    db.mkdir()
    subprocess.run(["rpm", "--dbpath", str(db), "--initdb"], check=True, capture_output=True)
    subprocess.run(["rpm", "--dbpath", str(db), "-i", "--nodeps", "--justdb", "--ignorearch",
                    *map(str, sorted((top / "RPMS").rglob("*.rpm")))], check=True, capture_output=True)
    return db


@pytest.fixture(scope="module")
def rpm_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_rpm_db(tmp_path_factory.mktemp("rpm"))


WANT = [("hello-poly", "2:2.1.3-4.fc39", "MIT AND (Apache-2.0 OR BSD-3-Clause)", "noarch"),
        ("libtwo", "0.9-1", "GPL-2.0-or-later", "noarch")]


def _rows(pkgs: list) -> list[tuple[str, str, str, str]]:  # type: ignore[type-arg]
    return sorted((p.name, p.version, p.license, p.arch) for p in pkgs)


def test_rpm_sqlite_database_made_by_rpm(rpm_db: Path) -> None:
    data = (rpm_db / "rpmdb.sqlite").read_bytes()
    assert data[18] == 2  # rpm writes it in WAL mode: read from an in-memory copy all the same
    pkgs = rpm_database(data, path="/var/lib/rpm/rpmdb.sqlite", distro=Distro("fedora", "39"))
    assert _rows(pkgs) == WANT
    hello = next(p for p in pkgs if p.name == "hello-poly")
    assert hello.purl == ("pkg:rpm/fedora/hello-poly@2.1.3-4.fc39?arch=noarch&distro=fedora-39&epoch=2"
                          "&upstream=hello-poly-2.1.3-4.fc39.src.rpm")


def test_rpm_berkeleydb_packages_file(rpm_db: Path, tmp_path: Path) -> None:
    """The same headers in a BerkeleyDB hash file (as RHEL ≤ 8 keep them), checked readable by rpm itself; small
    pages put the headers on overflow-page chains, large ones inline."""
    _need("db5.3_load")
    blobs = headers((rpm_db / "rpmdb.sqlite").read_bytes())
    assert len(blobs) == 2
    for pagesize in (512, 8192):
        lines = ["VERSION=3", "format=bytevalue", "type=hash", f"db_pagesize={pagesize}", "HEADER=END"]
        for i, blob in enumerate(blobs, 1):
            lines += [" " + struct.pack("<I", i).hex(), " " + blob.hex()]
        dump = tmp_path / "dump.txt"
        dump.write_text("\n".join([*lines, "DATA=END"]) + "\n")
        bdb = tmp_path / f"bdb{pagesize}"
        bdb.mkdir()
        subprocess.run(["db5.3_load", "-f", str(dump), str(bdb / "Packages")], check=True)
        listed = subprocess.run(["rpm", "--define", "_db_backend bdb_ro", "--dbpath", str(bdb), "-qa"],
                                capture_output=True, text=True, check=True).stdout.split()
        assert sorted(listed) == ["hello-poly-2.1.3-4.fc39.noarch", "libtwo-0.9-1.noarch"]
        pkgs = rpm_database((bdb / "Packages").read_bytes(), path="/var/lib/rpm/Packages")
        assert _rows(pkgs) == WANT
        assert pkgs[0].purl.startswith("pkg:rpm/")


def _ndb(blobs: list[bytes]) -> bytes:
    """An ndb ``Packages.db`` (SUSE's rpm backend, which Debian's rpm lacks): a slot page, then 16-byte blocks of
    blobs (header, data, trailer)."""
    page = bytearray(4096)
    page[:16] = b"RpmP" + struct.pack("<III", 0, 7, 1)
    body = b""
    for i, blob in enumerate(blobs, 1):
        offset = (4096 + len(body)) // 16
        record = b"BlbS" + struct.pack("<III", i, 1, len(blob)) + blob + struct.pack("<II", len(blob), 0) + b"BlbE"
        record += b"\0" * (-len(record) % 16)
        page[16 + 16 * i:32 + 16 * i] = b"Slot" + struct.pack("<III", i, offset, len(record) // 16)
        body += record
    page[32 + 16 * len(blobs):48 + 16 * len(blobs)] = b"Slot" + struct.pack("<III", 0, 0, 0)  # a free slot
    return bytes(page) + body


def test_rpm_ndb_packages_db(rpm_db: Path) -> None:
    blobs = headers((rpm_db / "rpmdb.sqlite").read_bytes())
    ndb = _ndb(blobs)
    assert _rows(rpm_database(ndb, path="/usr/lib/sysimage/rpm/Packages.db")) == WANT
    wrong_index = bytearray(ndb)
    wrong_index[4096 + 4] = 9  # the first blob claims another package: skipped
    assert [p.name for p in rpm_database(bytes(wrong_index), path="/p")] == [parse_header(blobs[1]).name]
    assert rpm_database(ndb[:4096 + 100], path="/p") == []  # blobs cut short
    layer = scan_layer(_tar([("usr/lib/sysimage/rpm/Packages.db", ndb, 0o644)]))
    assert _rows(packages(merge([("sha256:suse", layer)]))) == WANT


def _sqlite_bytes(sql: str) -> bytes:
    conn = sqlite3.connect(":memory:")
    conn.executescript(sql)
    data = conn.serialize()
    conn.close()
    return data


def test_rpm_sqlite_hostile_shapes() -> None:
    looping_view = _sqlite_bytes("CREATE VIEW Packages AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                                 "FROM c) SELECT x AS blob FROM c;")
    assert headers(looping_view) == []  # a view is never run (it would never end)
    odd_rows = _sqlite_bytes("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB);"
                             "INSERT INTO Packages VALUES (1, 'text'), (2, 42), (3, NULL), (4, x'00000001');")
    assert headers(odd_rows) == [b"\x00\x00\x00\x01"] and rpm_database(odd_rows, path="/r") == []
    assert headers(b"SQLite format 3\x00" + b"\xff" * 4000) == []


def _header(entries: list[tuple[int, int, bytes]]) -> bytes:
    """A header blob: (tag, type, value) → index entries and a data store."""
    index, store = b"", b""
    for tag, typ, value in entries:
        index += struct.pack(">IIII", tag, typ, len(store), 1)
        store += value
    return struct.pack(">II", len(entries), len(store)) + index + store


def test_rpm_header_bounds() -> None:
    good = _header([(1000, 6, b"n\0"), (1001, 6, b"1\0"), (1003, 4, b"\0\0\0\x07")])
    h = parse_header(good)
    assert h is not None and (h.name, h.version, h.epoch) == ("n", "1", 7)
    assert parse_header(good[:-1]) is None  # data store cut short
    unterminated = _header([(1000, 6, b"n\0"), (1001, 6, b"1")])
    assert parse_header(unterminated) is None
    assert parse_header(struct.pack(">II", 0xFFFFFFFF, 0xFFFFFFFF)) is None
    key = _header([(1000, 6, b"gpg-pubkey\0"), (1001, 6, b"abcd\0")])
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB)")
    conn.executemany("INSERT INTO Packages (blob) VALUES (?)", [(key,), (good,)])
    db = conn.serialize()
    assert [p.name for p in rpm_database(db, path="/r")] == ["n"]  # an imported key is no package


def test_npm_package_json_forms() -> None:
    scoped = json.dumps({"name": "@babel/core", "version": "7.24.0", "license": "MIT"}).encode()
    (p,) = npm_package(scoped, path="/app/node_modules/@babel/core/package.json")
    assert (p.name, p.version, p.license, p.purl) == ("@babel/core", "7.24.0", "MIT", "pkg:npm/%40babel/core@7.24.0")
    legacy = json.dumps({"name": "old", "version": "0.1.0", "licenses": [{"type": "MIT"}, {"type": "GPL-2.0"}]})
    assert npm_package(legacy.encode(), path="/p")[0].license == "MIT OR GPL-2.0"
    obj = json.dumps({"name": "o", "version": "1", "license": {"type": "ISC", "url": "x"}}).encode()
    assert npm_package(obj, path="/p")[0].license == "ISC"
    for bad in (b"[]", b'{"name": "x"}', b'{"name": 1, "version": "1"}', b"{", b"[" * 100_000):
        assert npm_package(bad, path="/p") == []


def _elf(sections: list[tuple[bytes, bytes]], *, wide: bool = True, order: str = "<") -> bytes:
    """A minimal ELF file: header, the sections' data, .shstrtab, the section header table."""
    ehsize, shentsize = (64, 64) if wide else (52, 40)
    names = b"\0" + b"".join(n + b"\0" for n, _ in sections) + b".shstrtab\0"
    body, headers_ = b"", [b"\0" * shentsize]
    name_at = 1
    for name, data in [*sections, (b".shstrtab", names)]:
        off = ehsize + len(body)
        if wide:
            headers_.append(struct.pack(order + "IIQQQQIIQQ", name_at, 1, 0, 0, off, len(data), 0, 0, 1, 0))
        else:
            headers_.append(struct.pack(order + "IIIIIIIIII", name_at, 1, 0, 0, off, len(data), 0, 0, 1, 0))
        name_at += len(name) + 1
        body += data
    shoff, shnum = ehsize + len(body), len(headers_)
    ident = b"\x7fELF" + bytes([2 if wide else 1, 1 if order == "<" else 2, 1]) + b"\0" * 9
    if wide:
        head = ident + struct.pack(order + "HHIQQQIHHHHHH", 2, 62, 1, 0, 0, shoff, 0, 64, 56, 0, 64, shnum, shnum - 1)
    else:
        head = ident + struct.pack(order + "HHIIIIIHHHHHH", 2, 3, 1, 0, 0, shoff, 0, 52, 32, 0, 40, shnum, shnum - 1)
    return head + body + b"".join(headers_)


AUDIT = {"packages": [
    {"name": "myapp", "version": "0.1.0", "source": "local", "dependencies": [1], "root": True},
    {"name": "serde", "version": "1.0.197", "source": "crates.io"},
    {"name": "cc", "version": "1.0.90", "source": "crates.io", "kind": "build"},
    {"name": 5, "version": "1"}, "junk"]}


@pytest.mark.parametrize(("wide", "order"), [(True, "<"), (False, ">")])
def test_cargo_auditable_section(wide: bool, order: str) -> None:
    elf = _elf([(b".text", b"\x90" * 300), (b".dep-v0", zlib.compress(json.dumps(AUDIT).encode()))],
               wide=wide, order=order)
    info = read_binary(io.BytesIO(elf), len(elf))
    assert info == AuditData((Crate("myapp", "0.1.0", "local"), Crate("serde", "1.0.197", "crates.io"),
                              Crate("cc", "1.0.90", "crates.io", "build")))
    pkgs = cargo_binary(info, path="/usr/bin/myapp")
    assert [p.purl for p in pkgs] == ["pkg:cargo/myapp@0.1.0", "pkg:cargo/serde@1.0.197", "pkg:cargo/cc@1.0.90"]
    assert read_binary(io.BytesIO(_elf([(b".text", b"x")])), 200) is None


class _Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read (as a tar member stream may)."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.step if n < 0 else min(n, self.step)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


@pytest.mark.parametrize("step", [1 << 20, 4093])
def test_binaries_across_chunk_boundaries(step: int) -> None:
    """The .dep-v0 section and Go's magic each straddle the 1 MiB read boundary; a file over the keep limit is only
    searched for Go build info; short reads change nothing."""
    section = zlib.compress(json.dumps(AUDIT).encode())
    elf = _elf([(b".text", b"\x90" * ((1 << 20) - 64 - 20)), (b".dep-v0", section)])
    got = read_binary(_Trickle(elf, step), len(elf))  # type: ignore[arg-type]
    assert isinstance(got, AuditData) and got.crates[1].name == "serde"
    from tests.attest.test_scanners import MODINFO, _go_blob

    go = b"\x7fELF" + b"\0" * ((1 << 20) - 8) + _go_blob(MODINFO) + b"\0" * 100
    info = read_binary(_Trickle(go, step), len(go))  # type: ignore[arg-type]
    assert info is not None and not isinstance(info, AuditData) and info.path == "example.com/cmd/app"
    import polyarch.attest.binaries as binaries

    assert read_binary(_Trickle(elf, step), binaries.MAX_KEPT + 1) is None  # type: ignore[arg-type]


def test_cargo_decompression_bomb_and_truncation() -> None:
    bomb = zlib.compress(b'{"packages":[' + b" " * (MAX_JSON + 1) + b"]}", 9)
    assert len(bomb) < 20_000 and parse_audit_data(bomb) is None
    section = zlib.compress(json.dumps(AUDIT).encode())
    elf = _elf([(b".dep-v0", section)])
    assert elf_section(lambda a, b: elf[a:b], len(elf)) == section
    for cut in range(0, len(elf), 7):
        assert elf_section(lambda a, b, d=elf[:cut]: d[a:b], cut) is None  # the header table is at the end


def _tar(entries: list[tuple[str, bytes, int]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), mode
            tar.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_layer_scan_finds_rpm_npm_and_cargo(rpm_db: Path) -> None:
    elf = _elf([(b".text", b"\x90" * 100), (b".dep-v0", zlib.compress(json.dumps(AUDIT).encode()))])
    npm = json.dumps({"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}).encode()
    app = json.dumps({"name": "my-app", "version": "1.0.0"}).encode()
    layer = scan_layer(_tar([
        ("etc/os-release", b"ID=rocky\nVERSION_ID=9.3\n", 0o644),
        ("usr/lib/sysimage/rpm/rpmdb.sqlite", (rpm_db / "rpmdb.sqlite").read_bytes(), 0o644),
        ("app/package.json", app, 0o644),
        ("app/node_modules/left-pad/package.json", npm, 0o644),
        ("app/node_modules/left-pad/test/package.json", app, 0o644),
        ("app/node_modules/@types/node/package.json", b'{"name":"@types/node","version":"20.1.0"}', 0o644),
        ("usr/local/bin/myapp", elf, 0o755),
    ]))
    by_name = {p.name: p for p in packages(merge([("sha256:one", layer)]))}
    assert set(by_name) == {"hello-poly", "libtwo", "left-pad", "@types/node", "myapp", "serde", "cc"}
    assert by_name["libtwo"].purl.startswith("pkg:rpm/rocky/libtwo@0.9-1?") and by_name["libtwo"].layer == "sha256:one"
    assert by_name["left-pad"].source == "/app/node_modules/left-pad/package.json"
    assert by_name["serde"].source == "/usr/local/bin/myapp"


SQLITE_HEAD = _sqlite_bytes("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB);")[:100]
BDB_META = struct.pack("<12xII", 0x061561, 9) + struct.pack("<I", 512) + b"\0" * 488
blobs = st.one_of(st.binary(max_size=4096), st.binary(max_size=64).map(lambda b: b * 200))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blobs, st.integers(min_value=0, max_value=4096))
def test_new_scanners_never_raise(data: bytes, cut: int) -> None:
    for blob in (data, data[:cut]):
        for candidate in (blob, SQLITE_HEAD + blob, BDB_META + blob, b"RpmP\0\0\0\0\0\0\0\0\1\0\0\0" + blob, struct.pack(">II", 3, len(blob)) + blob):
            for pkg in rpm_database(candidate, path="/r"):
                assert pkg.name and pkg.version
            parse_header(candidate)
        npm_package(blob, path="/p")
        parse_audit_data(blob)
        parse_audit_data(zlib.compress(blob))
        for elf in (b"\x7fELF" + blob, b"\x7fELF\x02\x01" + blob, b"\x7fELF\x01\x02" + blob):
            elf_section(lambda a, b, d=elf: d[a:b], len(elf))
            read_binary(io.BytesIO(elf), len(elf))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 12), st.binary(max_size=40)), max_size=20),
       st.integers(min_value=0, max_value=400))
def test_generated_headers_and_elves(entries: list[tuple[int, int, bytes]], cut: int) -> None:
    blob = _header([(1000 + t % 50, typ, value) for t, typ, value in entries])
    for candidate in (blob, blob[:cut]):
        h = parse_header(candidate)
        assert h is None or (h.name and h.version)
    elf = _elf([(bytes(v[:8]).replace(b"\0", b"x") or b".x", v) for _t, _ty, v in entries])
    for candidate in (elf, elf[:cut], elf[:-cut or None]):
        elf_section(lambda a, b, d=candidate: d[a:b], len(candidate))


def test_huge_inputs_are_bounded() -> None:
    many = "".join(f"INSERT INTO Packages VALUES ({i}, x'00');" for i in range(2000))
    db = _sqlite_bytes("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB);" + many)
    assert len(headers(db)) == 2000
    crates = {"packages": [{"name": f"c{i}", "version": "1"} for i in range(150_000)]}
    got = parse_audit_data(zlib.compress(json.dumps(crates).encode()))
    assert got is not None and len(got.crates) == 100_000
    big = json.dumps({"name": "n" * 2_000_000, "version": "1"}).encode()
    assert npm_package(big, path="/p") == []  # over the 1 MiB read: not JSON any more


@pytest.fixture(scope="module")
def real_databases(rpm_db: Path, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The rpm-made rpmdb.sqlite, the same headers as a BerkeleyDB file (small pages: overflow chains) and ndb."""
    _need("db5.3_load")
    sqlite_db = (rpm_db / "rpmdb.sqlite").read_bytes()
    blobs = headers(sqlite_db)
    lines = ["VERSION=3", "format=bytevalue", "type=hash", "db_pagesize=512", "HEADER=END"]
    for i, blob in enumerate(blobs, 1):
        lines += [" " + struct.pack("<I", i).hex(), " " + blob.hex()]
    top = tmp_path_factory.mktemp("bdb")
    (top / "dump").write_text("\n".join([*lines, "DATA=END"]) + "\n")
    subprocess.run(["db5.3_load", "-f", str(top / "dump"), str(top / "Packages")], check=True)
    return [sqlite_db, (top / "Packages").read_bytes(), _ndb(blobs)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2), st.lists(st.tuples(st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)),
                                   min_size=1, max_size=8), st.integers(0, 1 << 20))
def test_damaged_real_databases_never_raise(real_databases: list[bytes], which: int,
                                            edits: list[tuple[int, bytes]], cut: int) -> None:
    """Real database files with bytes overwritten and cut short: packages or nothing, never an exception."""
    data = bytearray(real_databases[which])
    for at, patch in edits:
        at %= len(data)
        data[at:at + len(patch)] = patch
    for candidate in (bytes(data), bytes(data[:cut % (len(data) + 1)])):
        for pkg in rpm_database(candidate, path="/r"):
            assert pkg.name and pkg.version and len(pkg.name) <= 4096
