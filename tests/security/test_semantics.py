"""What legitimate-but-tricky layers become, seen through real commands (RELIABILITY T3, T7, T8): the merged
rootfs of ``build -o type=local``, the layer an ``ADD`` writes, and what a container sees."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from tests.security.cases import CASES
from tests.security.conftest import PLATFORM, World
from tests.security.entrypoints import build_local
from tests.security.hostile import Dir, File, Sym, layer_tar
from tests.security.sentinel import SENTINEL_FILES

pytestmark = pytest.mark.root


def _ok(proc) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 0, proc.stderr


def test_t3_absolute_symlinks_kept_and_never_followed(world: World) -> None:
    s = str(world.sentinel)
    layers = CASES["T3-absolute-symlinks"].layers(s)
    _ok(build_local(world, layers))
    assert os.readlink(world.out / "abs-passwd") == "/nix/store/abc-passwd"
    assert os.readlink(world.out / "rel-bin") == "usr/bin"
    assert os.readlink(world.out / "to-sentinel") == s + "/etc/passwd"
    assert os.readlink(world.out / "dangling") == s + "/nonexistent"
    # inside the container the absolute target is resolved in the rootfs, where it does not exist
    proc = world.cli("run", "--platform", PLATFORM, "evil/img:1", "cat", "/to-sentinel")
    assert proc.returncode != 0 and SENTINEL_FILES["etc/passwd"].decode() not in proc.stdout


def test_t3_add_keeps_symlink_targets_in_the_layer(world: World) -> None:
    s = str(world.sentinel)
    (world.ctx / "links.tar").write_bytes(layer_tar([Sym("abs", "/nix/store/abc-passwd"), Sym("host", s + "/file")]))
    (world.ctx / "Dockerfile").write_text("FROM base/busybox:1\nADD links.tar /dst/\n")
    oci = world.tmp / "oci"
    proc = world.cli("build", str(world.ctx), "--progress", "plain", "--platform", PLATFORM,
                     "-o", f"type=oci,dest={oci},tar=false")
    _ok(proc)
    blobs = oci / "blobs" / "sha256"
    index = json.loads((oci / "index.json").read_text())
    doc = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    if "manifests" in doc:
        doc = json.loads((blobs / doc["manifests"][0]["digest"].split(":")[1]).read_bytes())
    layer = blobs / doc["layers"][-1]["digest"].split(":")[1]
    with tarfile.open(layer) as tf:
        links = {m.name.lstrip("./"): m.linkname for m in tf.getmembers() if m.issym()}
    assert links == {"dst/abs": "/nix/store/abc-passwd", "dst/host": s + "/file"}


def test_t7_opaque_listed_after_new_entries(world: World) -> None:
    layers = [[Dir("a"), File("a/old"), Dir("a/b"), File("a/b/oldb")],
              [File("a/b/new", b"new\n"), File("a/.wh..wh..opq")]]
    _ok(build_local(world, layers))
    assert sorted(p.name for p in (world.out / "a").iterdir()) == ["b"]
    assert sorted(p.name for p in (world.out / "a" / "b").iterdir()) == ["new"]
    proc = world.cli("run", "--platform", PLATFORM, "evil/img:1", "find", "/a")
    assert proc.returncode == 0 and sorted(proc.stdout.split()) == ["/a", "/a/b", "/a/b/new"], proc.stderr


def test_t7_delete_then_recreate(world: World) -> None:
    layers = [[Dir("a"), File("a/old")], [File(".wh.a")], [Dir("a"), File("a/new")]]
    _ok(build_local(world, layers))
    assert sorted(p.name for p in (world.out / "a").iterdir()) == ["new"]
    proc = world.cli("run", "--platform", PLATFORM, "evil/img:1", "ls", "/a")
    assert proc.returncode == 0 and proc.stdout.split() == ["new"], proc.stderr


def test_t8_documented_types_and_metadata(world: World) -> None:
    """archive.py's policy: devices and FIFOs created (as root), setuid/setgid/sticky kept, user./security.capability
    xattrs kept and trusted.overlay.* ignored, non-UTF-8 names kept as bytes, the last duplicate wins."""
    _ok(build_local(world, CASES["T8-types"].layers(str(world.sentinel))))
    out = world.out
    st = os.lstat(out / "chr")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    assert stat.S_ISBLK(os.lstat(out / "blk").st_mode)
    assert stat.S_ISFIFO(os.lstat(out / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(out / "suid").st_mode) == 0o6755
    assert stat.S_IMODE(os.lstat(out / "sticky").st_mode) == 0o1777
    assert os.getxattr(out / "xattrs", "user.k") == b"v"
    assert "trusted.overlay.opaque" not in os.listxattr(out / "xattrs")
    assert "security.capability" in os.listxattr(out / "xattrs")
    assert os.path.exists(os.fsencode(out) + b"/caf\xe9-latin1")
    assert (out / "dup").read_bytes() == b"two\n"
    assert (out / "dupdir").is_file()


def test_remote_add_lands_as_a_file(world: World, tmp_path: Path) -> None:
    """Issue 13 item 17: ``ADD http://…/x.tar`` is not extracted (Docker and BuildKit extract local archives only)."""
    from tests.security.entrypoints import add_http

    layers = [[File("inside", b"x\n")]]
    _ok(add_http(world, layers))
    assert (world.out / "dst" / "evil.tar").read_bytes() == layer_tar(layers[0])
    assert not (world.out / "dst" / "inside").exists()
