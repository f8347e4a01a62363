"""registry.db schema versions: a database written before versions were recorded (a dump made by polyarch at
50548e4, ``data/registry-v0.sql``) opens, is migrated and keeps repositories, manifests, tags, links and
upload sessions (and, from step 2, image manifests stored without an artifact type get their config's media
type); one of a newer polyarch is refused with one line and left untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tests.conftest import run_cli

from polyarch.errors import StoreError
from polyarch.registry.server.metadata import DB_NAME, MIGRATIONS, Metadata

DUMP = Path(__file__).parent / "data" / "registry-v0.sql"
M1, M2, M4 = ("sha256:" + c * 64 for c in "124")


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


def test_a_database_of_today_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = load_dump(tmp_path)
    meta = Metadata(path)
    try:
        assert meta.repos() == ["library/alpine"]
        assert meta.tag("library/alpine", "3.19") == M2
        row = meta.manifest("library/alpine", M2)
        assert row is not None and (row.size, row.annotations) == (500, {"org.example": "x"})
        # migration 2: an OCI image manifest stored without an artifact type gets its (OCI) config's
        assert row.artifact_type == "application/vnd.oci.image.config.v1+json"
        assert [(r.digest, r.artifact_type) for r in meta.referrers("library/alpine", M2)] == [
            (M4, "application/vnd.example.sig")]
        assert meta.has_link("library/alpine", M1)
        assert M1 in meta.referenced_digests()
        assert [(u.id, u.offset) for u in meta.uploads()] == [("upload-1", 1024)]
        meta.link("library/busybox", M1)  # and it takes writes
    finally:
        meta.close()
    assert user_version(path) == len(MIGRATIONS)


def test_a_new_database_gets_the_current_version(tmp_path: Path) -> None:
    Metadata(tmp_path / DB_NAME).close()
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
        Metadata(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]


def test_registry_gc_refuses_a_newer_database_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "store"
    path = newer(root)
    before = path.read_bytes()
    proc = run_cli("registry", "gc", "--dry-run", root=root, check=False)
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [f"error: the registry database {path} has schema version "
                                        f"{len(MIGRATIONS) + 1}, newer than this polyarch knows "
                                        f"({len(MIGRATIONS)}): use a newer polyarch with it"]
    assert path.read_bytes() == before
