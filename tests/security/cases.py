"""The hostile layers of RELIABILITY T1–T8 and of issue 13 item 1, each aimed at the sentinel directory.

A case is a function of the sentinel's absolute path giving the layers (bottom to top) and what a safe polyarch
must do with them: ``reject`` (the command fails with one error line), ``contain`` (the entries land inside
the rootfs under rooted resolution, or the layer is rejected), or ``accept`` (a legitimate layer: the command
succeeds). Whatever the outcome, the sentinel is untouched: that is checked for every case.

Hostile names reach the sentinel three ways: its absolute path, ``/`` followed by its path, and a ``../`` chain
long enough to climb from any directory polyarch may apply into (store, TMPDIR, output) up to ``/``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tests.security.hostile import Dir, Entry, File, Link, Sym

UP = "../" * 40  # from anywhere on this machine up to /
# a valid VFS_CAP_REVISION_2 value (effective, cap_net_bind_service); all bytes < 0x80 survive PAX's UTF-8
CAP_NET_BIND_SERVICE = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0).decode("ascii")


@dataclass(frozen=True)
class Case:
    name: str
    expect: str  # reject | contain | accept
    layers: Callable[[str], Sequence[Sequence[Entry]]]


def _one(*entries: Entry) -> list[list[Entry]]:
    return [list(entries)]


def _cases() -> list[Case]:
    def rel(s: str) -> str:  # the sentinel's path without the leading /
        return s.lstrip("/")

    return [
        # --- T1 traversal names ---------------------------------------------------------------------------
        Case("T1-dotdot", "reject", lambda s: _one(File(UP + rel(s) + "/pwn"))),
        Case("T1-dotdot-overwrite", "reject", lambda s: _one(File(UP + rel(s) + "/etc/passwd", b"pwned\n"))),
        Case("T1-absolute", "reject", lambda s: _one(File(s + "/pwn"))),
        Case("T1-inner-dotdot", "reject", lambda s: _one(File("a/" + UP + rel(s) + "/pwn"))),
        Case("T1-pax-path", "reject", lambda s: _one(File("benign", pax=(("path", UP + rel(s) + "/pwn"),)))),
        Case("T1-pax-path-absolute", "reject", lambda s: _one(File("benign", pax=(("path", s + "/pwn"),)))),
        Case("T1-nul", "reject", lambda s: _one(File("benign", pax=(("path", "a\x00/" + UP + rel(s) + "/pwn"),)))),
        Case("T1-dir-dotdot", "reject", lambda s: _one(Dir(UP + rel(s) + "/newdir"))),
        Case("T1-symlink-dotdot-name", "reject", lambda s: _one(Sym(UP + rel(s) + "/link", "/"))),
        # --- T2 writes through planted symlinks --------------------------------------------------------------
        Case("T2-slash", "contain", lambda s: _one(Sym("foo", "/"), File("foo/" + rel(s) + "/pwn"))),
        Case("T2-slash-overwrite", "contain",
             lambda s: _one(Sym("foo", "/"), File("foo/" + rel(s) + "/etc/passwd", b"pwned\n"))),
        Case("T2-dotdot", "contain", lambda s: _one(Sym("foo", UP.rstrip("/")), File("foo/" + rel(s) + "/pwn"))),
        Case("T2-absolute", "contain", lambda s: _one(Sym("foo", s), File("foo/pwn"), File("foo/file", b"pwned\n"),
                                                      Dir("foo/emptydir/new"))),
        Case("T2-nested-dotdot", "contain",
             lambda s: _one(Dir("d"), Sym("d/up", UP + rel(s)), File("d/up/pwn"))),
        Case("T2-chained", "contain",
             lambda s: _one(Sym("a", s), Sym("b", "a/etc"), File("b/passwd", b"pwned\n"))),
        Case("T2-symlink-overrides-directory", "contain",
             lambda s: [[Dir("foo"), File("foo/x")], [Sym("foo", s), File("foo/pwn")]]),
        Case("T2-directory-overrides-symlink", "contain",
             lambda s: [[Sym("emptydir", s + "/emptydir")], [Dir("emptydir", mode=0o777), File("emptydir/pwn")]]),
        Case("T2-file-over-symlink", "contain",
             lambda s: [[Sym("foo", s + "/file")], [File("foo", b"pwned\n", mode=0o777)]]),
        # --- T3 legit absolute symlinks ---------------------------------------------------------------------
        Case("T3-absolute-symlinks", "accept",
             lambda s: _one(Sym("abs-passwd", "/nix/store/abc-passwd"), Sym("rel-bin", "usr/bin"),
                            Sym("to-sentinel", s + "/etc/passwd"), Sym("dangling", s + "/nonexistent"))),
        # --- T4 hardlink escapes ----------------------------------------------------------------------------
        Case("T4-dotdot", "reject", lambda s: _one(Link("h", UP + rel(s) + "/etc/shadow"))),
        Case("T4-absolute", "reject", lambda s: _one(Link("h", s + "/etc/shadow"))),
        Case("T4-symlink-then-chmod", "reject",
             lambda s: _one(Sym("s", s + "/etc/shadow"), Link("h", "s", mode=0o4777, uid=4242),
                            File("h", b"pwned\n", mode=0o777))),
        Case("T4-through-symlinked-parent", "reject", lambda s: _one(Sym("p", s), Link("h", "p/etc/shadow"))),
        # --- T5 invalid whiteouts ---------------------------------------------------------------------------
        Case("T5-wh-dot", "reject", lambda s: _one(File(".wh.."))),
        Case("T5-wh-dotdotdot", "reject", lambda s: _one(File(".wh..."))),
        Case("T5-etc-wh-dot", "reject", lambda s: _one(File("etc/.wh.."))),
        Case("T5-bare", "reject", lambda s: _one(File(".wh."))),
        Case("T5-etc-bare", "reject", lambda s: _one(File("etc/.wh."))),
        # --- T6 whiteouts through symlinks ------------------------------------------------------------------
        Case("T6-whiteout-through-symlink", "contain",
             lambda s: _one(Sym("localetc", s + "/etc"), File("localetc/.wh.passwd"))),
        Case("T6-opaque-through-symlink", "contain",
             lambda s: _one(Sym("localetc", s + "/etc"), File("localetc/.wh..wh..opq"))),
        Case("T6-whiteout-dotdot-symlink", "contain",
             lambda s: _one(Sym("up", UP + rel(s)), File("up/.wh.file"), File("up/.wh.sub"))),
        Case("T6-dne-dotdot", "reject", lambda s: _one(File("dne/../.wh.etc"))),
        # --- T8 types and metadata --------------------------------------------------------------------------
        Case("T8-types", "accept",
             lambda s: _one(Entry("chr", "chr", dev=(1, 3)), Entry("blk", "blk", dev=(7, 0)), Entry("fifo", "fifo"),
                            File("suid", mode=0o6755), File("sticky-dir-file"), Dir("sticky", mode=0o1777),
                            File("xattrs", pax=(("SCHILY.xattr.user.k", "v"),
                                                ("SCHILY.xattr.trusted.overlay.opaque", "y"),
                                                ("SCHILY.xattr.security.capability", CAP_NET_BIND_SERVICE)),),
                            File("caf\udce9-latin1"), File("dup", b"one\n"), File("dup", b"two\n"),
                            Dir("dupdir"), File("dupdir"))),
        Case("T8-malformed-capability", "contain",
             lambda s: _one(File("badcap", pax=(("SCHILY.xattr.security.capability", "\x01\x00"),)))),
        Case("T8-hardlink-before-target", "reject", lambda s: _one(Link("h", "later"), File("later"))),
        Case("T8-overlay-whiteout-device", "reject", lambda s: _one(Entry("w", "chr", dev=(0, 0)))),
        Case("T8-symlink-then-xattr-file", "contain",
             lambda s: _one(Sym("x", s + "/file"), File("x", pax=(("SCHILY.xattr.user.pwn", "1"),)))),
        # --- the paths a RUN or run mounts over (hosts, resolv.conf, /dev, /proc): planted by the image ----------
        Case("mounts-etc-is-a-file", "contain", lambda s: _one(File("etc", b"not a directory\n"))),
        Case("mounts-etc-symlink", "contain", lambda s: [[Sym("etc", s + "/etc")]]),
        Case("mounts-etc-files-symlinks", "contain",
             lambda s: _one(Sym("etc/hosts", s + "/etc/passwd"), Sym("etc/resolv.conf", s + "/file"),
                            Sym("etc/hostname", s + "/empty"))),
        Case("mounts-dev-proc-sys-symlinks", "contain",
             lambda s: _one(Sym("dev", s + "/emptydir"), Sym("proc", s + "/sub"), Sym("sys", s))),
        # each alone, so that runc's own refusal of one (/proc) cannot hide what it does with another (/dev)
        Case("mounts-dev-symlink", "contain", lambda s: _one(Sym("dev", s + "/emptydir"))),
        Case("mounts-dev-dotdot", "contain", lambda s: _one(Sym("dev", UP + rel(s) + "/emptydir"))),
        Case("mounts-sys-symlink", "contain", lambda s: _one(Sym("sys", s + "/emptydir"))),
        # --- issue 13 item 1: a cached parent made stale by a later symlink --------------------------------
        Case("item1-write", "contain",
             lambda s: _one(File("x/a/.wh.none"), Sym("x", s), File("x/a/file", b"pwned\n"), File("x/a/pwn"))),
        Case("item1-slash", "contain",
             lambda s: _one(File("x/" + rel(s) + "/a/.wh.none"), Sym("x", "/"),
                            File("x/" + rel(s) + "/a/file", b"pwned\n"))),
        Case("item1-dotdot", "contain",
             lambda s: _one(File("x/a/.wh.none"), Sym("x", UP + rel(s)), File("x/a/pwn"))),
        Case("item1-nested", "contain",
             lambda s: _one(Dir("d"), File("d/x/a/.wh.none"), Sym("d/x", s), File("d/x/a/pwn"))),
        Case("item1-mkdir", "contain",
             lambda s: _one(File("x/new/.wh.none"), Sym("x", s), File("x/new/pwn"))),
        Case("item1-hardlink-into-host", "contain",
             lambda s: _one(File("inroot", b"planted\n"), File("x/a/.wh.none"), Sym("x", s), Link("x/a/h", "inroot"))),
        Case("item1-hardlink-from-host", "contain",
             lambda s: _one(File("x/etc/.wh.none"), Sym("x", s), Link("stolen", "x/etc/shadow"))),
        Case("item1-whiteout", "contain",
             lambda s: _one(File("x/a/.wh.none"), Sym("x", s), File("x/a/.wh.file"))),
        Case("item1-whiteout-dir", "contain",
             lambda s: _one(File("x/.wh.none"), Sym("x", s), File("x/.wh.sub"))),
        Case("item1-opaque", "contain",
             lambda s: _one(File("x/a/.wh.none"), Sym("x", s), File("x/a/.wh..wh..opq"))),
        Case("item1-chmod-chown-dir", "contain",
             lambda s: _one(File("x/sub/.wh.none"), Sym("x", s), Dir("x/sub/deeper", mode=0o777, uid=4242, gid=4242))),
        Case("item1-replace-file", "contain",
             lambda s: _one(File("x/etc/.wh.none"), Sym("x", s), File("x/etc/shadow", b"pwned\n", mode=0o4777))),
        Case("item1-symlink-into-host", "contain",
             lambda s: _one(File("x/a/.wh.none"), Sym("x", s), Sym("x/a/file", "/pwned"))),
        Case("item1-fifo-into-host", "contain",
             lambda s: _one(File("x/a/.wh.none"), Sym("x", s), Entry("x/a/fifo", "fifo"))),
        Case("item1-across-layers", "contain",
             lambda s: [[File("x/a/.wh.none"), Sym("x", s)], [File("x/a/pwn")]]),
    ]


CASES: dict[str, Case] = {c.name: c for c in _cases()}
