"""Layer writing: reproducible tars of trees, overlay upper dirs and tree diffs; round trips through apply."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from polyarch.content.store import ContentStore
from polyarch.errors import StoreError
from polyarch.worker import diff
from polyarch.worker.apply import apply_layer
from polyarch.worker.diff import LayerOptions, layer_from_diff, layer_from_dir, write_diff, write_tree
from tests.worker.conftest import E, is_root, make_tar, needs_root, tree

EPOCH = 1_600_000_000


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return list(tf)


def sample(root: Path) -> None:
    layer = make_tar([
        E("bin", kind="symlink", link="usr/bin"), E("usr", kind="dir"), E("usr/bin", kind="dir"),
        E("usr/bin/tool", data=b"elf" * 100, mode=0o4755, uid=7, gid=8),
        E("usr/bin/hard", kind="link", link="usr/bin/tool"),
        E("etc", kind="dir", mode=0o700), E("etc/passwd", kind="symlink", link="/nix/store/abc-passwd"),
        E("etc/cap", data=b"c", pax=(("SCHILY.xattr.user.k", "v"),)), E("fifo", kind="fifo"),
        E("z", kind="dir"), E("a", data=b"first"),
    ])
    apply_layer(io.BytesIO(layer), root)


def test_round_trip_and_reproducible(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    sample(src)
    out1, out2 = io.BytesIO(), io.BytesIO()
    write_tree(src, out1, epoch=EPOCH)
    os.utime(src / "a")  # a newer mtime is clamped to the epoch: same bytes
    write_tree(src, out2, epoch=EPOCH)
    assert out1.getvalue() == out2.getvalue()
    ms = members(out1.getvalue())
    names = [m.name for m in ms]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert all(m.mtime <= EPOCH and m.uname == "" and m.gname == "" for m in ms)
    by = {m.name: m for m in ms}
    assert by["etc/passwd"].linkname == "/nix/store/abc-passwd"  # T3: byte-identical
    assert by["usr/bin/tool"].islnk() and by["usr/bin/tool"].linkname == "usr/bin/hard"  # first name wins
    assert by["etc/cap"].pax_headers.get("SCHILY.xattr.user.k") == "v"
    assert "atime" not in by["a"].pax_headers and "ctime" not in by["a"].pax_headers
    apply_layer(io.BytesIO(out1.getvalue()), dst)
    a, b = tree(src), tree(dst)
    assert a == b
    assert os.stat(dst / "usr/bin/hard").st_ino == os.stat(dst / "usr/bin/tool").st_ino


@needs_root
def test_security_capability_round_trip(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    cap = bytes.fromhex("0100000200100000000000000000000000000000")
    (src / "ping").write_bytes(b"elf")
    os.setxattr(src / "ping", "security.capability", cap)
    out = io.BytesIO()
    write_tree(src, out)
    apply_layer(io.BytesIO(out.getvalue()), dst)
    assert os.getxattr(dst / "ping", "security.capability") == cap


def test_tree_diff(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    sample(lower)
    from polyarch.worker.copytree import copy_tree

    copy_tree(lower, upper)
    assert tree(lower) == tree(upper)
    out = io.BytesIO()
    write_diff(lower, upper, out, epoch=EPOCH)
    assert [m.name for m in members(out.getvalue())] == []
    (upper / "a").unlink()
    (upper / "z" / "new").write_text("n")
    (upper / "etc" / "cap").write_text("changed")
    out = io.BytesIO()
    write_diff(lower, upper, out, epoch=EPOCH)
    assert [m.name for m in members(out.getvalue())] == [".wh.a", "etc", "etc/cap", "z", "z/new"]
    check = tmp_path / "check"
    copy_tree(lower, check)
    apply_layer(io.BytesIO(out.getvalue()), check)
    assert tree(check) == tree(upper)


def test_layers_into_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The epoch comes from LayerOptions only: SOURCE_DATE_EPOCH in the environment changes nothing here."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    store = ContentStore(tmp_path / "store")
    src = tmp_path / "src"
    src.mkdir()
    sample(src)
    one = layer_from_dir(store, src, LayerOptions(epoch=EPOCH))
    two = layer_from_dir(store, src, LayerOptions(compression="zstd", epoch=EPOCH))
    assert one.diff_id == two.diff_id and one.descriptor.digest != two.descriptor.digest
    assert one.descriptor.media_type.endswith("tar+gzip") and store.has(one.descriptor.digest)
    empty = tmp_path / "empty"
    empty.mkdir()
    three = layer_from_diff(store, empty, src, LayerOptions(epoch=EPOCH))
    assert three.diff_id == one.diff_id
    unclamped = layer_from_dir(store, src)
    assert unclamped.diff_id != one.diff_id and unclamped.diff_id == layer_from_dir(store, src, LayerOptions()).diff_id
    if is_root():
        assert all(m.uid in (0, 7) for m in members(store.read(one.descriptor.digest, limit=1 << 24)))


def test_fast_path_leaves_non_regular_files_to_the_general_path(tmp_path: Path) -> None:
    """A name listed as a regular file that is something else when opened (a FIFO or symlink swapped in) is not
    written by the fast path, and opening the FIFO does not block."""
    os.mkfifo(tmp_path / "fifo")
    os.symlink("fifo", tmp_path / "link")
    out = io.BytesIO()
    writer = diff._Writer(out, None)
    result: list[bool] = []
    opener = threading.Thread(target=lambda: result.extend(
        writer.regular(name.encode(), os.fsencode(tmp_path / name)) for name in ("fifo", "link")), daemon=True)
    opener.start()
    opener.join(timeout=10)
    assert not opener.is_alive(), "opening a FIFO blocked"
    assert result == [False, False]
    writer.tw.close()
    assert members(out.getvalue()) == []
    full = io.BytesIO()
    write_tree(tmp_path, full)
    assert {m.name: m.type for m in members(full.getvalue())} == {"fifo": tarfile.FIFOTYPE, "link": tarfile.SYMTYPE}


@needs_root
def test_file_shorter_than_its_size_fails_the_layer(tmp_path: Path) -> None:
    """A file that yields fewer bytes than its size (here a sysfs file bind-mounted into the tree: 4096 bytes by
    stat, a few dozen by read) fails the layer with one error and leaves no blob behind."""
    source = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not source.exists():
        pytest.skip("no sysfs file to bind-mount")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    (src / "short").touch()
    subprocess.run(["mount", "--bind", str(source), str(src / "short")], check=True)
    store = ContentStore(tmp_path / "store")
    try:
        for compression in ("none", "gzip"):
            with pytest.raises(StoreError, match=r"cannot write layer: .*short shrank while it was being archived"):
                layer_from_dir(store, src, LayerOptions(compression=compression, epoch=EPOCH))
    finally:
        subprocess.run(["umount", str(src / "short")], check=True)
    assert not any((tmp_path / "store" / "blobs").rglob("sha256/*"))  # the aborted blobs left nothing
    assert not any(store.ingest_dir.iterdir())
