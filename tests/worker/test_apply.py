"""Layer apply: RELIABILITY T1–T10 as table tests against a tmp root with an untouched sibling sentinel
(containerd's TestBreakouts is the model), plus the ordinary semantics (whiteouts, opaque dirs, metadata)."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, InvalidLayer, LimitExceeded
from polyarch.worker.archive import ApplyLimits, apply_layer
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


def test_t2_symlink_to_slash(sandbox) -> None:
    root, _sentinel = sandbox
    apply(root, E("foo", kind="symlink", link="/"), E("foo/tmp/pwn-t2", data=b"x"))
    assert (root / "tmp" / "pwn-t2").read_bytes() == b"x"
    assert not Path("/tmp/pwn-t2").exists()


@pytest.mark.parametrize("link", ["../../..", "../sentinel", "SENTINEL", "a/../../../.."])
def test_t2_symlink_escape_lands_inside(sandbox, link: str) -> None:
    root, sentinel = sandbox
    link = link.replace("SENTINEL", str(sentinel))
    apply(root, E("foo", kind="symlink", link=link), E("foo/passwd", data=b"pwn"), E("foo/etc/shadow", data=b"p"))
    found = [p for p in root.rglob("passwd")]
    assert len(found) == 1 and found[0].read_bytes() == b"pwn"


def test_t2_symlink_override_directory_across_layers(sandbox) -> None:
    root, sentinel = sandbox
    apply(root, E("foo", kind="dir"), E("foo/a", data=b"lower"))
    apply(root, E("foo", kind="symlink", link=str(sentinel)), E("foo/passwd", data=b"pwn"))
    assert os.readlink(root / "foo") == str(sentinel)
    assert (root / sentinel.relative_to("/") / "passwd").read_bytes() == b"pwn"


def test_t2_directory_override_symlink(sandbox) -> None:
    root, sentinel = sandbox
    apply(root, E("foo", kind="symlink", link=str(sentinel)))
    apply(root, E("foo", kind="dir"), E("foo/passwd", data=b"new"))
    assert (root / "foo").is_dir() and not (root / "foo").is_symlink()
    assert (root / "foo" / "passwd").read_bytes() == b"new"


def test_t2_file_replaces_symlink_without_following(sandbox) -> None:
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
def test_t4_hardlink_escape_rejected(sandbox, target: str) -> None:
    root, sentinel = sandbox
    with pytest.raises(InvalidLayer):
        apply(root, E("shadow", kind="link", link=target.replace("SENTINEL", str(sentinel).lstrip("/"))))


def test_t4_hardlink_to_symlink_then_chmod_rejected(sandbox) -> None:
    root, sentinel = sandbox
    with pytest.raises(InvalidLayer, match="symlink"):
        apply(root, E("passwd", kind="symlink", link=str(sentinel / "passwd")),
              E("localpasswd", kind="link", link="passwd"),
              E("localpasswd", data=b"x", mode=0o777))
    assert stat.S_IMODE(os.stat(sentinel / "passwd").st_mode) == 0o400


def test_t4_hardlink_via_symlinked_parent_stays_inside(sandbox) -> None:
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


def test_t6_whiteout_through_symlink_stays_inside(sandbox) -> None:
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


def test_t7_opaque_after_new_entries(sandbox) -> None:
    root, _ = sandbox
    apply(root, E("a", kind="dir"), E("a/old", data=b"o"), E("a/b", kind="dir"), E("a/b/lower", data=b"l"),
          E("a/c", kind="dir"), E("a/c/x", data=b"x"))
    apply(root, E("a/b/new", data=b"n"), E("a/.wh..wh..opq"))
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["a", "a/b", "a/b/new"]


def test_t7_delete_then_recreate(sandbox) -> None:
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
