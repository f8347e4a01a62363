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

- **cache mounts** (``RUN --mount=type=cache`` dirs) not used within the grace period and held by no step
  (``prune_cache_mounts``).

With ``--filter``, ``--keep-storage`` or ``--all`` (``prune_records``) prune works on the records of
``pipeline.usage`` instead, as ``docker buildx prune``: the records not in use that match every filter
(``until``: last used at least that long ago; ``type``; ``id``) are deleted; with ``keep_storage`` only the least
recently used of them, until the build cache (``usage.cache_total``) holds at most that many bytes; ``--all``
alone: every record not in use. Deleting a snapshot deletes the snapshots stacked on it. What builders left
(leftover records) goes through ``worker.reap``. ``enforce_gc`` runs the same with a ``GcPolicy``
(``keep_duration`` as ``until``) after a successful build, and only when the cache holds more than
``keep_storage``. Both need the build lock exclusively; when a build runs they delete nothing (say so).
``enforce_gc`` first checks a cheap bound (``fits``): when everything under the root adds up to at most
``keep_storage``, nothing can be over it and no record is collected, read or imported (``pipeline.usage``,
``worker.mounts`` load only when records are needed).

This module decides; the owners do: the database is read and changed through ``solver.cache.BuildCache``, the
snapshot directories through ``worker.snapshot.SnapshotDirs``, cache mounts through ``worker.mounts``, blobs
through the content store.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from polyarch.content.images import ImageStore
from polyarch.digest import Digest
from polyarch.errors import PolyarchError
from polyarch.solver.cache import BuildCache, SnapshotUse
from polyarch.worker.snapshot import Leftover, SnapshotDirs, SnapshotEntry

from .gcpolicy import GcPolicy

if TYPE_CHECKING:
    from .usage import Record, RecordFilter

__all__ = ["BuildPruneResult", "RecordsPruned", "enforce_gc", "fits", "prune_build_state", "prune_cache_mounts",
           "prune_records"]

FITS_MAX_ENTRIES = 5000  # ``fits`` looks at no more entries than this (a larger store: the records decide)


@dataclass(frozen=True, slots=True)
class BuildPruneResult:
    cache_entries: int = 0
    snapshots: int = 0
    snapshot_bytes: int = 0
    skipped_busy: bool = False  # a build was running: snapshots and cache mounts were left alone
    cache_mounts: int = 0
    cache_mount_bytes: int = 0


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


def _live_chains(uses: dict[str, SnapshotUse], named: set[str], live_diffs: set[str]) -> set[str]:
    """Image chains, and recorded chains whose layer and every layer below are still in use."""
    memo: dict[str, bool] = {}

    def alive(chain: str) -> bool:
        path: list[str] = []
        while True:  # iterative walk down the stack: deep stacks are fine
            if chain in memo:
                result = memo[chain]
                break
            if chain in named:
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

    return named | {c for c in uses if alive(c)}


def prune_build_state(root: Path, images: ImageStore, *, grace: float = 3600.0, dry_run: bool = False,
                      doomed: frozenset[str] = frozenset()) -> BuildPruneResult:
    """Clean the build cache and snapshots under ``root`` (see the module doc); call after the blob gc.

    ``doomed``: digests of blobs to treat as deleted (a dry run of the gc deletes nothing)."""
    from polyarch.worker.mounts import cache_mount_dirs

    from .usage import image_chains

    dirs = SnapshotDirs(root)
    if not BuildCache.exists_in(root) and not dirs.exists() and not cache_mount_dirs(root):
        return BuildPruneResult()
    with BuildCache.in_store(root) as cache:
        entries, live_diffs = _prune_cache(cache, images, dry_run, doomed)
        named_chains, image_diffs = image_chains(images)
        uses = cache.snapshot_uses()
        live = _live_chains(uses, named_chains, live_diffs | image_diffs)
        with dirs.lock(exclusive=True, wait=False) as held:
            if not held:
                return BuildPruneResult(entries, skipped_busy=True)
            if not dry_run:  # no build runs: what crashed builders left (containers, mounts, bundles) goes
                from polyarch.worker.reap import reap

                reap(root, everything=True)
            count, size, deleted = _prune_snapshots(dirs, live, uses, grace, dry_run)
            mounts, mount_bytes = prune_cache_mounts(root, grace=grace, dry_run=dry_run)
        if deleted and not dry_run:
            cache.forget_snapshots(deleted)
        return BuildPruneResult(entries, count, size, cache_mounts=mounts, cache_mount_bytes=mount_bytes)


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


