"""Layer apply: RELIABILITY T1–T10 as table tests against a tmp root with an untouched sibling sentinel
(containerd's TestBreakouts is the model), plus the ordinary semantics (whiteouts, opaque dirs, metadata)."""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, InvalidLayer, LimitExceeded
from polyarch.worker.apply import ApplyLimits, apply_layer
from tests.worker.conftest import E, is_root, make_tar, needs_root, tree


def apply(root: Path, *entries: E, **kw) -> None:
    apply_layer(io.BytesIO(make_tar(entries)), root, **kw)


# --- T1 traversal names -----------------------------------------------------------------------------------

T1 = {
    "dotdot": [E("../../x", data=b"pwn")],
    "absolute": [E("/abs/x", data=b"pwn")],
    "inner-dotdot": [E("a/../../x", data=b"pwn")],
    "benign-dotdot": [E("a/../x", data=b"pwn")],
    "pax-path": [E("benign", data=b"pwn", pax=(("path", "../x"),))],
    "pax-path-abs": [E("benign", data=b"pwn", pax=(("path", "/x"),))],
    "nul": [E("benign", data=b"pwn", pax=(("path", "a\x00/../../x"),))],
    "symlink-nul": [E("s", kind="symlink", link="a", pax=(("linkpath", "a\x00b"),))],
}


@pytest.mark.parametrize("case", sorted(T1))
def test_t1_traversal_names_rejected(sandbox, case: str) -> None:
    root, _ = sandbox
    with pytest.raises(InvalidLayer):
        apply(root, *T1[case])
    assert not (root.parent / "x").exists()


# --- T2 writes through planted symlinks land inside the root ---------------------------------------------


def test_t2_symlink_to_slash(sandbox, resolution: str) -> None:
    root, _sentinel = sandbox
    apply(root, E("foo", kind="symlink", link="/"), E("foo/tmp/pwn-t2", data=b"x"))
    assert (root / "tmp" / "pwn-t2").read_bytes() == b"x"
    assert not Path("/tmp/pwn-t2").exists()


@pytest.mark.parametrize("link", ["../../..", "../sentinel", "SENTINEL", "a/../../../.."])
def test_t2_symlink_escape_lands_inside(sandbox, resolution: str, link: str) -> None:
    root, sentinel = sandbox
    link = link.replace("SENTINEL", str(sentinel))
    apply(root, E("foo", kind="symlink", link=link), E("foo/passwd", data=b"pwn"), E("foo/etc/shadow", data=b"p"))
    found = [p for p in root.rglob("passwd")]
    assert len(found) == 1 and found[0].read_bytes() == b"pwn"


def test_t2_symlink_override_directory_across_layers(sandbox, resolution: str) -> None:
    root, sentinel = sandbox
    apply(root, E("foo", kind="dir"), E("foo/a", data=b"lower"))
    apply(root, E("foo", kind="symlink", link=str(sentinel)), E("foo/passwd", data=b"pwn"))
    assert os.readlink(root / "foo") == str(sentinel)
    assert (root / sentinel.relative_to("/") / "passwd").read_bytes() == b"pwn"


def test_t2_directory_override_symlink(sandbox, resolution: str) -> None:
    root, sentinel = sandbox
    apply(root, E("foo", kind="symlink", link=str(sentinel)))
    apply(root, E("foo", kind="dir"), E("foo/passwd", data=b"new"))
    assert (root / "foo").is_dir() and not (root / "foo").is_symlink()
    assert (root / "foo" / "passwd").read_bytes() == b"new"


def test_t2_file_replaces_symlink_without_following(sandbox, resolution: str) -> None:
    root, sentinel = sandbox
    apply(root, E("passwd", kind="symlink", link=str(sentinel / "passwd")), E("passwd", data=b"pwn"))
    assert not (root / "passwd").is_symlink() and (root / "passwd").read_bytes() == b"pwn"


# --- T3 legit absolute symlinks are kept byte-identical and never followed --------------------------------


