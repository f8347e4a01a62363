"""Snapshots with both drivers: extraction once per chain, whiteouts from a step, restacking, reproducibility,
and no partial snapshot after a bad layer."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from polyarch.content.compression import LayerWriter
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, UsageError
from polyarch.worker.diff import LayerOptions
from polyarch.worker.overlay import overlay_supported
from polyarch.worker.snapshot import LayerRef, SnapshotDirs, SnapshotStore, build_lock, chain_ids
from tests.worker.conftest import E, make_tar, tree

DRIVERS = ["overlay", "copy"]


def put(store: ContentStore, *entries: E) -> LayerRef:
    with LayerWriter(store) as lw:
        lw.write(make_tar(entries))
        r = lw.close_layer()
    return LayerRef(r.diff_id, r.descriptor)


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "overlay" and not overlay_supported(tmp_path / "probe"):
        pytest.skip("overlayfs cannot be mounted here (needs root)")
    return request.param


def base_layers(store: ContentStore) -> list[LayerRef]:
    return [
        put(store, E("etc", kind="dir"), E("etc/a", data=b"a"), E("etc/b", data=b"b"), E("d", kind="dir"),
            E("d/x", data=b"x"), E("d/y", data=b"y"), E("bin", kind="symlink", link="usr/bin"),
            E("usr", kind="dir"), E("usr/bin", kind="dir")),
        put(store, E("bin/tool", data=b"t"), E("etc/.wh.b")),  # through the lower symlink: lands in usr/bin
    ]


def step(rootfs: Path) -> None:
    os.unlink(rootfs / "etc" / "a")
    for f in os.listdir(rootfs / "d"):
        os.unlink(rootfs / "d" / f)
    (rootfs / "new").write_text("n")


def test_step_whiteouts_restack_and_reproducible(tmp_path: Path, driver: str) -> None:
    content = ContentStore(tmp_path / "store")
    snaps = SnapshotStore(tmp_path / "store", content, driver=driver)
    layers = base_layers(content)
    digests = []
    for _ in range(2):
        with snaps.prepare(layers) as active:
            assert (active.rootfs / "usr" / "bin" / "tool").read_bytes() == b"t"
            assert not (active.rootfs / "etc" / "b").exists()
            step(active.rootfs)
            seen = tree(active.rootfs)
            committed = active.commit(LayerOptions(epoch=1_700_000_000))
        digests.append(committed.layer.descriptor.digest)
        with tarfile.open(fileobj=content.open(committed.layer.descriptor.digest)) as tf:
            names = [m.name for m in tf]
        assert names == ["d", "d/.wh.x", "d/.wh.y", "etc", "etc/.wh.a", "new"]
        assert committed.chain == chain_ids([*[x.diff_id for x in layers], committed.layer.diff_id])[-1]
        assert snaps.path(committed.chain).is_dir()
        # stacking all layers again reproduces the tree the step saw
        with snaps.prepare([*layers, LayerRef(committed.layer.diff_id, committed.layer.descriptor)]) as again:
            assert tree(again.rootfs) == seen
    assert digests[0] == digests[1]
    # a fresh store extracting the committed layer from its blob gives the same tree
    fresh = SnapshotStore(tmp_path / "fresh", content, driver=driver)
    with fresh.prepare([*layers, LayerRef(committed.layer.diff_id, committed.layer.descriptor)]) as active:
        assert tree(active.rootfs) == seen
    assert not list((tmp_path / "store" / "snapshots" / driver / "active").iterdir())


def test_bad_diff_id_leaves_no_snapshot(tmp_path: Path, driver: str) -> None:
    content = ContentStore(tmp_path / "store")
    snaps = SnapshotStore(tmp_path / "store", content, driver=driver)
    good = put(content, E("a", data=b"a"))
    bad = LayerRef(Digest.of(b"something else"), good.blob)
    with pytest.raises(DigestMismatch):
        snaps.prepare([bad])
    assert not snaps.path(bad.diff_id).exists()
    assert not list((tmp_path / "store" / "snapshots" / driver / "tmp").iterdir())
    assert snaps.has([good]) is False
    snaps.ensure([good])
    assert snaps.has([good])


def test_driver_copy_is_forced_and_an_unknown_driver_refused(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver comes from the caller (the CLI reads POLYARCH_SNAPSHOTTER), never from the environment here."""
    monkeypatch.setenv("POLYARCH_SNAPSHOTTER", "zfs")
    snaps = SnapshotStore(tmp_path / "store", ContentStore(tmp_path / "store"), driver="copy")
    assert snaps.driver == "copy"
    with pytest.raises(UsageError):
        SnapshotStore(tmp_path / "store", ContentStore(tmp_path / "store"), driver="zfs")


