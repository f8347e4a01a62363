"""Registry metadata in SQLite beside the content store (``<root>/registry.db``, WAL mode): the default
``metastore.MetadataStore``.

Blobs themselves live once in the content store; this database holds what the store cannot: repositories,
repo→blob links (who may read a blob), manifests per repository with what they reference (for GC and the
referrers API), tags, and upload sessions. One writer at a time (``BEGIN IMMEDIATE`` under a process lock);
every write is one transaction, so a crash leaves either the old or the new state. Readers use one connection
per thread and never block writers (WAL). The schema is versioned (``PRAGMA user_version``, ``polyarch.sqlschema``):
a database of an older polyarch is migrated on open, one of a newer polyarch refused and left as it is.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from polyarch.errors import StoreError
from polyarch.sqlschema import Migration, migrate, statements

from .metastore import ManifestRow
from .sqlcommon import SqlCommon

__all__ = ["DB_NAME", "MIGRATIONS", "Metadata"]

DB_NAME = "registry.db"
# Migration 1 as released: never edit a step that has shipped, append a new one.
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS repos (name TEXT PRIMARY KEY, created REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS links (
  repo TEXT NOT NULL, digest TEXT NOT NULL, touched REAL NOT NULL, PRIMARY KEY (repo, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_digest ON links (digest);
CREATE TABLE IF NOT EXISTS manifests (
  repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, size INTEGER NOT NULL,
  artifact_type TEXT NOT NULL DEFAULT '', subject TEXT, annotations TEXT NOT NULL DEFAULT '{}',
  created REAL NOT NULL, PRIMARY KEY (repo, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests (repo, subject);
CREATE INDEX IF NOT EXISTS manifests_digest ON manifests (digest);
CREATE TABLE IF NOT EXISTS refs (
  repo TEXT NOT NULL, manifest TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY (repo, manifest, target))
  WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_target ON refs (target);
CREATE TABLE IF NOT EXISTS tags (
  repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (repo, tag))
  WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_digest ON tags (repo, digest);
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY, repo TEXT NOT NULL, algorithm TEXT NOT NULL, offset INTEGER NOT NULL,
  created REAL NOT NULL, updated REAL NOT NULL) WITHOUT ROWID;
"""
# Migration 2: an image manifest without ``artifactType`` is listed by the referrers API with its config's media
# type (distribution-spec 1.1). Rows stored before that left it empty only for an OCI image manifest whose config
# was the standard OCI image config (any other config type was stored), so that type is exactly what they lack.
_ARTIFACT_TYPE_FROM_CONFIG = """
UPDATE manifests SET artifact_type = 'application/vnd.oci.image.config.v1+json'
  WHERE artifact_type = '' AND media_type = 'application/vnd.oci.image.manifest.v1+json';
"""
# Migration 3: what the storage driver needs to continue a session after a restart (``storage/protocol.py``).
_UPLOAD_STATE = "ALTER TABLE uploads ADD COLUMN state TEXT NOT NULL DEFAULT '';"
# Migration 4: the client address of a session, and indexes to count open sessions per repository and per client
# in the database (``create_upload``'s limits, shared by every process using it).
_UPLOAD_CLIENT = """
ALTER TABLE uploads ADD COLUMN client TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS uploads_repo ON uploads (repo, updated);
CREATE INDEX IF NOT EXISTS uploads_client ON uploads (client, updated);
"""
MIGRATIONS: tuple[Migration, ...] = (
    statements(_SCHEMA_V1),  # 1: the schema before versions were recorded (polyarch up to issue 14)
    statements(_ARTIFACT_TYPE_FROM_CONFIG),  # 2: image manifests' artifact type falls back to the config's
    statements(_UPLOAD_STATE),  # 3: a session's storage state (S3 multipart upload) beside its offset
    statements(_UPLOAD_CLIENT),  # 4: a session's client address; open sessions counted per repository and client
)