def test_t3_absolute_symlinks_kept(sandbox) -> None:
    root, _ = sandbox
    apply(root, E("etc", kind="dir"), E("etc/passwd", kind="symlink", link="/nix/store/abc-passwd"),
          E("bin", kind="symlink", link="usr/bin"), E("usr/bin/sh", data=b"#!"))
    assert os.readlink(root / "etc" / "passwd") == "/nix/store/abc-passwd"
    assert os.readlink(root / "bin") == "usr/bin"


# --- T4 hardlink escapes --------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["../../../etc/shadow", "/etc/shadow", "SENTINEL/etc/shadow", "missing"])
def test_t4_hardlink_escape_rejected(sandbox, resolution: str, target: str) -> None:
    root, sentinel = sandbox
    with pytest.raises(InvalidLayer):
        apply(root, E("shadow", kind="link", link=target.replace("SENTINEL", str(sentinel).lstrip("/"))))


def test_t4_hardlink_to_symlink_then_chmod_rejected(sandbox, resolution: str) -> None:
    root, sentinel = sandbox
    with pytest.raises(InvalidLayer, match="symlink"):
        apply(root, E("passwd", kind="symlink", link=str(sentinel / "passwd")),
              E("localpasswd", kind="link", link="passwd"),
              E("localpasswd", data=b"x", mode=0o777))
    assert stat.S_IMODE(os.stat(sentinel / "passwd").st_mode) == 0o400


def test_t4_hardlink_via_symlinked_parent_stays_inside(sandbox, resolution: str) -> None:
    root, sentinel = sandbox
    with pytest.raises(InvalidLayer):
        apply(root, E("s", kind="symlink", link=str(sentinel)), E("h", kind="link", link="s/passwd"))


def test_hardlink_inside(sandbox) -> None:
    root, _ = sandbox
    apply(root, E("a", data=b"same"), E("b", kind="link", link="a"))
    assert os.stat(root / "a").st_ino == os.stat(root / "b").st_ino


# --- T5 invalid whiteouts -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".wh..", ".wh...", "etc/.wh..", ".wh.", "etc/.wh."])
def test_t5_invalid_whiteouts(sandbox, name: str) -> None:
    root, _ = sandbox
    apply(root, E("etc", kind="dir"), E("etc/keep", data=b"k"))
    with pytest.raises(InvalidLayer):
        apply(root, E(name))
    assert (root / "etc" / "keep").read_bytes() == b"k"


# --- T6 whiteouts through symlinks --------------------------------------------------------------------------


def test_t6_whiteout_through_symlink_stays_inside(sandbox, resolution: str) -> None:
    root, sentinel = sandbox
    apply(root, E("etc", kind="dir"), E("etc/passwd", data=b"in-root"))
    apply(root, E("localetc", kind="symlink", link="/etc"), E("localetc/.wh.passwd"))
    assert not (root / "etc" / "passwd").exists()
    assert Path("/etc/passwd").exists()
    apply(root, E("s", kind="symlink", link=str(sentinel)), E("s/.wh.passwd"), E("s/.wh.etc"))


def test_t6_dotdot_whiteout_rejected(sandbox) -> None:
    root, _ = sandbox
    apply(root, E("etc", kind="dir"))
    with pytest.raises(InvalidLayer):
        apply(root, E("dne/../.wh.etc"))
    assert (root / "etc").is_dir()


# --- T7 opaque ordering ----------------------------------------------------------------------------------


def test_t7_opaque_after_new_entries(sandbox, resolution: str) -> None:
    root, _ = sandbox
    apply(root, E("a", kind="dir"), E("a/old", data=b"o"), E("a/b", kind="dir"), E("a/b/lower", data=b"l"),
          E("a/c", kind="dir"), E("a/c/x", data=b"x"))
    apply(root, E("a/b/new", data=b"n"), E("a/.wh..wh..opq"))
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["a", "a/b", "a/b/new"]


