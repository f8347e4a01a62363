"""Online garbage collection and scrub of the registry's store.

Roots are every manifest of the registry database and what it references, and everything reachable from any
entry of the local store's ``index.json``. A blob outside the roots is deleted only when it is older than the
grace period: both its file time and its newest repository link must be older, so a blob pushed (or
re-pushed, or mounted) during the grace period survives until its manifest arrives (distribution #3045).

The delete phase runs inside one registry write transaction while holding the ``index.json`` lock, and
re-checks each candidate there: a manifest PUT validates its blobs in a write transaction too, so it either
sees the blob gone (400 ``MANIFEST_BLOB_UNKNOWN``) or GC sees the new reference — never "201 then 404".
Upload sessions idle longer than the grace period are purged with their data, as are abandoned ingest temps
(those of the content store only after at least an hour, whatever the grace: builds write there too), and a
session is never purged within two minutes of its last write.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from polyarch.content.images import ImageStore, index_lock
from polyarch.content.store import ContentStore
from polyarch.digest import Digest, hash_file

from .localstore import LocalNames
from .metadata import DB_NAME, Metadata

__all__ = ["GcReport", "collect_garbage", "registry_roots", "scrub"]


INGEST_MIN_AGE = 3600.0
SESSION_MIN_AGE = 120.0  # twice the server's default body timeout: a session touched since is still in use


@dataclass(frozen=True, slots=True)
class GcReport:
    deleted: tuple[str, ...]
    bytes_freed: int
    uploads_purged: int
    kept_recent: int
    dry_run: bool





def registry_roots(store: ContentStore) -> set[str]:
    """Digests the registry database references (for other collectors such as ``polyarch prune``)."""
    path = store.root / DB_NAME
    if not path.exists():
        return set()
    meta = Metadata(path)
    try:
        return meta.referenced_digests()
    finally:
        meta.close()


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _purge_uploads(store: ContentStore, meta: Metadata, cutoff: float, now: float, dry_run: bool) -> int:
    purged = 0
    folder = store.root / "registry" / "uploads"
    cutoff = min(cutoff, now - SESSION_MIN_AGE)
    known = set()
    for row in meta.uploads():
        known.add(row.id)
        written = _mtime(folder / row.id) or 0.0  # a long streaming PATCH updates the file, not the row
        if row.updated < cutoff and written < cutoff:
            purged += 1
            if not dry_run:
                meta.finish_upload(row.id)
                try:
                    os.unlink(folder / row.id)
                except OSError:
                    pass
    if folder.is_dir():
        for entry in os.scandir(folder):
            if entry.name in known:
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    purged += 1
                    if not dry_run:
                        os.unlink(entry.path)
            except OSError:
                continue
    if not dry_run:  # other polyarch processes ingest here too: never touch a temp younger than an hour
        store.clean_ingest(older_than=INGEST_MIN_AGE)
    return purged


def collect_garbage(store: ContentStore, *, grace: float = 3600.0, dry_run: bool = False,
                    now: float | None = None) -> GcReport:
    now = time.time() if now is None else now
    cutoff = now - grace
    meta = Metadata(store.root / DB_NAME)
    local = LocalNames(ImageStore(store))
    try:
        uploads = _purge_uploads(store, meta, cutoff, now, dry_run)
        roots = meta.referenced_digests() | local.all_reachable()
        candidates: list[tuple[Digest, int]] = []
        recent = 0
        for digest, size in store.list():
            text = str(digest)
            if text in roots:
                continue
            mtime = _mtime(store.blob_path(digest))
            if mtime is None:
                continue
            if mtime >= cutoff or meta.last_link_touch(text) >= cutoff:
                recent += 1
                continue
            candidates.append((digest, size))
        if dry_run or not candidates:
            return GcReport(tuple(str(d) for d, _ in candidates), sum(s for _, s in candidates), uploads, recent,
                            dry_run)
        deleted: list[str] = []
        freed = 0
        with index_lock(store.root), meta.write() as conn:
            roots = local.all_reachable()  # re-read under the lock: a name may have just been set
            for digest, size in candidates:
                text = str(digest)
                if text in roots or meta.is_referenced(conn, text):
                    continue
                touched = conn.execute("SELECT MAX(touched) FROM links WHERE digest=?", (text,)).fetchone()[0]
                mtime = _mtime(store.blob_path(digest))
                if mtime is None or mtime >= cutoff or (touched is not None and touched >= cutoff):
                    continue
                if store.delete(digest):
                    deleted.append(text)
                    freed += size
                conn.execute("DELETE FROM links WHERE digest=?", (text,))
        return GcReport(tuple(deleted), freed, uploads, recent, dry_run)
    finally:
        meta.close()


def scrub(store: ContentStore, *, repair: bool = True) -> list[str]:
    """Re-hash every blob; with ``repair``, delete those whose bytes do not match their digest (a blob that is
    served must hash to its name). Returns the bad digests."""
    bad = []
    for digest, _ in store.list():
        try:
            got, _size = hash_file(store.blob_path(digest), digest.algorithm)
        except FileNotFoundError:
            continue
        if got != digest:
            bad.append(str(digest))
            if repair:
                store.delete(digest)
    return bad