class Metadata(SqlCommon):
    """The registry database (``metastore.MetadataStore`` over SQLite); thread-safe. Close with ``close()``."""

    shared = False  # one registry process per store (``serve.single_instance``); ``registry gc`` beside it

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        try:
            first = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            try:  # before any pragma that writes: a database of a newer polyarch is left untouched
                migrate(first, MIGRATIONS, what="the registry database", path=self.path)
            finally:
                first.close()
            self._conn()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open registry database {path}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()

    # --- transactions --------------------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction; other writers (this process or ``registry gc``) wait."""
        conn = self._conn()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise StoreError(f"registry database write failed: {exc}") from exc

    def _one(self, sql: str, args: Sequence[Any]) -> tuple[Any, ...] | None:
        return self._conn().execute(sql, args).fetchone()  # type: ignore[no-any-return]

    def _all(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._conn().execute(sql, args).fetchall()

    # --- reads ----------------------------------------------------------------------------------------------

    # --- writes ---------------------------------------------------------------------------------------------

    def link(self, repo: str, digest: str) -> None:
        now = time.time()
        with self.write() as c:
            _ensure_repo(c, repo, now)
            c.execute("INSERT INTO links VALUES (?,?,?) ON CONFLICT(repo, digest) DO UPDATE SET touched=excluded.touched",
                      (repo, digest, now))

    def unlink(self, repo: str, digest: str) -> None:
        with self.write() as c:
            c.execute("DELETE FROM links WHERE repo=? AND digest=?", (repo, digest))

    def put_manifest(self, row: ManifestRow, refs: Sequence[str], tags: Sequence[str],
                     check: Callable[[], None]) -> None:
        """Record a manifest and move every tag of ``tags`` to it, atomically (all or none); ``check`` runs inside
        the transaction, so a concurrent GC cannot delete a referenced blob between the check and the commit."""
        now = time.time()
        with self.write() as c:
            check()
            _ensure_repo(c, row.repo, now)
            c.execute("INSERT INTO manifests VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(repo, digest) DO UPDATE SET "
                      "media_type=excluded.media_type, size=excluded.size", (
                          row.repo, row.digest, row.media_type, row.size, row.artifact_type, row.subject,
                          json.dumps(row.annotations), now))
            c.executemany("INSERT OR IGNORE INTO refs VALUES (?,?,?)", [(row.repo, row.digest, t) for t in refs])
            c.execute("INSERT INTO links VALUES (?,?,?) ON CONFLICT(repo, digest) DO UPDATE SET "
                      "touched=excluded.touched", (row.repo, row.digest, now))
            c.executemany("INSERT INTO tags VALUES (?,?,?,?) ON CONFLICT(repo, tag) DO UPDATE SET "
                          "digest=excluded.digest, updated=excluded.updated",
                          [(row.repo, tag, row.digest, now) for tag in tags])

    def _serialize_uploads(self, c: sqlite3.Connection) -> None:
        """Nothing to add: ``BEGIN IMMEDIATE`` already makes every writer of the file (any process) take turns."""

    def advance_upload(self, upload_id: str, offset: int, state: str = "") -> bool:
        """Record a session's offset and its storage driver's state (``storage.UploadWriter.flush``)."""
        with self.write() as c:
            return c.execute("UPDATE uploads SET offset=?, state=?, updated=? WHERE id=?",
                             (offset, state, time.time(), upload_id)).rowcount > 0

    def finish_upload(self, upload_id: str, repo: str | None = None, digest: str | None = None) -> bool:
        """Delete the session row; with ``digest``, link the blob to ``repo`` in the same transaction."""
        now = time.time()
        with self.write() as c:
            gone = c.execute("DELETE FROM uploads WHERE id=?", (upload_id,)).rowcount > 0
            if gone and repo is not None and digest is not None:
                _ensure_repo(c, repo, now)
                c.execute("INSERT INTO links VALUES (?,?,?) ON CONFLICT(repo, digest) DO UPDATE SET "
                          "touched=excluded.touched", (repo, digest, now))
            return gone

    def clear_uploads(self) -> list[str]:
        with self.write() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM uploads").fetchall()]
            c.execute("DELETE FROM uploads")
            return ids


    @contextmanager
    def sweep(self) -> Iterator[_SqliteSweep]:
        """gc's delete phase: one write transaction (every other writer waits)."""
        with self.write() as conn:
            yield _SqliteSweep(conn)

    @contextmanager
    def gc_lock(self) -> Iterator[bool]:
        """Two collectors of one SQLite database cannot harm each other: each sweep is one write transaction."""
        yield True


class _SqliteSweep:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def is_referenced(self, digest: str) -> bool:
        return (self._c.execute("SELECT 1 FROM refs WHERE target=? LIMIT 1", (digest,)).fetchone() is not None
                or self._c.execute("SELECT 1 FROM manifests WHERE digest=? LIMIT 1", (digest,)).fetchone()
                is not None)

    def last_touch(self, digest: str) -> float:
        row = self._c.execute("SELECT MAX(touched) FROM links WHERE digest=?", (digest,)).fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0

    def drop_links(self, digest: str) -> None:
        self._c.execute("DELETE FROM links WHERE digest=?", (digest,))


def _ensure_repo(c: sqlite3.Connection, repo: str, now: float) -> None:
    c.execute("INSERT OR IGNORE INTO repos VALUES (?,?)", (repo, now))