def test_t7_opaque_keeps_what_was_unpacked_through_a_symlink(sandbox, resolution: str) -> None:
    """What this layer unpacked is tracked by its real path: written through ``l -> a``, kept by ``a``'s marker."""
    root, _ = sandbox
    apply(root, E("a", kind="dir"), E("a/old", data=b"o"), E("a/b", kind="dir"), E("a/b/lower", data=b"l"))
    apply(root, E("l", kind="symlink", link="/a"), E("l/b/new", data=b"n"), E("a/.wh..wh..opq"))
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["a", "a/b", "a/b/new", "l"]


def test_t7_delete_then_recreate(sandbox, resolution: str) -> None:
    root, _ = sandbox
    apply(root, E("a", kind="dir"), E("a/lower", data=b"l"))
    apply(root, E(".wh.a"))
    apply(root, E("a", kind="dir"), E("a/upper", data=b"u"))
    assert sorted(os.listdir(root / "a")) == ["upper"]


# --- T8 type and metadata policy --------------------------------------------------------------------------


def test_t8_duplicates_last_wins_and_types(sandbox) -> None:
    root, _ = sandbox
    apply(root, E("f", data=b"one"), E("f", data=b"two"), E("d", kind="dir"), E("d", data=b"now a file"),
          E("p", kind="fifo"), E("suid", data=b"s", mode=0o4755), E("sgid", kind="dir", mode=0o2775))
    assert (root / "f").read_bytes() == b"two"
    assert (root / "d").read_bytes() == b"now a file"
    assert stat.S_ISFIFO(os.lstat(root / "p").st_mode)
    assert stat.S_IMODE(os.stat(root / "suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(root / "sgid").st_mode) == 0o2775


def test_t8_hardlink_before_target_rejected(sandbox) -> None:
    root, _ = sandbox
    with pytest.raises(InvalidLayer, match="does not exist"):
        apply(root, E("b", kind="link", link="a"), E("a", data=b"x"))


def test_t8_non_utf8_names_kept_as_bytes(sandbox) -> None:
    root, _ = sandbox
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        ti = tarfile.TarInfo("caf\xe9")
        tf.addfile(ti)
    apply_layer(io.BytesIO(raw.getvalue()), root)
    assert os.listdir(os.fsencode(root)) == [b"caf\xe9"]


@needs_root
def test_t8_devices_owners_xattrs(sandbox) -> None:
    root, _ = sandbox
    cap = "\x01\x00\x00\x02\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    apply(root, E("null", kind="chr", dev=(1, 3)), E("loop", kind="blk", dev=(7, 0)),
          E("ping", data=b"elf", mode=0o755, uid=1000, gid=1001, pax=(("SCHILY.xattr.security.capability", cap),
                                                                      ("SCHILY.xattr.user.note", "hi"),
                                                                      ("SCHILY.xattr.trusted.overlay.opaque", "y"))))
    assert os.major(os.lstat(root / "null").st_rdev) == 1 and stat.S_ISBLK(os.lstat(root / "loop").st_mode)
    st = os.stat(root / "ping")
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    assert os.getxattr(root / "ping", "security.capability") == cap.encode("latin-1")
    assert os.getxattr(root / "ping", "user.note") == b"hi"
    assert "trusted.overlay.opaque" not in os.listxattr(root / "ping")


def test_t8_overlay_whiteout_device_rejected(sandbox) -> None:
    root, _ = sandbox
    with pytest.raises(InvalidLayer, match="whiteout"):
        apply(root, E("x", kind="chr", dev=(0, 0)))


# --- T9 bombs ----------------------------------------------------------------------------------------------


def _zero_tar(size: int) -> bytes:
    return make_tar([E("zeros", data=bytes(size))])


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_t9_decompression_bomb(sandbox, codec: str) -> None:
    root, _ = sandbox
    raw = _zero_tar(8 << 20)
    blob = gzip.compress(raw, 9) if codec == "gzip" else zstandard.ZstdCompressor(level=19).compress(raw)
    assert len(blob) < 64 << 10
    with pytest.raises(LimitExceeded):
        apply_layer(io.BytesIO(blob), root, limits=ApplyLimits(max_bytes=1 << 20))


def test_t9_entry_bomb(sandbox) -> None:
    root, _ = sandbox

    class Headers(io.RawIOBase):
        """An endless stream of empty-file headers (10⁶ and more), generated lazily."""

        def __init__(self) -> None:
            self.n = 0
            self.pending = b""

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            while len(self.pending) < len(b):
                ti = tarfile.TarInfo(f"f{self.n % 7}")
                self.n += 1
                self.pending += ti.tobuf(tarfile.USTAR_FORMAT)
            n = len(b)
            b[:n] = self.pending[:n]
            self.pending = self.pending[n:]
            return n

    with pytest.raises(LimitExceeded, match="entries"):
        apply_layer(io.BufferedReader(Headers()), root, limits=ApplyLimits(max_entries=5_000))


# --- T10 integrity ---------------------------------------------------------------------------------------


def test_t10_diff_id_mismatch(sandbox) -> None:
    root, _ = sandbox
    data = make_tar([E("a", data=b"x")])
    with pytest.raises(DigestMismatch):
        apply_layer(io.BytesIO(gzip.compress(data)), root, expected_diff_id=Digest.of(b"other"))
    result = apply_layer(io.BytesIO(gzip.compress(data)), root, expected_diff_id=Digest.of(data))
    assert result.diff_id == Digest.of(data) and result.size == len(data)


def test_t10_truncated_and_garbage(sandbox) -> None:
    root, _ = sandbox
    data = make_tar([E("a", data=b"x" * 5000), E("b", data=b"y")])
    for bad in (data[:1536], data[:3000], data[:-10240] + b"garbage" * 100):
        with pytest.raises(InvalidLayer):
            apply_layer(io.BytesIO(bad), root)


def test_t10_corrupt_gzip(sandbox) -> None:
    root, _ = sandbox
    blob = gzip.compress(make_tar([E("a", data=b"x" * 5000)]))
    with pytest.raises(InvalidLayer):
        apply_layer(io.BytesIO(blob[:-20]), root)


# --- ordinary semantics ---------------------------------------------------------------------------------


def test_whiteout_and_metadata(sandbox) -> None:
    root, _ = sandbox
    apply(root, E("etc", kind="dir", mode=0o755), E("etc/a", data=b"a"), E("etc/b", data=b"b"),
          E("etc/sub", kind="dir"), E("etc/sub/c", data=b"c"))
    assert int(os.stat(root / "etc").st_mtime) == 1_700_000_000
    apply(root, E("etc/.wh.a"), E("etc/.wh.sub"), E("etc/.wh.nonexistent"))
    assert sorted(os.listdir(root / "etc")) == ["b"]
    assert int(os.stat(root / "etc" / "b").st_mtime) == 1_700_000_000
    if is_root():
        assert tree(root)["etc/b"][2:4] == (0, 0)


def test_empty_stream_is_an_empty_layer(sandbox) -> None:
    root, _ = sandbox
    assert apply_layer(io.BytesIO(b""), root).entries == 0


# --- issue 13 item 1: no stale resolution — a parent turned into a symlink later in the layer ---------------


def _outside(path: Path) -> dict[str, tuple]:
    """What must not change outside the root: tree, bytes, modes, owners, link counts and mtimes."""
    out = {}
    for p in [path, *sorted(path.rglob("*"))]:
        st = os.lstat(p)
        out[str(p)] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime_ns,
                       p.read_bytes() if p.is_file() and not p.is_symlink() else None)
    return out


