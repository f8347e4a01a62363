"""The build's own state, cleaned by ``polyarch prune``: build cache entries and snapshots nothing can use.

``polyarch prune`` first deletes blobs no name reaches (``polyarch.content.gc``; the layers of build-cache-only
steps are such blobs once older than the grace period, like ``docker buildx prune``). Then ``prune_build_state``:

- **build cache** (``<root>/buildcache.db``): result entries whose layer blob is gone (they would only ever miss)
  and layer path indexes of gone blobs;
- **snapshots** (``<root>/snapshots/<driver>/<chain>``: extracted layers): a snapshot is *live* when the layer it
  stacks is still in use — its diff_id belongs to a named image's config or to a remaining cache entry — and
  the snapshot below it is live too (the chains of every named image are live as a whole). Other snapshots are
  deleted unless used within the grace period; leftover temp and active dirs of dead processes go as well.

Concurrent builds: every solve holds ``worker.snapshot.build_lock(root)`` shared; prune takes it exclusively
*without waiting* and, when a build is running, leaves the snapshots alone (says so) — a snapshot a running build
has mounted is never deleted. The grace period also covers builds of older polyarch versions that take no lock.

This module decides; the owners do: the database is read and changed through ``solver.cache.BuildCache``, the
snapshot directories through ``worker.snapshot.SnapshotDirs``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from polyarch.content.images import ImageStore
from polyarch.digest import Digest
from polyarch.errors import PolyarchError
from polyarch.solver.cache import BuildCache, SnapshotUse
from polyarch.worker.snapshot import SnapshotDirs, chain_ids

__all__ = ["BuildPruneResult", "prune_build_state"]


@dataclass(frozen=True, slots=True)
class BuildPruneResult:
    cache_entries: int = 0
    snapshots: int = 0
    snapshot_bytes: int = 0
    skipped_busy: bool = False  # a build was running: snapshots were left alone


def _image_chains(images: ImageStore) -> tuple[set[str], set[str]]:
    """(chain ids as hex, diff_ids) of every image a name reaches."""
    chains: set[str] = set()
    diff_ids: set[str] = set()
    for _, desc in images.names():
        try:
            imgs = images.images(desc)
        except PolyarchError:
            continue
        for img in imgs:
            diff_ids.update(str(d) for d in img.config.diff_ids)
            chains.update(c.hex for c in chain_ids(list(img.config.diff_ids)))
    return chains, diff_ids


def _prune_cache(cache: BuildCache, images: ImageStore, dry_run: bool,
                 doomed: frozenset[str]) -> tuple[int, set[str]]:
    """Drop results whose blob is gone (or in ``doomed``); returns (how many, diff_ids of those that remain)."""
    store = images.store
    gone: list[str] = []
    live: set[str] = set()
    for entry in cache.result_blobs():
        if entry.blob is not None and str(entry.blob) not in doomed and store.has(entry.blob):
            live.add(entry.diff_id)
        else:
            gone.append(entry.key)
    stale_index = [d for d in cache.layer_index_digests() if d in doomed or not _has(images, d)]
    if not dry_run:
        cache.forget(results=gone, layer_indexes=stale_index)
    return len(gone), live


def _has(images: ImageStore, digest: str) -> bool:
    try:
        return images.store.has(Digest.parse(digest))
    except PolyarchError:
        return False


def _live_chains(uses: dict[str, SnapshotUse], image_chains: set[str], live_diffs: set[str]) -> set[str]:
    """Image chains, and recorded chains whose layer and every layer below are still in use."""
    memo: dict[str, bool] = {}

    def alive(chain: str) -> bool:
        path: list[str] = []
        while True:  # iterative walk down the stack: deep stacks are fine
            if chain in memo:
                result = memo[chain]
                break
            if chain in image_chains:
                result = True
                break
            use = uses.get(chain)
            if use is None or use.diff_id not in live_diffs:
                result = False
                path.append(chain)
                break
            path.append(chain)
            if not use.parent:
                result = True
                break
            chain = use.parent
        for c in path:
            memo[c] = result
        return result

    return image_chains | {c for c in uses if alive(c)}


def prune_build_state(root: Path, images: ImageStore, *, grace: float = 3600.0, dry_run: bool = False,
                      doomed: frozenset[str] = frozenset()) -> BuildPruneResult:
    """Clean the build cache and snapshots under ``root`` (see the module doc); call after the blob gc.

    ``doomed``: digests of blobs to treat as deleted (a dry run of the gc deletes nothing)."""
    dirs = SnapshotDirs(root)
    if not BuildCache.exists_in(root) and not dirs.exists():
        return BuildPruneResult()
    with BuildCache.in_store(root) as cache:
        entries, live_diffs = _prune_cache(cache, images, dry_run, doomed)
        image_chains, image_diffs = _image_chains(images)
        uses = cache.snapshot_uses()
        live = _live_chains(uses, image_chains, live_diffs | image_diffs)
        with dirs.lock(exclusive=True, wait=False) as held:
            if not held:
                return BuildPruneResult(entries, skipped_busy=True)
            if not dry_run:  # no build runs: what crashed builders left (containers, mounts, bundles) goes
                from polyarch.worker.reap import reap

                reap(root, everything=True)
            count, size, deleted = _prune_snapshots(dirs, live, uses, grace, dry_run)
        if deleted and not dry_run:
            cache.forget_snapshots(deleted)
        return BuildPruneResult(entries, count, size)


def _prune_snapshots(dirs: SnapshotDirs, live: set[str], uses: dict[str, SnapshotUse], grace: float,
                     dry_run: bool) -> tuple[int, int, list[str]]:
    """Delete snapshots neither live nor used (or changed) within ``grace``; returns (count, bytes, chains)."""
    cutoff = time.time() - grace
    count = size = 0
    deleted: list[str] = []
    for entry in dirs.committed():
        used = uses[entry.chain].used if entry.chain in uses else 0.0
        if entry.chain in live or max(entry.mtime, used) > cutoff:
            continue
        count += 1
        size += dirs.size(entry)
        deleted.append(entry.chain)
        if not dry_run:
            dirs.remove(entry)
    if not dry_run:
        dirs.clean_leftovers(cutoff)
    return count, size, deleted
