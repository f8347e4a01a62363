"""Online garbage collection and scrub of the registry's store.

Mark and sweep over any blob storage (the local store, or S3) and any metadata database (SQLite, or PostgreSQL
shared by replicas). One gc at a time per database (``MetadataStore.gc_lock``: a PostgreSQL advisory lock).
Roots are every manifest of the registry database and what it references, and (filesystem driver) everything
reachable from any entry of the local store's ``index.json``. A blob outside the roots is deleted only when it is
older than the grace period: both its write time and its newest repository link must be older, so a blob pushed
(or re-pushed, or mounted) during the grace period survives until its manifest arrives (distribution #3045).

The delete phase runs inside ``MetadataStore.sweep`` (one transaction that excludes every publishing write, on
every replica) while holding the ``index.json`` lock, and re-checks each candidate there: a manifest PUT validates
its blobs inside its publishing transaction, so it either sees the blob gone (400 ``MANIFEST_BLOB_UNKNOWN``) or
GC sees the new reference — never "201 then 404". Upload sessions idle longer than the grace period are purged
with their data (on S3 also multipart uploads and session objects no row owns), as are abandoned ingest temps
(those of the content store only after at least an hour, whatever the grace: builds write there too), and a
session is never purged within two minutes of its last write.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass

from polyarch.content.images import ImageStore, index_lock
from polyarch.content.store import ContentStore
from polyarch.digest import Digest, hash_file
from polyarch.errors import StoreError

from .localstore import LocalNames
from .metadata import DB_NAME, Metadata
from .metastore import MetadataStore
from .storage import BlobStorage, FilesystemStorage

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


def _purge_uploads(storage: BlobStorage, meta: MetadataStore, cutoff: float, now: float, dry_run: bool) -> int:
    purged = 0
    cutoff = min(cutoff, now - SESSION_MIN_AGE)
    stale = dict(storage.stale_sessions(cutoff))
    with_data = set(storage.sessions())
    known = set()
    for row in meta.uploads():
        known.add(row.id)
        if row.updated >= cutoff or (row.id in with_data and row.id not in stale):
            continue  # written recently (a long streaming PATCH writes the data, not the row)
        purged += 1
        if not dry_run:
            storage.forget(row.id, meta.upload_state(row.id) or "")
            if stale.get(row.id):  # multipart uploads the row does not name (a process died mid-request)
                storage.forget(row.id, stale[row.id])
            meta.finish_upload(row.id)
    for upload_id, state in stale.items():
        if upload_id in known or meta.upload(upload_id) is not None:  # a replica may have just started it
            continue
        purged += 1
        if not dry_run:
            storage.forget(upload_id, state)
    return purged


def collect_garbage(store: ContentStore, *, grace: float = 3600.0, dry_run: bool = False,
                    now: float | None = None, storage: BlobStorage | None = None,
                    meta: MetadataStore | None = None) -> GcReport:
    """Mark (the database's references, and local names with the filesystem driver) and sweep the blobs of
    ``storage`` (default: the local store) under ``meta`` (default: ``<root>/registry.db``).

    :raises StoreError: another gc holds the database's gc lock. :raises StorageUnavailable:
    """
    now = time.time() if now is None else now
    cutoff = now - grace
    storage = storage if storage is not None else FilesystemStorage(store)
    local_store = storage.name == FilesystemStorage.name
    own = meta is None
    db: MetadataStore = meta if meta is not None else Metadata(store.root / DB_NAME)
    local = LocalNames(ImageStore(store), enabled=local_store)
    try:
        with db.gc_lock() as mine:
            if not mine:
                raise StoreError("another registry gc is running on this database", hint="try again when it ends")
            uploads = _purge_uploads(storage, db, cutoff, now, dry_run)
            if local_store and not dry_run:  # other polyarch processes ingest here too: an hour at least
                store.clean_ingest(older_than=INGEST_MIN_AGE)
            roots = db.referenced_digests() | (local.all_reachable() if local_store else set())
            candidates: list[tuple[Digest, int]] = []
            recent = 0
            for digest, size in storage.list():
                text = str(digest)
                if text in roots:
                    continue
                mtime = storage.modified(digest)
                if mtime is None:
                    continue
                if mtime >= cutoff or db.last_link_touch(text) >= cutoff:
                    recent += 1
                    continue
                candidates.append((digest, size))
            if dry_run or not candidates:
                return GcReport(tuple(str(d) for d, _ in candidates), sum(s for _, s in candidates), uploads,
                                recent, dry_run)
            return _sweep(store, storage, db, local, candidates, cutoff, uploads, recent)
    finally:
        if own:
            db.close()


def _sweep(store: ContentStore, storage: BlobStorage, db: MetadataStore, local: LocalNames,
           candidates: list[tuple[Digest, int]], cutoff: float, uploads: int, recent: int) -> GcReport:
    deleted: list[str] = []
    freed = 0
    local_store = storage.name == FilesystemStorage.name
    with (index_lock(store.root) if local_store else nullcontext()), db.sweep() as sweep:
        roots = local.all_reachable() if local_store else set()  # re-read under the lock: a name may be new
        for digest, size in candidates:
            text = str(digest)
            if text in roots or sweep.is_referenced(text) or sweep.last_touch(text) >= cutoff:
                continue
            mtime = storage.modified(digest)
            if mtime is None or mtime >= cutoff:
                continue
            if storage.delete(digest):
                deleted.append(text)
                freed += size
            sweep.drop_links(text)
    return GcReport(tuple(deleted), freed, uploads, recent, False)


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