@pytest.fixture(params=["openat2", "walk"])
def resolution(request, monkeypatch) -> str:
    """Run a test with openat2(RESOLVE_IN_ROOT) and again with the O_NOFOLLOW walk that replaces it (ENOSYS)."""
    from polyarch.worker import rooted
    if request.param == "walk":
        monkeypatch.setattr(rooted._OPENAT2, "available", False)
    else:
        assert rooted._OPENAT2.available, "this kernel has openat2 (5.6+)"
    return request.param


STALE = {
    # the sequence: a whiteout of a missing path, the parent becomes a symlink, a write below it
    "write": ["x/a/.wh.none", "x->SENTINEL", E("x/a/file", data=b"pwn")],
    "write-relative-link": ["x/a/.wh.none", "x->../sentinel", E("x/a/file", data=b"pwn")],
    "replace-file": ["x/etc/.wh.none", "x->SENTINEL", E("x/etc/shadow", data=b"pwn", mode=0o777)],
    "hardlink-into-host": ["x/etc/.wh.none", "x->SENTINEL", E("f", data=b"f"), E("x/etc/h", kind="link", link="f")],
    "hardlink-from-host": ["x/.wh.none", "x->SENTINEL", E("h", kind="link", link="x/passwd")],
    "whiteout": ["x/.wh.none", "x->SENTINEL", E("x/.wh.passwd")],
    "whiteout-dir": ["x/.wh.none", "x->SENTINEL", E("x/.wh.etc")],
    "opaque": ["x/etc/.wh.none", "x->SENTINEL", E("x/etc/.wh..wh..opq")],
    "chmod-chown-dir": ["x/etc/.wh.none", "x->SENTINEL", E("x/etc/ssl", kind="dir", mode=0o777, uid=1234, gid=1)],
    "fifo-over-host": ["x/etc/.wh.none", "x->SENTINEL", E("x/etc/shadow", kind="fifo", mode=0o777)],
    "dir-mtime": [E("d/etc", kind="dir", mtime=1), "d->SENTINEL"],
}


