"""Ambient batches (content/store.py "Ambient batches"): a load's and a build's blobs share one flush, a name
written while the block is open is preceded by that flush, a publish never slips between a flush and the
marker's removal, and a load killed mid-way leaves a store whose blobs all match their digests."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.content.crash import kill_mid_batch

from polyarch import fsutil
from polyarch.content import store as store_mod
from polyarch.content.images import ImageStore
from polyarch.content.store import BATCH_PREFIX, ContentStore
from polyarch.digest import Digest
from polyarch.oci.spec import Descriptor, MediaType


def _markers(store: ContentStore) -> list[Path]:
    return [p for p in store.ingest_dir.iterdir() if p.name.startswith(BATCH_PREFIX)]


def test_writers_join_the_block_and_a_name_flushes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ContentStore(tmp_path / "s")
    images = ImageStore(store)
    fsyncs: list[int] = []
    syncs: list[str] = []
    real_fsync, real_sync = os.fsync, store_mod.sync_filesystem
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(store_mod, "sync_filesystem", lambda p: (syncs.append("sync"), real_sync(p))[1])
    real_write = fsutil.atomic_write

    def named(path: Path, data: bytes) -> None:
        assert not _markers(store), "index.json written while blobs of the batch were not durable yet"
        syncs.append("name")
        real_write(path, data)

    monkeypatch.setattr("polyarch.content.images.atomic_write", named)
    with store.batched():
        digests = [store.write(f"blob {i}".encode())[0] for i in range(6)]
        with store.writer() as w:
            w.write(b"streamed")
            digests.append(w.commit()[0])
        assert len(fsyncs) <= 2  # the marker and its directory: nothing per blob
        assert _markers(store)
        desc = Descriptor(MediaType.OCI_CONFIG, digests[0], len(b"blob 0"))
        images.update(lambda entries: [*entries, desc])
        assert syncs == ["sync", "name"]  # one flush, then the name
        store.write(b"after the name")  # a new marker for the rest of the block
        assert _markers(store)
    assert not _markers(store)
    assert syncs == ["sync", "name", "sync"]
    assert all(store.has(d) for d in digests)
    fsyncs.clear()
    store.write(b"outside the block")
    assert len(fsyncs) >= 1  # flushed per blob again


def test_a_publish_waits_for_a_flush_in_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob renamed during a flush must not end up after the syncfs yet without a marker."""
    store = ContentStore(tmp_path / "s")
    in_sync = threading.Event()
    release = threading.Event()
    real_sync = store_mod.sync_filesystem

    def slow_sync(path: Path) -> None:
        in_sync.set()
        release.wait(5)
        real_sync(path)

    monkeypatch.setattr(store_mod, "sync_filesystem", slow_sync)
    published: list[bool] = []
    with store.batched():
        store.write(b"first")
        flusher = threading.Thread(target=store.flush)
        flusher.start()
        assert in_sync.wait(5)

        def writer() -> None:
            store.write(b"written during the flush")
            published.append(bool(_markers(store)))  # its own marker covers it

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.2)
        assert not store.has(Digest.of(b"written during the flush"))  # held until the flush ended
        release.set()
        flusher.join(5)
        t.join(5)
    assert published == [True]
    assert store.has(Digest.of(b"written during the flush"))


def test_sigkill_mid_load_leaves_a_store_that_verifies(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tf:
        for i in range(6):
            data = os.urandom(8 << 20)
            ti = tarfile.TarInfo(f"data/{i}.bin")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    src = tmp_path / "src"
    run_cli("import", "-t", "big:1", "--platform", f"linux/amd64={rootfs}", "--platform", f"linux/arm64={rootfs}",
            root=src)
    archive = tmp_path / "big.tar"
    run_cli("save", "big:1", "-o", str(archive), root=src)
    root = kill_mid_batch(tmp_path, ["load", "-q", "-i", str(archive)])
    store = ContentStore(root)  # opening recovers the dead batch
    assert not _markers(store)
    for digest, _size in store.list():
        with store.open(digest) as f:
            assert Digest.of(f.read(), digest.algorithm) == digest
    run_cli("load", "-i", str(archive), root=root)
    images = ImageStore(store)
    assert len(images.images(images.lookup("big:1"))) == 2
