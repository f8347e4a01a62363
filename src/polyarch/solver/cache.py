"""The persistent build cache: SQLite beside the content store (``<root>/buildcache.db``).

One table maps a cache key to the layer the step produced (descriptor + diff_id) or to "no layer" (a step that
changed nothing); a second keeps content hashes of files keyed by (path, size, mtime, inode) so a no-change
rebuild does not re-read the build context (the path as its bytes: a name need not be UTF-8); a third keeps the path index of layer blobs (``rootview``) so a
large base image is read once, not on every build. An entry is only trusted when its blob is still in the store
(``polyarch prune`` may have removed it); a fourth records which snapshot (chain id) stacks which layer on which
parent and when a build last used it, so ``polyarch prune`` knows which snapshots can still serve a build
(``polyarch.pipeline.prune``). Safe for threads: each call opens a short transaction under a lock.

This module is the only one that opens the database or knows its tables: ``BuildCache.in_store(root)`` opens
the one of a store, and ``polyarch prune`` reads and deletes through ``result_blobs``, ``layer_index_digests``,
``snapshot_uses``, ``forget`` and ``forget_snapshots``; ``polyarch du`` and the prune filters read
``result_uses`` (each entry's last use: created, or hit — ``get`` refreshes it at most once a minute). The schema is versioned (``PRAGMA user_version``,
``polyarch.sqlschema``): a database of an older polyarch is migrated on open, one of a newer polyarch refused.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from polyarch.digest import Digest
from polyarch.errors import PolyarchError, StoreError
from polyarch.sqlschema import Migration, migrate, statements

from .state import Layer

__all__ = ["DB_NAME", "MIGRATIONS", "NO_LAYER", "BuildCache", "ResultBlob", "ResultUse", "SnapshotUse"]

DB_NAME = "buildcache.db"
NO_LAYER = "none"
# Migration 1 as released: never edit a step that has shipped, append a new one.
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, layer TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS filehash (path TEXT PRIMARY KEY, sig TEXT NOT NULL, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layerindex (digest TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (chain TEXT PRIMARY KEY, parent TEXT NOT NULL, diff_id TEXT NOT NULL,
                                      used REAL NOT NULL);
"""
MIGRATIONS: tuple[Migration, ...] = (
    statements(_SCHEMA_V1),  # 1: the schema before versions were recorded (polyarch up to issue 14)
    # 2: when a result was last used (a cache hit), for 'polyarch du/prune --filter until=' and the gc policy
    statements("ALTER TABLE results ADD COLUMN used REAL NOT NULL DEFAULT 0;"),
)
_TOUCH_EVERY = 60.0  # a hit refreshes the last-use time at most once a minute (no write on every hit)


@dataclass(frozen=True, slots=True)
class ResultBlob:
    """A result entry with a layer: its key, the layer's blob (None when the entry is unreadable) and diff_id."""

    key: str
    blob: Digest | None
    diff_id: str


@dataclass(frozen=True, slots=True)
class ResultUse:
    """A result entry for ``polyarch du``: its key, its layer's blob (None for a step that added no layer, or
    an unreadable entry), diff_id, and when it was last used (created or hit)."""

    key: str
    blob: Digest | None
    diff_id: str
    last_used: float
    has_layer: bool


@dataclass(frozen=True, slots=True)
class SnapshotUse:
    """A snapshot a build used: its chain id (hex), the parent's ("" for a base layer), its layer, when."""

    chain: str
    parent: str
    diff_id: str
    used: float


