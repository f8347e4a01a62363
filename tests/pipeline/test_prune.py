"""``polyarch prune`` cleans the build's own state: cache entries whose layers are gone and snapshots nothing can
use, never those of a named image, of a live cache entry, used within the grace period, or of a running build."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyarch.solver.cache import BuildCache
from polyarch.worker.snapshot import SnapshotDirs, build_lock
from tests.conftest import run_cli

from .conftest import build, by_name, needs_run, write_tree

pytestmark = [pytest.mark.root]

DOCKERFILE = "FROM base/busybox:1\nRUN echo one > /one\nRUN echo two > /two\n"


def snapshots(root: Path) -> set[str]:
    return {e.chain for e in SnapshotDirs(root).committed()}


def cache_rows(root: Path) -> int:
    with BuildCache.in_store(root) as cache:
        return len(cache.result_blobs())


@pytest.fixture
def built(store_root: Path, tmp_path: Path) -> tuple[Path, Path, set[str]]:
    """A store after a build of two RUN steps named run:1, and the snapshots of base/busybox:1 alone."""
    base_ctx = write_tree(tmp_path / "base-ctx", {"Dockerfile": "FROM base/busybox:1\nRUN true\n"})
    build(store_root, base_ctx, "--platform", "linux/amd64")
    out = run_cli("prune", "--grace", "0", root=store_root).stdout
    assert "deleted 0 build cache entries, 1 snapshots" in out  # RUN true's: an empty layer, in no image
    base_snaps = snapshots(store_root)
    assert base_snaps
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": DOCKERFILE})
    build(store_root, ctx, "--platform", "linux/amd64", "-t", "run:1", "--load")
    assert len(snapshots(store_root) - base_snaps) == 2  # one per RUN layer
    return store_root, ctx, base_snaps


@needs_run("linux/amd64")
def test_prune_keeps_the_build_state_of_named_images(built: tuple[Path, Path, set[str]]) -> None:
    root, ctx, _ = built
    before, rows = snapshots(root), cache_rows(root)
    out = run_cli("prune", "--grace", "0", root=root).stdout
    assert "deleted 0 build cache entries, 0 snapshots" in out
    assert snapshots(root) == before and cache_rows(root) == rows
    again = build(root, ctx, "--platform", "linux/amd64", "-t", "run:1", "--load")
    assert by_name(again.stderr, "RUN echo") == ["CACHED", "CACHED"]


@needs_run("linux/amd64")
def test_prune_deletes_cache_entries_and_snapshots_nothing_uses(built: tuple[Path, Path, set[str]]) -> None:
    root, ctx, base_snaps = built
    rows = cache_rows(root)
    run_cli("rm", "run:1", root=root)
    dry = run_cli("prune", "--grace", "0", "--dry-run", root=root).stdout
    assert "would delete 2 build cache entries, 2 snapshots" in dry
    assert cache_rows(root) == rows and len(snapshots(root)) == len(base_snaps) + 2
    out = run_cli("prune", "--grace", "0", root=root).stdout
    assert "deleted 2 build cache entries, 2 snapshots" in out, out
    assert snapshots(root) == base_snaps  # the base image's extracted layers stay: it is still named
    assert cache_rows(root) == rows - 2
    again = build(root, ctx, "--platform", "linux/amd64", "-t", "run:1", "--load")  # works, from scratch
    assert by_name(again.stderr, "RUN echo") == ["DONE", "DONE"]


@needs_run("linux/amd64")
def test_prune_keeps_what_the_grace_period_or_a_running_build_protects(built: tuple[Path, Path, set[str]]) -> None:
    root, _, _ = built
    run_cli("rm", "run:1", root=root)
    before = snapshots(root)
    # default grace: the unnamed layers are young, so their blobs, cache entries and snapshots all stay
    out = run_cli("prune", root=root).stdout
    assert "deleted 0 blobs" in out and "deleted 0 build cache entries, 0 snapshots" in out
    assert snapshots(root) == before
    # a build holding the build lock: blobs and cache entries may go, its snapshots stay
    with build_lock(root) as held:
        assert held
        out = run_cli("prune", "--grace", "0", root=root).stdout
    assert "snapshots kept: a build is running" in out
    assert snapshots(root) == before
    out = run_cli("prune", "--grace", "0", root=root).stdout
    assert "0 build cache entries, 2 snapshots" in out