def prune_cache_mounts(root: Path, *, grace: float, dry_run: bool = False) -> tuple[int, int]:
    """Delete cache mounts not used within ``grace`` seconds that no step holds; returns (count, bytes).

    Call holding the build lock exclusively (no build runs)."""
    from polyarch.worker.mounts import cache_mount_dirs, remove_cache_mount

    cutoff = time.time() - grace
    count = size = 0
    for mount in cache_mount_dirs(root):
        if mount.busy or mount.last_used > cutoff:
            continue
        if dry_run or remove_cache_mount(mount):
            count += 1
            size += mount.size
    return count, size


@dataclass(frozen=True, slots=True)
class RecordsPruned:
    """What ``prune_records``/``enforce_gc`` deleted (or, in a dry run, would): the records, the cache's size
    before and after; ``skipped_busy``: a build was running, nothing was deleted."""

    records: tuple[Record, ...] = ()
    before: int = 0
    after: int = 0
    skipped_busy: bool = False

    @property
    def size(self) -> int:
        return sum(r.size for r in self.records)


def _with_children(chosen: Record, by_parent: dict[str, list[Record]], taken: set[int]) -> list[Record]:
    """``chosen`` and, for a snapshot, every snapshot stacked on it (not yet taken)."""
    out: list[Record] = []
    stack = [chosen]
    while stack:
        r = stack.pop()
        if id(r) in taken:
            continue
        taken.add(id(r))
        out.append(r)
        if r.kind == "snapshot":
            stack.extend(c for c in by_parent.get(r.id, ()) if not c.in_use)
    return out


def select(records: Sequence[Record], flt: RecordFilter, *, keep_storage: int | None,
           now: float) -> list[Record]:
    """The records to delete (see the module doc): matching and not in use; LRU first down to ``keep_storage``."""
    from .usage import cache_total

    by_parent: dict[str, list[Record]] = {}
    for r in records:
        if r.kind == "snapshot" and r.parent:
            by_parent.setdefault(r.parent, []).append(r)
    candidates = sorted((r for r in records if not r.in_use and flt.match(r, now)), key=lambda r: r.last_used)
    taken: set[int] = set()
    chosen: list[Record] = []
    total = cache_total(records)
    for r in candidates:
        if keep_storage is not None and total <= keep_storage:
            break
        for d in _with_children(r, by_parent, taken):
            chosen.append(d)
            if not d.image:
                total -= d.size
    return chosen