def _stale_entries(case: str, sentinel: Path) -> list[E]:
    out = []
    for item in STALE[case]:
        if isinstance(item, E):
            out.append(item)
        elif "->" in item:
            name, link = item.split("->")
            out.append(E(name, kind="symlink", link=link.replace("SENTINEL", str(sentinel))))
        else:
            out.append(E(item))
    return out


@pytest.mark.parametrize("case", sorted(STALE))
def test_stale_parent_turned_symlink_stays_inside(sandbox, resolution: str, case: str) -> None:
    root, sentinel = sandbox
    (sentinel / "etc" / "old").write_bytes(b"o")  # something for an opaque marker to delete
    (sentinel / "etc" / "ssl").mkdir(0o755)  # a directory a layer's directory entry would merge with
    before = _outside(sentinel)
    try:
        try:
            apply(root, *_stale_entries(case, sentinel))
        except InvalidLayer:
            pass  # rejecting the layer is fine; touching the host is not
        assert _outside(sentinel) == before
    finally:
        (sentinel / "etc" / "old").unlink(missing_ok=True)
        if (sentinel / "etc" / "ssl").is_dir():
            (sentinel / "etc" / "ssl").rmdir()


def test_stale_parent_write_lands_inside(sandbox, resolution: str) -> None:
    root, sentinel = sandbox
    apply(root, *_stale_entries("write", sentinel))
    assert (root / str(sentinel).lstrip("/") / "a" / "file").read_bytes() == b"pwn"
    assert os.readlink(root / "x") == str(sentinel)


# --- issue 13 item 7: GNU sparse files are written as holes, and their holes count against the limit ----------


def _sparse_tar(tmp: Path, size: int, chunks: dict[int, bytes], fmt: str) -> bytes:
    """A tar of one sparse file made by GNU tar (``gnu``: old GNU 'S' headers; ``0.1``/``1.0``: PAX sparse)."""
    work = tmp / f"sparse-src-{fmt}"
    work.mkdir()
    with open(work / "f", "wb") as f:
        f.truncate(size)
        for offset, data in chunks.items():
            f.seek(offset)
            f.write(data)
    flags = ["--format=gnu"] if fmt == "gnu" else ["--format=posix", f"--sparse-version={fmt}"]
    out = tmp / f"sparse-{fmt}.tar"
    subprocess.run(["tar", "--sparse", *flags, "-cf", str(out), "-C", str(work), "f"], check=True)
    return out.read_bytes()


