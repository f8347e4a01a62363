"""Schema versions of polyarch's SQLite databases, kept in ``PRAGMA user_version``.

A database's schema is a list of migrations: step *i* (1-based) takes ``user_version`` from *i-1* to *i*. Step 1
is the schema as it stood before versions were recorded, written with ``CREATE … IF NOT EXISTS``: a database
made then has version 0 and every table already, and gets version 1 without a change to its rows; a new file
gets the tables. Each step runs in one ``BEGIN IMMEDIATE`` transaction together with the new ``user_version``, so
a crash leaves the old or the new version, and two processes opening the same file migrate it once.

A database whose version is higher than the list (written by a newer polyarch) is refused with one line
(``StoreError``) before anything is written to it: an older polyarch must not touch a schema it does not know.

A new migration is appended to the list, never edited in place: a released step may already have run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from polyarch.errors import StoreError

__all__ = ["Migration", "migrate", "schema_version", "statements"]

Migration = Sequence[str]  # the SQL statements of one step, run in order inside one transaction


def statements(script: str) -> tuple[str, ...]:
    """A script of ``;``-terminated SQL statements as one string each (the text kept as written)."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement: {pending.strip()!r}")
    return tuple(out)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration], *, what: str, path: Path) -> int:
    """Bring the database on ``conn`` (autocommit mode: ``isolation_level=None``) to ``len(migrations)``.

    Returns the version it had. Call before anything else writes (``PRAGMA journal_mode`` included).

    :raises StoreError: the database is newer than ``migrations`` (it is left untouched).
    """
    latest = len(migrations)
    found = schema_version(conn)
    _refuse_newer(found, latest, what, path)
    if found == latest:
        return found
    conn.execute("BEGIN IMMEDIATE")  # other openers wait here, then see the version this one wrote
    try:
        current = schema_version(conn)
        _refuse_newer(current, latest, what, path)
        for version in range(current + 1, latest + 1):
            for statement in migrations[version - 1]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {latest:d}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found


def _refuse_newer(found: int, latest: int, what: str, path: Path) -> None:
    if found > latest:
        raise StoreError(f"{what} {path} has schema version {found}, newer than this polyarch knows ({latest}): "
                         f"use a newer polyarch with it")
