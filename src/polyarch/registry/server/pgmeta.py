"""Registry metadata in PostgreSQL (``--database postgresql://…``): the ``metastore.MetadataStore`` replicas share.

The tables are those of the SQLite database (``metadata.py``), with the same ordered migration steps, recorded in
a ``schema_version`` table (one row) instead of ``PRAGMA user_version``: each step runs in one transaction with the
new version, under a transaction advisory lock, so replicas starting together migrate once; a database of a newer
polyarch is refused untouched. Names and tags compare byte-wise (``COLLATE "C"``), as SQLite does, so pagination
(``?last=``) means the same on both.

Every write is one transaction. Writes that publish (a manifest and its tags, a blob link) hold the advisory lock
``PUBLISH_LOCK`` shared for their transaction; gc's ``sweep`` holds it exclusively, so a sweep and a publish never
interleave across replicas (the SQLite write lock's guarantee, across processes). ``gc_lock`` is a session advisory
lock: one gc at a time over the whole database. ``create_upload`` counts open sessions and inserts under the
transaction advisory lock ``UPLOAD_LOCK``, so the session limits hold across replicas.

psycopg 3, one connection per thread (autocommit; explicit transactions), re-opened after a failure; one the server
dropped while idle (a restart) is replaced and the statement run again once, before any transaction began. A
server that cannot be reached (stopped, restarting, network) raises ``StorageUnavailable`` (503, retry later).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from polyarch.errors import StoreError

from .metastore import ManifestRow
from .sqlcommon import SqlCommon
from .storage import StorageUnavailable

__all__ = ["GC_LOCK", "MIGRATIONS", "PUBLISH_LOCK", "UPLOAD_LOCK", "PostgresMetadata", "redact"]

PUBLISH_LOCK = 0x706F6C79_61726301  # "polyarc\x01": publishing writes shared, gc's sweep exclusive
GC_LOCK = 0x706F6C79_61726302  # one gc run at a time
MIGRATE_LOCK = 0x706F6C79_61726303
UPLOAD_LOCK = 0x706F6C79_61726304  # create_upload's count-and-insert, one at a time across replicas

# The same ordered steps as metadata.MIGRATIONS (never edit a released step, append a new one).
_SCHEMA_V1 = (
    'CREATE TABLE repos (name TEXT COLLATE "C" PRIMARY KEY, created DOUBLE PRECISION NOT NULL)',
    "CREATE TABLE links (repo TEXT NOT NULL, digest TEXT NOT NULL, touched DOUBLE PRECISION NOT NULL, "
    "PRIMARY KEY (repo, digest))",
    "CREATE INDEX links_digest ON links (digest)",
    "CREATE TABLE manifests (repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, size BIGINT NOT NULL, "
    "artifact_type TEXT NOT NULL DEFAULT '', subject TEXT, annotations TEXT NOT NULL DEFAULT '{}', "
    "created DOUBLE PRECISION NOT NULL, PRIMARY KEY (repo, digest))",
    "CREATE INDEX manifests_subject ON manifests (repo, subject)",
    "CREATE INDEX manifests_digest ON manifests (digest)",
    "CREATE TABLE refs (repo TEXT NOT NULL, manifest TEXT NOT NULL, target TEXT NOT NULL, "
    "PRIMARY KEY (repo, manifest, target))",
    "CREATE INDEX refs_target ON refs (target)",
    'CREATE TABLE tags (repo TEXT NOT NULL, tag TEXT COLLATE "C" NOT NULL, digest TEXT NOT NULL, '
    "updated DOUBLE PRECISION NOT NULL, PRIMARY KEY (repo, tag))",
    "CREATE INDEX tags_digest ON tags (repo, digest)",
    'CREATE TABLE uploads (id TEXT PRIMARY KEY, repo TEXT NOT NULL, algorithm TEXT NOT NULL, "offset" BIGINT NOT NULL, '
    "created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL)",
)
_ARTIFACT_TYPE_FROM_CONFIG = (
    "UPDATE manifests SET artifact_type = 'application/vnd.oci.image.config.v1+json' "
    "WHERE artifact_type = '' AND media_type = 'application/vnd.oci.image.manifest.v1+json'",
)
_UPLOAD_STATE = ("ALTER TABLE uploads ADD COLUMN state TEXT NOT NULL DEFAULT ''",)
_UPLOAD_CLIENT = (
    "ALTER TABLE uploads ADD COLUMN client TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX uploads_repo ON uploads (repo, updated)",
    "CREATE INDEX uploads_client ON uploads (client, updated)",
)
MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1, _ARTIFACT_TYPE_FROM_CONFIG, _UPLOAD_STATE, _UPLOAD_CLIENT)

_UPLOAD_COLUMNS = 'id, repo, algorithm, "offset", created, updated'


def redact(url: str) -> str:
    """``url`` without its password (for messages)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def _unavailable(exc: BaseException) -> StorageUnavailable:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StorageUnavailable(f"PostgreSQL unavailable: {first}")