@pytest.mark.parametrize("fmt", ["gnu", "0.1", "1.0"])
def test_sparse_terabyte_layer_rejected_by_the_limit(sandbox, tmp_path: Path, fmt: str) -> None:
    root, _ = sandbox
    blob = _sparse_tar(tmp_path, 1 << 40, {1 << 30: b"hello", (1 << 40) - 3: b"end"}, fmt)
    assert len(blob) < 32 << 10
    with pytest.raises(LimitExceeded, match="sparse"):
        apply_layer(io.BytesIO(blob), root)  # the default limit (64 GiB) is far below 1 TiB
    assert not (root / "f").exists() or os.lstat(root / "f").st_blocks * 512 < 4 << 20


@pytest.mark.parametrize("fmt", ["gnu", "0.1", "1.0"])
def test_sparse_file_written_as_holes(sandbox, tmp_path: Path, fmt: str) -> None:
    root, _ = sandbox
    size = 3 << 30
    chunks = {0: b"head", 1 << 30: os.urandom(70_000), size - 3: b"end"}
    apply_layer(io.BytesIO(_sparse_tar(tmp_path, size, chunks, fmt)), root)
    st = os.lstat(root / "f")
    assert st.st_size == size and st.st_blocks * 512 < 4 << 20
    with open(root / "f", "rb") as f:
        for offset, data in chunks.items():
            f.seek(offset)
            assert f.read(len(data)) == data
        f.seek((1 << 30) + 70_000)
        assert f.read(1 << 16) == bytes(1 << 16)


@pytest.mark.parametrize("fmt", ["gnu", "0.1", "1.0"])
def test_sparse_file_round_trips(sandbox, tmp_path: Path, fmt: str) -> None:
    root, _ = sandbox
    size = 5 << 20
    chunks = {4096 * 3: os.urandom(9000), 1 << 20: b"x" * 4096, size - 1: b"!"}
    apply_layer(io.BytesIO(_sparse_tar(tmp_path, size, chunks, fmt)), root)
    assert (root / "f").read_bytes() == (tmp_path / f"sparse-src-{fmt}" / "f").read_bytes()