class BuildCache:
    """Key → layer results; ``enabled=False`` (``--no-cache``) makes every lookup miss but still records."""

    def __init__(self, path: Path | str, *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the build cache {self.path}: {exc}") from exc
        try:
            migrate(self._db, MIGRATIONS, what="the build cache", path=self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            # Each record is its own transaction (autocommit); FULL would fsync the WAL for each of them (a COPY of
            # 200 files: 200 fsyncs, ~40 ms). NORMAL syncs at checkpoints: a power loss may drop the newest
            # records, never corrupt the database, and every record is a hint checked before use (a layer whose
            # blob is missing is a miss; file hashes are keyed by stat signature; path indexes by blob digest).
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot open the build cache {self.path}: {exc}") from exc
        except PolyarchError:
            self._db.close()
            raise

    @classmethod
    def in_store(cls, root: Path | str, *, enabled: bool = True) -> BuildCache:
        """The build cache of the store at ``root`` (``<root>/buildcache.db``), created when missing."""
        return cls(Path(root) / DB_NAME, enabled=enabled)

    @staticmethod
    def exists_in(root: Path | str) -> bool:
        return (Path(root) / DB_NAME).exists()

    def get(self, key: str) -> Layer | str | None:
        """The layer for ``key``, ``None`` for a step recorded as adding no layer, or ``""`` on a miss."""
        if not self.enabled:
            return ""
        with self._lock:
            row = self._db.execute("SELECT layer, used FROM results WHERE key = ?", (key,)).fetchone()
            if row is not None and row[1] < time.time() - _TOUCH_EVERY:
                self._db.execute("UPDATE results SET used = ? WHERE key = ?", (time.time(), key))
        if row is None:
            return ""
        if row[0] == NO_LAYER:
            return None
        return Layer.from_json(json.loads(row[0]))

    def put(self, key: str, layer: Layer | None) -> None:
        value = NO_LAYER if layer is None else json.dumps(layer.to_json(), sort_keys=True)
        with self._lock:
            now = time.time()
            self._db.execute("INSERT OR REPLACE INTO results (key, layer, created, used) VALUES (?, ?, ?, ?)",
                             (key, value, now, now))

    def file_hash(self, path: str, sig: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT sig, digest FROM filehash WHERE path = ?", (os.fsencode(path),)).fetchone()
        return row[1] if row is not None and row[0] == sig else None

    def put_file_hash(self, path: str, sig: str, digest: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO filehash (path, sig, digest) VALUES (?, ?, ?)",
                             (os.fsencode(path), sig, digest))

    def layer_index(self, digest: str) -> bytes | None:
        """The stored path index of a layer blob (see ``rootview``), or None."""
        with self._lock:
            row = self._db.execute("SELECT data FROM layerindex WHERE digest = ?", (digest,)).fetchone()
        return bytes(row[0]) if row is not None else None

    def put_layer_index(self, digest: str, data: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO layerindex (digest, data) VALUES (?, ?)", (digest, data))

    def used_snapshots(self, chains: list[tuple[str, str, str]]) -> None:
        """Record (chain, parent chain or "", diff_id) of snapshots a build uses now."""
        now = time.time()
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO snapshots (chain, parent, diff_id, used) VALUES (?, ?, ?, ?)",
                                 [(c, p, d, now) for c, p, d in chains])

    # --- for polyarch prune (sqlite errors become "cannot clean the build cache …") ---------------------------

    def result_blobs(self) -> list[ResultBlob]:
        """Every result entry that names a layer (entries of steps that added none are left out)."""
        with self._cleaning():
            rows = self._db.execute("SELECT key, layer FROM results WHERE layer != ?", (NO_LAYER,)).fetchall()
        out: list[ResultBlob] = []
        for key, value in rows:
            try:
                doc = json.loads(value)
                out.append(ResultBlob(key, Digest.parse(doc["descriptor"]["digest"]), str(doc.get("diff_id", ""))))
            except (ValueError, KeyError, TypeError, AttributeError, PolyarchError):
                out.append(ResultBlob(key, None, ""))
        return out

    def result_uses(self) -> list[ResultUse]:
        """Every result entry with its last use, for ``polyarch du`` and the prune filters."""
        with self._cleaning():
            rows = self._db.execute("SELECT key, layer, max(created, used) FROM results").fetchall()
        out: list[ResultUse] = []
        for key, value, used in rows:
            if value == NO_LAYER:
                out.append(ResultUse(key, None, "", float(used), False))
                continue
            try:
                doc = json.loads(value)
                out.append(ResultUse(key, Digest.parse(doc["descriptor"]["digest"]), str(doc.get("diff_id", "")),
                                     float(used), True))
            except (ValueError, KeyError, TypeError, AttributeError, PolyarchError):
                out.append(ResultUse(key, None, "", float(used), True))
        return out

    def layer_index_digests(self) -> list[str]:
        """Blob digests that have a stored path index."""
        with self._cleaning():
            return [d for (d,) in self._db.execute("SELECT digest FROM layerindex").fetchall()]

    def snapshot_uses(self) -> dict[str, SnapshotUse]:
        """The recorded snapshots by chain id."""
        with self._cleaning():
            rows = self._db.execute("SELECT chain, parent, diff_id, used FROM snapshots").fetchall()
        return {c: SnapshotUse(c, p, d, float(u)) for c, p, d, u in rows}

    def forget(self, *, results: Iterable[str] = (), layer_indexes: Iterable[str] = ()) -> None:
        """Delete result entries by key and layer path indexes by blob digest, in one transaction."""
        with self._cleaning(write=True):
            self._db.executemany("DELETE FROM results WHERE key = ?", [(k,) for k in results])
            self._db.executemany("DELETE FROM layerindex WHERE digest = ?", [(d,) for d in layer_indexes])

    def forget_snapshots(self, chains: Iterable[str]) -> None:
        with self._cleaning(write=True):
            self._db.executemany("DELETE FROM snapshots WHERE chain = ?", [(c,) for c in chains])

    @contextmanager
    def _cleaning(self, *, write: bool = False) -> Iterator[None]:
        with self._lock:
            try:
                if write:
                    self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                if write:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot clean the build cache {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> BuildCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