@contextmanager
def _errors(what: str) -> Iterator[None]:
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise _unavailable(exc) from exc
    except psycopg.Error as exc:
        raise StoreError(f"registry database {what} failed: {str(exc).strip().splitlines()[0]}") from exc


def migrate(conn: psycopg.Connection[Any], url: str) -> int:
    """Bring the database to ``len(MIGRATIONS)``; returns the version it had. :raises StoreError: newer database."""
    latest = len(MIGRATIONS)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        found = int(row[0]) if row else 0
        if found > latest:
            raise StoreError(f"the registry database {redact(url)} has schema version {found}, newer than this "
                             f"polyarch knows ({latest}): use a newer polyarch with it")
    for version in range(found + 1, latest + 1):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is not None and int(row[0]) >= version:
                continue  # another replica ran this step meanwhile
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)  # type: ignore[arg-type]  # literal SQL of this module
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
    return found


class PostgresMetadata(SqlCommon):
    """The registry database on a PostgreSQL server; thread-safe. Close with ``close()``."""

    shared = True
    PLACEHOLDER = "%s"
    UPLOAD_COLUMNS = _UPLOAD_COLUMNS

    def __init__(self, url: str, *, connect_timeout: int = 5) -> None:
        self.url = url
        self._timeout = connect_timeout
        self._local = threading.local()
        self._conns: list[psycopg.Connection[Any]] = []
        self._conns_lock = threading.Lock()
        with _errors("migration"):
            migrate(self._conn(), url)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=self._timeout,
                                   application_name="polyarch-registry")
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise _unavailable(exc) from exc
        except psycopg.Error as exc:
            raise StoreError(f"cannot open registry database {redact(self.url)}: {exc}") from exc

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and (conn.closed or conn.broken):
            with self._conns_lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            conn.close()
            conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                try:
                    conn.close()
                except psycopg.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()

    def _begin(self) -> tuple[psycopg.Connection[Any], psycopg.Transaction]:
        """A started transaction; a connection the server dropped while it was idle (a restart) is replaced once."""
        for attempt in (0, 1):
            conn = self._conn()
            tx = conn.transaction()
            try:
                tx.__enter__()
                return conn, tx
            except (psycopg.OperationalError, psycopg.InterfaceError):
                if attempt or not (conn.broken or conn.closed):
                    raise
        raise AssertionError("unreachable")

    @contextmanager
    def write(self, *, publish: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """One transaction; with ``publish``, holding ``PUBLISH_LOCK`` shared (gc's sweep waits)."""
        with _errors("write"):
            conn, tx = self._begin()
            try:
                if publish:
                    conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (PUBLISH_LOCK,))
                yield conn
            except BaseException as exc:
                tx.__exit__(type(exc), exc, exc.__traceback__)
                raise
            tx.__exit__(None, None, None)

    def _query(self, sql: str, args: Sequence[Any]) -> psycopg.Cursor[Any]:
        for attempt in (0, 1):
            conn = self._conn()
            try:
                return conn.execute(sql, args)  # type: ignore[arg-type]
            except (psycopg.OperationalError, psycopg.InterfaceError):
                if attempt or not (conn.broken or conn.closed):  # else: dropped while idle, once more
                    raise
        raise AssertionError("unreachable")

    def _one(self, sql: str, args: Sequence[Any]) -> tuple[Any, ...] | None:
        with _errors("read"):
            return self._query(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with _errors("read"):
            return self._query(sql, args).fetchall()

    # --- reads ----------------------------------------------------------------------------------------------

    # --- writes ---------------------------------------------------------------------------------------------

    def link(self, repo: str, digest: str) -> None:
        now = time.time()
        with self.write(publish=True) as c:
            _ensure_repo(c, repo, now)
            _link(c, repo, digest, now)

    def unlink(self, repo: str, digest: str) -> None:
        with self.write() as c:
            c.execute("DELETE FROM links WHERE repo=%s AND digest=%s", (repo, digest))

    def put_manifest(self, row: ManifestRow, refs: Sequence[str], tags: Sequence[str],
                     check: Callable[[], None]) -> None:
        now = time.time()
        with self.write(publish=True) as c:
            check()
            _ensure_repo(c, row.repo, now)
            c.execute("INSERT INTO manifests VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (repo, digest) DO UPDATE "
                      "SET media_type=excluded.media_type, size=excluded.size", (
                          row.repo, row.digest, row.media_type, row.size, row.artifact_type, row.subject,
                          json.dumps(row.annotations), now))
            with c.cursor() as cur:
                cur.executemany("INSERT INTO refs VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                                [(row.repo, row.digest, t) for t in refs])
                _link(c, row.repo, row.digest, now)
                cur.executemany("INSERT INTO tags VALUES (%s,%s,%s,%s) ON CONFLICT (repo, tag) DO UPDATE SET "
                                "digest=excluded.digest, updated=excluded.updated",
                                [(row.repo, tag, row.digest, now) for tag in tags])

    def _serialize_uploads(self, c: psycopg.Connection[Any]) -> None:
        """Read committed lets two replicas count the same rows: their counts and inserts take turns instead."""
        c.execute("SELECT pg_advisory_xact_lock(%s)", (UPLOAD_LOCK,))

    def advance_upload(self, upload_id: str, offset: int, state: str = "") -> bool:
        with self.write() as c:
            return c.execute('UPDATE uploads SET "offset"=%s, state=%s, updated=%s WHERE id=%s',
                             (offset, state, time.time(), upload_id)).rowcount > 0

    def finish_upload(self, upload_id: str, repo: str | None = None, digest: str | None = None) -> bool:
        now = time.time()
        linking = repo is not None and digest is not None
        with self.write(publish=linking) as c:
            gone = c.execute("DELETE FROM uploads WHERE id=%s", (upload_id,)).rowcount > 0
            if gone and repo is not None and digest is not None:
                _ensure_repo(c, repo, now)
                _link(c, repo, digest, now)
            return gone

    def clear_uploads(self) -> list[str]:
        with self.write() as c:
            return [r[0] for r in c.execute("DELETE FROM uploads RETURNING id").fetchall()]

    # --- gc -------------------------------------------------------------------------------------------------

    @contextmanager
    def sweep(self) -> Iterator[_PgSweep]:
        """gc's delete phase: ``PUBLISH_LOCK`` held exclusively for one transaction (every replica's publishing
        writes wait; reads go on)."""
        with self.write() as c:
            c.execute("SELECT pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
            yield _PgSweep(c)

    @contextmanager
    def gc_lock(self) -> Iterator[bool]:
        conn = self._connect()  # its own session: the lock dies with it if this process does
        try:
            with _errors("gc lock"):
                got = bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (GC_LOCK,)).fetchone()[0])  # type: ignore[index]
            try:
                yield got
            finally:
                if got:
                    try:
                        conn.execute("SELECT pg_advisory_unlock(%s)", (GC_LOCK,))
                    except psycopg.Error:
                        pass  # the session is gone, and its lock with it
        finally:
            conn.close()


class _PgSweep:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._c = conn

    def is_referenced(self, digest: str) -> bool:
        return self._c.execute("SELECT EXISTS (SELECT 1 FROM refs WHERE target=%s) "
                               "OR EXISTS (SELECT 1 FROM manifests WHERE digest=%s)",
                               (digest, digest)).fetchone()[0] is True  # type: ignore[index]

    def last_touch(self, digest: str) -> float:
        row = self._c.execute("SELECT MAX(touched) FROM links WHERE digest=%s", (digest,)).fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0

    def drop_links(self, digest: str) -> None:
        self._c.execute("DELETE FROM links WHERE digest=%s", (digest,))


def _ensure_repo(c: psycopg.Connection[Any], repo: str, now: float) -> None:
    c.execute("INSERT INTO repos VALUES (%s,%s) ON CONFLICT DO NOTHING", (repo, now))


def _link(c: psycopg.Connection[Any], repo: str, digest: str, now: float) -> None:
    c.execute("INSERT INTO links VALUES (%s,%s,%s) ON CONFLICT (repo, digest) DO UPDATE SET touched=excluded.touched",
              (repo, digest, now))