def test_scratch_commit(tmp_path: Path, driver: str) -> None:
    content = ContentStore(tmp_path / "store")
    snaps = SnapshotStore(tmp_path / "store", content, driver=driver)
    with snaps.prepare([]) as active:
        (active.rootfs / "hello").write_text("hi")
        committed = active.commit(LayerOptions(epoch=1))
    with tarfile.open(fileobj=io.BytesIO(content.read(committed.layer.descriptor.digest))) as tf:
        assert [m.name for m in tf] == ["hello"]
    assert committed.chain == committed.layer.diff_id


def test_commit_never_looks_through_a_lower_symlink(tmp_path: Path) -> None:
    """A lower holds ``x -> <host dir>``; the step makes ``x/s`` a real, empty dir with the metadata of the host's
    ``<host dir>/s``. Deciding whether ``x/s`` is a mere copy-up must not stat the host through the symlink:
    the layer keeps ``x/s`` whatever the host holds."""
    if not overlay_supported(tmp_path / "probe"):
        pytest.skip("overlayfs cannot be mounted here (needs root)")
    host = tmp_path / "host"
    (host / "s").mkdir(parents=True)
    content = ContentStore(tmp_path / "store")
    snaps = SnapshotStore(tmp_path / "store", content, driver="overlay")
    lower = put(content, E("x", kind="symlink", link=os.fspath(host)))
    with snaps.prepare([lower]) as active:
        os.unlink(active.rootfs / "x")
        (active.rootfs / "x" / "s").mkdir(parents=True)
        st = os.stat(host / "s")
        os.chmod(active.rootfs / "x" / "s", st.st_mode & 0o7777)
        os.utime(active.rootfs / "x" / "s", ns=(st.st_atime_ns, st.st_mtime_ns))
        committed = active.commit(LayerOptions(epoch=1_700_000_000))
    with tarfile.open(fileobj=io.BytesIO(content.read(committed.layer.descriptor.digest))) as tf:
        assert "x/s" in [m.name for m in tf]


def test_overlay_stacks_more_layers_than_a_mount_data_page(tmp_path: Path) -> None:
    """Layers are handed to overlayfs one ``fsconfig`` call each, so a 240-layer image (whose lowerdir string
    would not fit the 4 KiB of a legacy mount(2)) still mounts."""
    if not overlay_supported(tmp_path / "probe"):
        pytest.skip("overlayfs cannot be mounted here (needs root)")
    content = ContentStore(tmp_path / "store")
    snaps = SnapshotStore(tmp_path / "store", content, driver="overlay")
    layers = [put(content, E(f"f{i}", data=b"%d" % i)) for i in range(240)]
    with snaps.prepare(layers) as active:
        assert (active.rootfs / "f0").read_bytes() == b"0" and (active.rootfs / "f239").read_bytes() == b"239"


def test_snapshot_dirs_list_size_and_remove_committed_snapshots_of_every_driver(tmp_path: Path) -> None:
    dirs = SnapshotDirs(tmp_path)
    assert not dirs.exists() and dirs.committed() == []
    a, b = "a" * 64, "b" * 64
    (dirs.driver_dir("overlay") / a).mkdir(parents=True)
    (dirs.driver_dir("overlay") / a / "f").write_bytes(b"x" * 10000)
    (dirs.driver_dir("copy") / b).mkdir(parents=True)
    for other in ("tmp", "active", "short"):
        (dirs.driver_dir("copy") / other).mkdir()
    found = {(e.driver, e.chain): e for e in dirs.committed()}
    assert set(found) == {("overlay", a), ("copy", b)}
    for entry in found.values():  # the size as du -sb counts it (directory entries included)
        du = subprocess.run(["du", "-sb", str(entry.path)], capture_output=True, text=True, check=True)
        assert dirs.size(entry) == int(du.stdout.split()[0])
    assert dirs.size(found["overlay", a]) >= 10000
    dirs.remove(found["overlay", a])
    assert [e.chain for e in dirs.committed()] == [b]
    with pytest.raises(UsageError):
        dirs.driver_dir("../x")


def test_snapshot_dirs_clean_leftovers_of_dead_processes_and_old_temp_dirs(tmp_path: Path) -> None:
    dirs = SnapshotDirs(tmp_path)
    tmp, active = dirs.driver_dir("copy") / "tmp", dirs.driver_dir("copy") / "active"
    for d in (tmp / "old", tmp / "young", active / f"{os.getpid()}-abc", active / "999999999-abc"):
        d.mkdir(parents=True)
    os.utime(tmp / "old", (1, 1))
    dirs.clean_leftovers(cutoff=1000.0)
    assert sorted(p.name for p in tmp.iterdir()) == ["young"]
    assert sorted(p.name for p in active.iterdir()) == [f"{os.getpid()}-abc"]  # this process lives


def test_build_lock_is_shared_for_builds_and_exclusive_for_prune(tmp_path: Path) -> None:
    with build_lock(tmp_path) as first, build_lock(tmp_path) as second:
        assert first and second
        with build_lock(tmp_path, exclusive=True, wait=False) as held:
            assert held is False
    with build_lock(tmp_path, exclusive=True, wait=False) as held:
        assert held is True
    assert SnapshotDirs(tmp_path).exists()
