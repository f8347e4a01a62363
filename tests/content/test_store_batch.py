"""Batched durability (content/store.py "Batches"): one flush per batch, and the crash-safety argument's recovery
step: a batch whose process died before its flush has its blobs re-verified by the next open of the store."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.content.crash import kill_mid_batch
from tests.registry.refregistry import start_registry

from polyarch.content.store import BATCH_PREFIX, ContentStore
from polyarch.digest import Digest


def _marker(store: ContentStore, owner: dict[str, object]) -> Path:
    path = store.ingest_dir / f"{BATCH_PREFIX}test"
    path.write_text(json.dumps(owner))
    return path


def test_a_batch_flushes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ContentStore(tmp_path / "s")
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    with store.batch() as batch:
        for i in range(5):
            store.write(f"blob {i}".encode(), batch=batch)
        store.write(b"blob 0", batch=batch)  # already there: dropped, not replaced
        assert len(calls) <= 2  # the marker and its directory, nothing per blob
        assert [p.name for p in store.ingest_dir.iterdir() if p.name.startswith(BATCH_PREFIX)]
    assert not [p for p in store.ingest_dir.iterdir() if p.name.startswith(BATCH_PREFIX)]
    assert all(store.has(Digest.of(f"blob {i}".encode())) for i in range(5))
    calls.clear()
    store.write(b"outside a batch")
    assert len(calls) >= 2  # file and directory, as always


def test_dead_batch_is_reverified_on_open(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "s")
    old, _ = store.write(b"older than the batch")
    time.sleep(2.5)  # beyond the clock slack
    marker = _marker(store, {"boot": "another-boot", "pid": 1, "start": "0"})
    good, _ = store.write(b"a blob the batch made durable in time")
    bad, size = store.write(b"a blob whose data the crash lost!!")
    store.blob_path(bad).chmod(0o644)
    store.blob_path(bad).write_bytes(b"\0" * size)  # what a power loss can leave: right size, zeroes
    assert store.clean_ingest(older_than=-1) == 0  # markers are not temp files
    ContentStore(tmp_path / "s")
    assert not store.has(bad)
    assert store.has(good) and store.has(old)
    assert not marker.exists()


def test_live_batch_is_left_alone(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "s")
    with store.batch() as batch:
        digest, size = store.write(b"being written", batch=batch)
        store.blob_path(digest).chmod(0o644)
        store.blob_path(digest).write_bytes(b"x" * size)  # still in flight: not this open's business
        ContentStore(tmp_path / "s")
        assert store.has(digest)
        store.blob_path(digest).write_bytes(b"being written")


@pytest.mark.registry
def test_sigkill_mid_pull_leaves_a_store_that_verifies(tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed")
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
    registry = start_registry(tmp_path / "registry")
    try:
        ref = f"{registry.host}/crash/big:1"
        run_cli("push", "big:1", ref, root=src)
        root = kill_mid_batch(tmp_path, ["pull", "--all-platforms", "-q", ref])
        store = ContentStore(root)  # opening recovers the dead batch
        assert not [p for p in store.ingest_dir.iterdir() if p.name.startswith(BATCH_PREFIX)]
        for digest, _size in store.list():
            with store.open(digest) as f:
                assert Digest.of(f.read(), digest.algorithm) == digest
        run_cli("pull", "--all-platforms", ref, root=root)
        assert len(list(store.list())) >= 5
    finally:
        registry.stop()
