"""polyarch.sqlschema: PRAGMA user_version migrations — steps in order, one transaction each, a newer database
refused untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from polyarch.errors import StoreError
from polyarch.sqlschema import migrate, schema_version, statements

V1 = ("CREATE TABLE IF NOT EXISTS items (name TEXT PRIMARY KEY)",)
V2 = ("ALTER TABLE items ADD COLUMN size INTEGER NOT NULL DEFAULT 0", "CREATE INDEX items_size ON items (size)")


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_a_new_file_gets_every_step(tmp_path: Path) -> None:
    db = connect(tmp_path / "x.db")
    assert migrate(db, [V1, V2], what="the test db", path=tmp_path / "x.db") == 0
    assert schema_version(db) == 2
    db.execute("INSERT INTO items (name, size) VALUES ('a', 3)")


def test_an_old_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    db = connect(tmp_path / "x.db")
    migrate(db, [V1], what="the test db", path=tmp_path / "x.db")
    db.execute("INSERT INTO items (name) VALUES ('kept')")
    assert migrate(db, [V1, V2], what="the test db", path=tmp_path / "x.db") == 1
    assert db.execute("SELECT name, size FROM items").fetchall() == [("kept", 0)]
    assert migrate(db, [V1, V2], what="the test db", path=tmp_path / "x.db") == 2  # nothing left to do


def test_a_database_of_before_versions_is_version_0_and_step_1_keeps_it(tmp_path: Path) -> None:
    db = connect(tmp_path / "x.db")
    db.execute(V1[0])
    db.execute("INSERT INTO items VALUES ('old')")
    assert schema_version(db) == 0
    migrate(db, [V1], what="the test db", path=tmp_path / "x.db")
    assert schema_version(db) == 1
    assert db.execute("SELECT name FROM items").fetchall() == [("old",)]


def test_a_failing_step_leaves_the_old_version_and_schema(tmp_path: Path) -> None:
    db = connect(tmp_path / "x.db")
    migrate(db, [V1], what="the test db", path=tmp_path / "x.db")
    broken = ("CREATE TABLE extra (x)", "THIS IS NOT SQL")
    with pytest.raises(sqlite3.Error):
        migrate(db, [V1, broken], what="the test db", path=tmp_path / "x.db")
    assert schema_version(db) == 1
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchall() == []
    assert not db.in_transaction


def test_a_newer_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = connect(path)
    migrate(db, [V1, V2], what="the test db", path=path)
    db.execute("PRAGMA user_version = 7")
    db.close()
    before = path.read_bytes()
    db = connect(path)
    with pytest.raises(StoreError) as info:
        migrate(db, [V1, V2], what="the test db", path=path)
    db.close()
    assert str(info.value) == (f"the test db {path} has schema version 7, newer than this polyarch knows (2): "
                               "use a newer polyarch with it")
    assert "\n" not in info.value.render()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]


def test_statements_splits_a_script_and_keeps_the_text() -> None:
    script = "\nCREATE TABLE a (x TEXT DEFAULT ';');\nCREATE TABLE b (y,\n  z);\n"
    assert statements(script) == ("CREATE TABLE a (x TEXT DEFAULT ';');", "CREATE TABLE b (y,\n  z);")
    with pytest.raises(ValueError):
        statements("CREATE TABLE c (x)")