@pytest.mark.parametrize("extents", [[(100, 10), (50, 10)], [(0, 20), (10, 5)], [(95, 10)], [(-1, 4)]])
def test_sparse_invalid_map_rejected(sandbox, extents: list[tuple[int, int]]) -> None:
    root, _ = sandbox
    ti = tarfile.TarInfo("f")
    ti.size = sum(n for _, n in extents if n > 0)
    header = bytearray(ti.tobuf(tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    for i, (offset, length) in enumerate(extents):  # old GNU: 4 (offset, numbytes) pairs at 386, then realsize
        header[386 + 24 * i:386 + 24 * i + 12] = tarfile.itn(offset, 12, tarfile.GNU_FORMAT)
        header[398 + 24 * i:398 + 24 * i + 12] = tarfile.itn(length, 12, tarfile.GNU_FORMAT)
    header[483:495] = tarfile.itn(100, 12, tarfile.GNU_FORMAT)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % (sum(header) & 0o777777)
    data = b"d" * ti.size
    blob = bytes(header) + data + bytes(-len(data) % 512) + bytes(1024)
    with pytest.raises(InvalidLayer, match="sparse map"):
        apply_layer(io.BytesIO(blob), root)


# --- issue 13 item 6: tar metadata headers are bounded before they are read (apply and verify) ----------------

_HOSTILE_HEADERS = r'''
import io, resource, sys, tarfile, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))  # 1.5 GiB: reading a 1 GiB header fails
kind, consumer, root = sys.argv[1:4]

def block(name, type_, size, extra=b""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.size = type_, size
    buf = bytearray(ti.tobuf(tarfile.GNU_FORMAT if type_ == tarfile.GNUTYPE_SPARSE else tarfile.USTAR_FORMAT))
    if extra:  # old GNU sparse: isextended flag, then a fixed checksum
        buf[482] = 1
        buf[148:156] = b" " * 8
        buf[148:156] = b"%06o\0 " % (sum(buf) & 0o777777)
    return bytes(buf)

def pax(records):
    body = b"".join(b"%d %s=%s\n" % (len(k) + len(v) + 3 + len(str(len(k) + len(v) + 3)), k, v)
                    for k, v in records)
    return block("././@PaxHeader", tarfile.XHDTYPE, len(body)) + body + bytes(-len(body) % 512)

extension = bytearray(512)
extension[0:12], extension[12:24], extension[504] = b"00000000001\0", b"00000000001\0", 1
first, filler = {
    "pax": (block("././@PaxHeader", tarfile.XHDTYPE, 1 << 30), b"a" * 512),
    "global": (block("././@PaxHeader", tarfile.XGLTYPE, 1 << 30), b"a" * 512),
    "longname": (block("././@LongLink", tarfile.GNUTYPE_LONGNAME, 1 << 30), b"a" * 512),
    "longlink": (block("././@LongLink", tarfile.GNUTYPE_LONGLINK, 1 << 30), b"a" * 512),
    "pax-chain": (b"", pax([(b"comment", b"x")])),
    "sparse-old": (block("f", tarfile.GNUTYPE_SPARSE, 0, b"ext"), bytes(extension)),
    "sparse-10": (pax([(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0"), (b"GNU.sparse.name", b"f"),
                       (b"GNU.sparse.realsize", b"1")]) + block("f", tarfile.REGTYPE, 512)
                  + b"1000000000000\n".ljust(512, b"1"), b"\n1" * 256),
}[kind]

class Lazy(io.RawIOBase):
    """The first blocks, then the filler forever (up to 4 GiB): never materialised."""
    def __init__(self):
        self.pending, self.sent = first, 0
    def readable(self):
        return True
    def readinto(self, b):
        if self.sent > 4 << 30:
            return 0
        while len(self.pending) < len(b):
            self.pending += filler * 2048
        n = len(b)
        b[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        self.sent += n
        return n

start = time.monotonic()
try:
    if consumer == "apply":
        from polyarch.worker.apply import apply_layer
        apply_layer(io.BufferedReader(Lazy(), 1 << 16), root)
    else:
        from polyarch.verify.fs import MergedView
        MergedView().apply(io.BufferedReader(Lazy(), 1 << 16), 0)
    outcome = "no error"
except BaseException as exc:
    outcome = type(exc).__name__ + ": " + str(exc)[:200]
print(outcome)
hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:'))  # not ru_maxrss: see tests/peakrss.py
print(int(hwm.split()[1]) * 1024, time.monotonic() - start)
'''

HOSTILE_HEADERS = ["pax", "global", "longname", "longlink", "pax-chain", "sparse-old", "sparse-10"]


@pytest.mark.parametrize("consumer", ["apply", "verify"])
@pytest.mark.parametrize("kind", HOSTILE_HEADERS)
def test_huge_tar_metadata_refused_before_reading(tmp_path: Path, kind: str, consumer: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    run = subprocess.run([sys.executable, "-c", _HOSTILE_HEADERS, kind, consumer, str(root)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    outcome, usage = run.stdout.splitlines()
    rss, seconds = usage.split()
    assert outcome.startswith(("InvalidLayer", "LimitExceeded")), outcome
    assert int(rss) < 200 << 20, f"peak RSS {int(rss) >> 20} MiB"
    assert float(seconds) < 20
    assert os.listdir(root) == []
