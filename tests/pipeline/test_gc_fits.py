"""``pipeline.prune.fits``: the cheap bound the gc after a build checks first. It must never be below what the gc
policy counts (``usage.cache_total``), or a store over its limit would go uncollected; and under it, the gc reads
no record at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.pipeline import prune, usage
from polyarch.pipeline.gcpolicy import GcPolicy
from tests.conftest import run_cli


def _tree(root: Path) -> int:
    """A small tree; returns the sum of the lstat sizes of the entries under ``root``."""
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "f").write_bytes(b"x" * 5000)
    (root / "a" / "b" / "g").write_bytes(b"y" * 300)
    os.link(root / "a" / "f", root / "a" / "b" / "f-again")  # counted at every link
    os.symlink("f", root / "a" / "link")
    return sum(os.lstat(os.path.join(d, n)).st_size for d, ds, fs in os.walk(root) for n in ds + fs)


def test_fits_is_the_sum_of_every_entry(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    total = _tree(root) + os.lstat(root).st_size
    assert prune.fits(root, total)
    assert not prune.fits(root, total - 1)
    assert not prune.fits(tmp_path / "missing", 1 << 40)


def test_fits_gives_up_on_a_large_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "store"
    root.mkdir()
    for i in range(5):
        (root / f"e{i}").write_bytes(b"")
    assert prune.fits(root, 1 << 40)
    monkeypatch.setattr(prune, "FITS_MAX_ENTRIES", 4)
    assert not prune.fits(root, 1 << 40)


def test_fits_bounds_the_build_cache_of_a_real_store(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nWORKDIR /w\nCOPY a.txt b.bin ./\n")
    (ctx / "a.txt").write_text("a\n" * 100)
    (ctx / "b.bin").write_bytes(os.urandom(100_000))
    root = tmp_path / "root"
    run_cli("build", str(ctx), "--platform", "linux/amd64,linux/arm64", "-t", "fits:1", "--load", "--progress",
            "quiet", root=root, env={"SOURCE_DATE_EPOCH": "1700000000"})
    run_cli("build", str(ctx), "--platform", "linux/amd64", "--progress", "quiet", "--build-arg", "X=1",
            root=root, env={"SOURCE_DATE_EPOCH": "1700000001"})  # cache entries no name uses
    images = ImageStore(ContentStore(root))
    counted = usage.cache_total(usage.collect_usage(root, images).records)
    assert counted > 0
    assert not prune.fits(root, counted - 1)  # the bound is never below what the policy counts


def test_enforce_gc_reads_no_record_when_the_store_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    store = ContentStore(root)
    store.write(os.urandom(20_000))
    images = ImageStore(store)

    def no_records(*a: object, **k: object) -> None:
        raise AssertionError("records were collected")

    monkeypatch.setattr(usage, "collect_usage", no_records)
    assert prune.enforce_gc(root, images, GcPolicy(keep_storage=1 << 30)) == prune.RecordsPruned()
    with pytest.raises(AssertionError, match="records were collected"):  # over the bound: the records decide
        prune.enforce_gc(root, images, GcPolicy(keep_storage=10_000))
