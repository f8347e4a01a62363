"""The persistent build cache: SQLite beside the content store (``<root>/buildcache.db``).

One table maps a cache key to the layer the step produced (descriptor + diff_id) or to "no layer" (a step that
changed nothing); a second keeps content hashes of files keyed by (path, size, mtime, inode) so a no-change
rebuild does not re-read the build context (the path as its bytes: a name need not be UTF-8); a third keeps the path index of layer blobs (``rootview``) so a
large base image is read once, not on every build. An entry is only trusted when its blob is still in the store
(``polyarch prune`` may have removed it); a fourth records which snapshot (chain id) stacks which layer on which
parent and when a build last used it, so ``polyarch prune`` knows which snapshots can still serve a build
(``polyarch.pipeline.prune``). Safe for threads: each call opens a short transaction under a lock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from polyarch.errors import StoreError

from .state import Layer

__all__ = ["NO_LAYER", "BuildCache"]

NO_LAYER = "none"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, layer TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS filehash (path TEXT PRIMARY KEY, sig TEXT NOT NULL, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layerindex (digest TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (chain TEXT PRIMARY KEY, parent TEXT NOT NULL, diff_id TEXT NOT NULL,
                                      used REAL NOT NULL);
"""


class BuildCache:
    """Key → layer results; ``enabled=False`` (``--no-cache``) makes every lookup miss but still records."""

    def __init__(self, path: Path | str, *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the build cache {self.path}: {exc}") from exc

    def get(self, key: str) -> Layer | str | None:
        """The layer for ``key``, ``None`` for a step recorded as adding no layer, or ``""`` on a miss."""
        if not self.enabled:
            return ""
        with self._lock:
            row = self._db.execute("SELECT layer FROM results WHERE key = ?", (key,)).fetchone()
        if row is None:
            return ""
        if row[0] == NO_LAYER:
            return None
        return Layer.from_json(json.loads(row[0]))

    def put(self, key: str, layer: Layer | None) -> None:
        value = NO_LAYER if layer is None else json.dumps(layer.to_json(), sort_keys=True)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO results (key, layer, created) VALUES (?, ?, ?)",
                             (key, value, time.time()))

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

    def close(self) -> None:
        with self._lock:
            self._db.close()
