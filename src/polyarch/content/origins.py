"""Where the store's blobs came from: (registry, repository) pairs per blob digest, like containerd's
``containerd.io/distribution.source.<registry>=<repo>`` labels.

A pull (``polyarch pull``, build ``FROM``) records the repository it read each config and layer blob from; a push
records the repository it made each blob exist in. A later push to another repository of the same registry, in
this process or any later one, asks the registry to mount the blob from a recorded repository
(``POST …/blobs/uploads/?mount=DIGEST&from=REPO``) before uploading it.

``BlobOrigins`` is the sole owner of ``<store root>/blobsources.db`` (SQLite, versioned with ``PRAGMA user_version``
through ``polyarch.sqlschema``; a database of a newer polyarch is refused). The rows are hints: a blob the registry
no longer has in a recorded repository makes the mount fail and the blob is uploaded; rows of blobs the store has
deleted are never used (a push only pushes blobs it has). Each (blob, registry) keeps the ``KEEP`` repositories
seen last. Lookups never create the file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from polyarch.digest import Digest
from polyarch.errors import PolyarchError, StoreError
from polyarch.sqlschema import Migration, migrate, statements

__all__ = ["DB_NAME", "KEEP", "MIGRATIONS", "BlobOrigins"]

DB_NAME = "blobsources.db"
KEEP = 8  # repositories remembered per (blob, registry)

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS origins (digest TEXT NOT NULL, registry TEXT NOT NULL, repository TEXT NOT NULL,
                                    seen REAL NOT NULL, PRIMARY KEY (digest, registry, repository)) WITHOUT ROWID;
"""
MIGRATIONS: tuple[Migration, ...] = (
    statements(_SCHEMA_V1),  # 1: blob → (registry, repository) it was pulled from or pushed to
)


class BlobOrigins:
    """The blob-origin records of the store at ``root``; thread-safe; opened on first use, ``close`` after.

    :raises StoreError: (from every method) the database cannot be opened, read or written, or is newer than
        this polyarch. Callers treat the records as hints and may go on without them.
    """

    def __init__(self, root: Path | str) -> None:
        self.path = Path(root) / DB_NAME
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> BlobOrigins:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the blob origins {self.path}: {exc}") from exc
            try:
                migrate(db, MIGRATIONS, what="the blob origins database", path=self.path)
                db.execute("PRAGMA journal_mode=WAL")
            except (sqlite3.Error, PolyarchError) as exc:
                db.close()
                if isinstance(exc, PolyarchError):
                    raise
                raise StoreError(f"cannot open the blob origins {self.path}: {exc}") from exc
            self._db = db
        return self._db

    def record(self, registry: str, repository: str, digests: Iterable[Digest]) -> None:
        """Remember that every blob of ``digests`` exists in ``registry``'s ``repository`` (now)."""
        rows = sorted({str(d) for d in digests})
        if not rows:
            return
        now = time.time()
        with self._lock:
            try:
                db = self._open()
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany("INSERT OR REPLACE INTO origins (digest, registry, repository, seen) "
                                   "VALUES (?, ?, ?, ?)", [(d, registry, repository, now) for d in rows])
                    db.executemany("DELETE FROM origins WHERE digest = ? AND registry = ? AND repository NOT IN "
                                   "(SELECT repository FROM origins WHERE digest = ? AND registry = ? "
                                   "ORDER BY seen DESC, repository LIMIT ?)",
                                   [(d, registry, d, registry, KEEP) for d in rows])
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write the blob origins {self.path}: {exc}") from exc

    def repositories(self, registry: str, digests: Iterable[Digest]) -> dict[str, list[str]]:
        """For each digest (as a string) with records on ``registry``: its repositories, most recent first."""
        wanted = sorted({str(d) for d in digests})
        if not wanted or not self.path.exists():
            return {}
        out: dict[str, list[str]] = {}
        with self._lock:
            try:
                db = self._open()
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    for digest, repo in db.execute(
                            f"SELECT digest, repository FROM origins WHERE registry = ? AND digest IN ({marks}) "
                            f"ORDER BY seen DESC, repository", (registry, *chunk)):
                        out.setdefault(digest, []).append(repo)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the blob origins {self.path}: {exc}") from exc
        return out