def _delete(root: Path, images: ImageStore, doomed: Iterable[Record]) -> list[Record]:
    """Delete ``doomed`` through their owners; returns those actually deleted (a cache mount a step took
    meanwhile stays)."""
    from polyarch.worker.mounts import remove_cache_mount

    doomed = list(doomed)
    done: list[Record] = []
    store = images.store
    if any(r.kind == "leftover" for r in doomed):
        from polyarch.worker.reap import reap

        # no build runs (the caller holds the build lock): kills, unmounts (under snapshots/ too) and removes
        # what dead builders left — active dirs and bundles are reap's alone, never removed through a mount
        reap(root, everything=True)
    dirs = SnapshotDirs(root)
    results = [r for r in doomed if r.kind == "result"]
    snaps = [r for r in doomed if r.kind == "snapshot"]
    if results or snaps:
        with BuildCache.in_store(root) as cache:
            keys = [k for r in results for k in r.ref[0]]  # type: ignore[index]
            blobs = [str(r.ref[1]) for r in results if r.ref[1] is not None]  # type: ignore[index]
            cache.forget(results=keys, layer_indexes=blobs)
            if snaps:
                cache.forget_snapshots([r.id for r in snaps])
    for r in doomed:
        if r.kind == "result":
            if r.ref[1] is not None:  # type: ignore[index]
                store.delete(r.ref[1])  # type: ignore[index]
        elif r.kind == "snapshot":
            assert isinstance(r.ref, SnapshotEntry)
            dirs.remove(r.ref)
        elif r.kind == "cachemount":
            if not remove_cache_mount(r.ref):  # type: ignore[arg-type]
                continue
        elif r.kind == "blob":
            assert isinstance(r.ref, Digest)
            store.delete(r.ref)
        elif r.kind == "leftover":
            if isinstance(r.ref, Leftover):
                if r.ref.area.endswith("/tmp"):
                    dirs.remove_leftover(r.ref)
            elif isinstance(r.ref, Path) and r.ref.parent.name != "bundles":
                _remove_path(r.ref)  # an ingest temp file
            if isinstance(r.ref, Leftover | Path) and os.path.lexists(r.ref.path if isinstance(r.ref, Leftover)
                                                                      else r.ref):
                continue  # reap left it (something still mounted there)
        done.append(r)
    return done


def _remove_path(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def prune_records(root: Path, images: ImageStore, flt: RecordFilter, *, keep_storage: int | None = None,
                  keep: Iterable[Digest] = (), dry_run: bool = False) -> RecordsPruned:
    """``polyarch prune --filter/--keep-storage/--all``: see the module doc."""
    from .usage import cache_total, collect_usage

    dirs = SnapshotDirs(root)
    with dirs.lock(exclusive=True, wait=False) as held:
        if not held:
            return RecordsPruned(skipped_busy=True)
        now = time.time()
        records = collect_usage(root, images, keep=keep, now=now).records
        before = cache_total(records)
        chosen = select(records, flt, keep_storage=keep_storage, now=now)
        done = chosen if dry_run else _delete(root, images, chosen)
        return RecordsPruned(tuple(done), before, before - sum(r.size for r in done if not r.image))


def enforce_gc(root: Path, images: ImageStore, policy: GcPolicy, *, keep: Iterable[Digest] = ()) -> RecordsPruned:
    """After a successful build: cut the build cache back to ``policy`` (nothing when disabled, without a size
    limit, under it, or while another build runs)."""
    if not policy.enabled or policy.keep_storage <= 0 or fits(root, policy.keep_storage):
        return RecordsPruned()
    from .usage import RecordFilter

    flt = RecordFilter(until=policy.keep_duration or None)
    return prune_records(root, images, flt, keep_storage=policy.keep_storage, keep=keep)


def fits(root: Path, limit: int) -> bool:
    """True when the store at ``root`` cannot hold more than ``limit`` bytes of build cache, so no gc policy of
    that limit collects anything: the ``lstat`` sizes of every entry under ``root`` add up to at most ``limit``.
    That sum bounds ``usage.cache_total`` from above: each record is a set of distinct entries under ``root``
    counted at the same sizes (a blob's file size; ``du -sb`` of a snapshot, cache mount or leftover tree, which
    counts a hard-linked file once where this sum counts every link). False, leaving the decision to the
    records, as soon as the sum passes ``limit``, after ``FITS_MAX_ENTRIES`` entries, on an entry of another
    filesystem (a record's tree may start there) and on any error (an entry that went away meanwhile)."""
    try:
        top = os.lstat(root)
    except OSError:
        return False
    total, count, stack = top.st_size, 0, [os.fspath(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as listing:
                entries = list(listing)
        except OSError:
            return False
        for entry in entries:
            count += 1
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                return False
            total += st.st_size
            if count > FITS_MAX_ENTRIES or st.st_dev != top.st_dev or total > limit:
                return False
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
    return True
