"""buildcache.db schema versions: a database written before versions were recorded (a dump made by polyarch at
50548e4, ``data/buildcache-v0.sql``) opens, is migrated and keeps every entry; one of a newer polyarch is
refused with one line and left untouched."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from tests.conftest import run_cli

from polyarch.digest import Digest
from polyarch.errors import StoreError
from polyarch.solver.cache import DB_NAME, MIGRATIONS, BuildCache
from polyarch.solver.state import Layer

DUMP = Path(__file__).parent / "data" / "buildcache-v0.sql"


def load_dump(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / DB_NAME
    with sqlite3.connect(path) as db:
        db.executescript(DUMP.read_text(encoding="utf-8"))
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    return path


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_a_database_of_today_is_migrated_and_keeps_its_entries(tmp_path: Path) -> None:
    path = load_dump(tmp_path)
    with BuildCache.in_store(tmp_path) as cache:
        layer = cache.get("key-with-layer")
        assert isinstance(layer, Layer)
        assert layer.descriptor.digest == Digest.parse("sha256:" + "a" * 64)
        assert (layer.diff_id, layer.uncompressed_size) == (Digest.parse("sha256:" + "b" * 64), 456)
        assert cache.get("key-no-layer") is None
        assert cache.get("missing") == ""
        assert cache.file_hash("/ctx/file.txt", "10:1700000000.0:42") == "sha256:" + "c" * 64
        assert cache.file_hash(os.fsdecode(b"/ctx/caf\xe9"), "3:1700000001.0:43") == "sha256:" + "d" * 64
        assert cache.layer_index("sha256:" + "a" * 64) == b"\x00\x01index-bytes\xff"
        uses = cache.snapshot_uses()
        assert set(uses) == {"e" * 64, "f" * 64} and uses["f" * 64].parent == "e" * 64
        assert [(r.key, r.diff_id) for r in cache.result_blobs()] == [("key-with-layer", "sha256:" + "b" * 64)]
        cache.put("new", None)  # and it takes new entries
    assert user_version(path) == len(MIGRATIONS)
    with BuildCache.in_store(tmp_path) as cache:  # opening again changes nothing
        assert cache.get("new") is None and isinstance(cache.get("key-with-layer"), Layer)
    assert user_version(path) == len(MIGRATIONS)


def test_a_new_database_gets_the_current_version(tmp_path: Path) -> None:
    BuildCache.in_store(tmp_path).close()
    assert user_version(tmp_path / DB_NAME) == len(MIGRATIONS)


def newer(root: Path) -> Path:
    path = load_dump(root)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    return path


def test_a_database_of_a_newer_polyarch_is_refused_untouched(tmp_path: Path) -> None:
    path = newer(tmp_path)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=f"has schema version {len(MIGRATIONS) + 1}, newer than this polyarch knows"):
        BuildCache.in_store(tmp_path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]


def test_prune_refuses_a_newer_build_cache_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "store"
    path = newer(root)
    before = path.read_bytes()
    proc = run_cli("prune", root=root, check=False)
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [f"error: the build cache {path} has schema version {len(MIGRATIONS) + 1}, "
                                        f"newer than this polyarch knows ({len(MIGRATIONS)}): use a newer polyarch "
                                        "with it"]
    assert path.read_bytes() == before
