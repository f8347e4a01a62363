"""The build's own state, cleaned by ``polyarch prune``: build cache entries and snapshots nothing can use.

``polyarch prune`` first deletes blobs no name reaches (``polyarch.content.gc``; the layers of build-cache-only
steps are such blobs once older than the grace period, like ``docker buildx prune``). Then ``prune_build_state``:

- **build cache** (``<root>/buildcache.db``): result entries whose layer blob is gone (they would only ever miss)
  and layer path indexes of gone blobs;
- **snapshots** (``<root>/snapshots/<driver>/<chain>``: extracted layers): a snapshot is *live* when the layer it
  stacks is still in use — its diff_id belongs to a named image's config or to a remaining cache entry — and
  the snapshot below it is live too (the chains of every named image are live as a whole). Other snapshots are
  deleted unless used within the grace period; leftover temp and active dirs of dead processes go as well.

Concurrent builds: every solve holds ``build_lock(root)`` shared; prune takes it exclusively *without waiting*
and, when a build is running, leaves the snapshots alone (says so) — a snapshot a running build has mounted is
never deleted. The grace period also covers builds of older polyarch versions that take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from polyarch.content.images import ImageStore
from polyarch.digest import Digest
from polyarch.errors import PolyarchError, StoreError

__all__ = ["BuildPruneResult", "build_lock", "prune_build_state"]

_LOCK_NAME = "build.lock"


@dataclass(frozen=True, slots=True)
class BuildPruneResult:
    cache_entries: int = 0
    snapshots: int = 0
    snapshot_bytes: int = 0
    skipped_busy: bool = False  # a build was running: snapshots were left alone


@contextlib.contextmanager
def build_lock(root: Path, *, exclusive: bool = False, wait: bool = True) -> Iterator[bool]:
    """``flock`` on ``<root>/snapshots/build.lock``: shared for builds, exclusive for prune.

    Yields False (holding nothing) when ``wait`` is False and the lock is taken."""
    base = root / "snapshots"
    try:
        base.mkdir(parents=True, exist_ok=True)
        fd = os.open(base / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open the build lock under {base}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _image_chains(images: ImageStore) -> tuple[set[str], set[str]]:
    """(chain ids as hex, diff_ids) of every image a name reaches."""
    from polyarch.worker.snapshot import chain_ids

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


def _prune_cache(db: sqlite3.Connection, images: ImageStore, dry_run: bool,
                 doomed: frozenset[str]) -> tuple[int, set[str]]:
    """Drop results whose blob is gone (or in ``doomed``); returns (how many, diff_ids of those that remain)."""
    store = images.store
    gone: list[str] = []
    live: set[str] = set()
    for key, value in db.execute("SELECT key, layer FROM results").fetchall():
        if value == "none":
            continue
        try:
            doc = json.loads(value)
            digest = Digest.parse(doc["descriptor"]["digest"])
        except (ValueError, KeyError, TypeError, PolyarchError):
            gone.append(key)
            continue
        if str(digest) not in doomed and store.has(digest):
            live.add(str(doc.get("diff_id", "")))
        else:
            gone.append(key)
    stale_index = [d for (d,) in db.execute("SELECT digest FROM layerindex").fetchall()
                   if d in doomed or not _has(images, d)]
    if not dry_run:
        with db:
            db.executemany("DELETE FROM results WHERE key = ?", [(k,) for k in gone])
            db.executemany("DELETE FROM layerindex WHERE digest = ?", [(d,) for d in stale_index])
    return len(gone), live


def _has(images: ImageStore, digest: str) -> bool:
    try:
        return images.store.has(Digest.parse(digest))
    except PolyarchError:
        return False


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _live_chains(db: sqlite3.Connection, image_chains: set[str], live_diffs: set[str]) -> set[str]:
    """Image chains, and recorded chains whose layer and every layer below are still in use."""
    rows = {c: (p, d) for c, p, d in db.execute("SELECT chain, parent, diff_id FROM snapshots").fetchall()}
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
            row = rows.get(chain)
            if row is None or row[1] not in live_diffs:
                result = False
                path.append(chain)
                break
            path.append(chain)
            if not row[0]:
                result = True
                break
            chain = row[0]
        for c in path:
            memo[c] = result
        return result

    return image_chains | {c for c in rows if alive(c)}


def _last_used(db: sqlite3.Connection) -> dict[str, float]:
    return {c: float(u) for c, u in db.execute("SELECT chain, used FROM snapshots").fetchall()}


def prune_build_state(root: Path, images: ImageStore, *, grace: float = 3600.0, dry_run: bool = False,
                      doomed: frozenset[str] = frozenset()) -> BuildPruneResult:
    """Clean the build cache and snapshots under ``root`` (see the module doc); call after the blob gc.

    ``doomed``: digests of blobs to treat as deleted (a dry run of the gc deletes nothing)."""
    db_path = root / "buildcache.db"
    if not db_path.exists() and not (root / "snapshots").exists():
        return BuildPruneResult()
    try:
        db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
        from polyarch.solver.cache import BuildCache

        BuildCache(db_path).close()  # create/upgrade the schema
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the build cache {db_path}: {exc}") from exc
    try:
        entries, live_diffs = _prune_cache(db, images, dry_run, doomed)
        image_chains, image_diffs = _image_chains(images)
        live = _live_chains(db, image_chains, live_diffs | image_diffs)
        with build_lock(root, exclusive=True, wait=False) as held:
            if not held:
                return BuildPruneResult(entries, skipped_busy=True)
            if not dry_run:  # no build runs: what crashed builders left (containers, mounts, bundles) goes
                from polyarch.worker.reap import reap

                reap(root, everything=True)
            count, size, deleted = _prune_snapshots(root / "snapshots", live, _last_used(db), grace, dry_run)
        if deleted and not dry_run:
            with db:
                db.executemany("DELETE FROM snapshots WHERE chain = ?", [(c,) for c in deleted])
        return BuildPruneResult(entries, count, size)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot clean the build cache {db_path}: {exc}") from exc
    finally:
        db.close()


def _prune_snapshots(base: Path, live: set[str], used: dict[str, float], grace: float,
                     dry_run: bool) -> tuple[int, int, list[str]]:
    from polyarch.worker import linux

    cutoff = time.time() - grace
    count = size = 0
    deleted: list[str] = []
    for driver in ("overlay", "copy"):
        top = base / driver
        if not top.is_dir():
            continue
        for entry in top.iterdir():
            if entry.name in ("tmp", "active"):
                continue
            if entry.name in live or len(entry.name) != 64:
                continue
            try:
                if max(entry.lstat().st_mtime, used.get(entry.name, 0.0)) > cutoff:
                    continue
            except FileNotFoundError:
                continue
            count += 1
            size += _tree_size(entry)
            deleted.append(entry.name)
            if not dry_run:
                shutil.rmtree(entry, ignore_errors=True)
        if dry_run:
            continue
        for entry in list((top / "tmp").iterdir()) if (top / "tmp").is_dir() else []:
            with contextlib.suppress(OSError):
                if entry.lstat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
        for entry in list((top / "active").iterdir()) if (top / "active").is_dir() else []:
            pid = entry.name.split("-", 1)[0]
            if pid.isdigit() and Path(f"/proc/{pid}").exists():
                continue
            with contextlib.suppress(PolyarchError):
                linux.umount(entry / "merged", detach=True)
            shutil.rmtree(entry, ignore_errors=True)
    return count, size, deleted
