"""The metadata seam (``metastore.MetadataStore``) over both databases: SQLite (``metadata.Metadata``) and a real
PostgreSQL 15 (``pgmeta.PostgresMetadata``, tests/registry/pg.py). The same calls give the same answers; the
registry's API behaves the same over either; PostgreSQL's schema is versioned like SQLite's (same steps, a newer
database refused untouched); gc's sweep excludes publishing writes."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.conftest import run_cli

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from polyarch.errors import StoreError, UsageError
from polyarch.registry.server import Registry, RegistryConfig, create_app
from polyarch.registry.server.metadata import DB_NAME, MIGRATIONS, Metadata
from polyarch.registry.server.metastore import ManifestRow, MetadataStore
from polyarch.registry.server.pgmeta import MIGRATIONS as PG_MIGRATIONS
from polyarch.registry.server.pgmeta import PostgresMetadata, redact

from .conftest import Api

D1, D2, D3, D4 = ("sha256:" + c * 64 for c in "1234")
IMAGE = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(params=["sqlite", "postgresql"])
def meta(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    m: MetadataStore
    if request.param == "sqlite":
        m = Metadata(tmp_path / DB_NAME)
    else:
        m = PostgresMetadata(request.getfixturevalue("pg"))
    yield m
    m.close()


def _row(repo: str, digest: str, subject: str | None = None, artifact: str = "") -> ManifestRow:
    return ManifestRow(repo, digest, IMAGE, 123, artifact, subject, {"k": "v"})


def test_the_same_answers_from_both_databases(meta: MetadataStore) -> None:
    meta.link("a/b", D1)
    meta.put_manifest(_row("a/b", D2), [D1], ["v1", "latest"], lambda: None)
    meta.put_manifest(_row("a/b", D3, subject=D2, artifact="application/x.sig"), [D1], [], lambda: None)
    meta.put_manifest(_row("Z/z", D4), [], ["1"], lambda: None)
    assert meta.tag("a/b", "v1") == D2 and meta.tag("a/b", "nope") is None
    row = meta.manifest("a/b", D2)
    assert row is not None and (row.size, row.annotations, row.subject) == (123, {"k": "v"}, None)
    assert meta.has_link("a/b", D1) and meta.has_link("a/b", D2) and not meta.has_link("Z/z", D1)
    assert meta.repos_with_blob(D1) == ["a/b"]
    assert meta.tags("a/b") == ["latest", "v1"] and meta.tags("a/b", last="latest") == ["v1"]
    assert meta.tags("a/b", limit=1) == ["latest"]
    assert sorted(meta.tags_of("a/b", D2)) == ["latest", "v1"]
    assert meta.repos() == ["Z/z", "a/b"]  # byte order on both ("C" collation on PostgreSQL)
    assert meta.repos(last="Z/z") == ["a/b"]
    assert meta.repo_exists("a/b") and not meta.repo_exists("nope")
    assert [(r.digest, r.artifact_type) for r in meta.referrers("a/b", D2)] == [(D3, "application/x.sig")]
    assert meta.referenced_digests() == {D1, D2, D3, D4}
    assert meta.last_link_touch(D1) > time.time() - 60 and meta.last_link_touch("sha256:" + "9" * 64) == 0.0
    # a tag moves atomically; a failing check publishes nothing
    with pytest.raises(RuntimeError):
        meta.put_manifest(_row("a/b", D4), [], ["v1"], _fail)
    assert meta.tag("a/b", "v1") == D2 and meta.manifest("a/b", D4) is None
    assert meta.delete_tag("a/b", "latest") and not meta.delete_tag("a/b", "latest")
    assert meta.delete_manifest("a/b", D3) and not meta.delete_manifest("a/b", D3)
    meta.unlink("a/b", D1)
    assert not meta.has_link("a/b", D1)
    # upload sessions
    meta.create_upload("u1", "a/b", "sha256")
    assert meta.advance_upload("u1", 10, '{"mpu": "x"}') and not meta.advance_upload("nope", 1)
    up = meta.upload("u1")
    assert up is not None and (up.repo, up.algorithm, up.offset) == ("a/b", "sha256", 10)
    assert meta.upload_state("u1") == '{"mpu": "x"}' and meta.upload_state("nope") is None
    assert [u.id for u in meta.uploads()] == ["u1"]
    assert meta.finish_upload("u1", "c/d", D1) and not meta.finish_upload("u1")
    assert meta.has_link("c/d", D1) and meta.repo_exists("c/d")
    meta.create_upload("u2", "a/b", "sha512")
    assert meta.clear_uploads() == ["u2"] and meta.uploads() == []
    # gc's sweep
    with meta.gc_lock() as mine:
        assert mine
        with meta.sweep() as sweep:
            assert sweep.is_referenced(D1) and not sweep.is_referenced("sha256:" + "8" * 64)
            assert sweep.last_touch(D1) > 0
            sweep.drop_links(D1)
    assert not meta.has_link("c/d", D1)


def _fail() -> None:
    raise RuntimeError("check failed")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_registry_api_over_both_databases(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    db = PostgresMetadata(request.getfixturevalue("pg")) if kind == "postgresql" else None
    reg = Registry(tmp_path / "store", RegistryConfig(delete_enabled=True), meta=db)
    reg.recover()
    try:
        with TestClient(create_app(reg), base_url="http://127.0.0.1:5000") as client:
            api = Api(client, reg)
            raw, digest = api.push_image("team/app", "v1")
            assert client.get("/v2/team/app/manifests/v1").content == raw
            sig = api.manifest("team/app", [b"sig"], artifact_type="application/x.sig",
                               subject={"mediaType": IMAGE, "digest": digest, "size": len(raw)})
            assert api.put_manifest("team/app", "sig", sig).status_code == 201
            refs = client.get(f"/v2/team/app/referrers/{digest}").json()["manifests"]
            assert [m["artifactType"] for m in refs] == ["application/x.sig"]
            assert client.get("/v2/_catalog").json() == {"repositories": ["team/app"]}
            assert client.get("/v2/team/app/tags/list").json()["tags"] == ["sig", "v1"]
            loc = client.post("/v2/team/app/blobs/uploads/").headers["location"]
            assert client.patch(loc, content=b"abc", headers={"Content-Range": "0-2"}).status_code == 202
            assert client.get(loc).headers["range"] == "0-2"
            assert client.delete(f"/v2/team/app/manifests/{digest}").status_code == 202
            assert client.get("/v2/team/app/manifests/v1").status_code == 404
    finally:
        reg.close()


def test_postgresql_schema_steps_match_sqlite_and_a_newer_database_is_refused(pg: str) -> None:
    assert len(PG_MIGRATIONS) == len(MIGRATIONS)
    PostgresMetadata(pg).close()
    with psycopg.connect(pg, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
        cols = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'uploads'").fetchall()}
        assert "state" in cols
    meta = PostgresMetadata(pg)  # opening again is a no-op
    meta.close()
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
        conn.execute("CREATE TABLE marker (x INTEGER)")
    with pytest.raises(StoreError, match="schema version 99, newer than this polyarch knows"):
        PostgresMetadata(pg)
    with psycopg.connect(pg, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(99,)]


def test_replicas_starting_together_migrate_once(pg: str) -> None:
    errors: list[BaseException] = []
    made: list[PostgresMetadata] = []

    def open_one() -> None:
        try:
            made.append(PostgresMetadata(pg))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for m in made:
        m.close()
    assert errors == [] and len(made) == 6


def test_the_sweep_excludes_publishing_writes_of_other_processes(pg: str) -> None:
    gc_side, pusher = PostgresMetadata(pg), PostgresMetadata(pg)
    published = threading.Event()
    try:
        with gc_side.sweep() as sweep:
            assert not sweep.is_referenced(D1)
            t = threading.Thread(target=lambda: (pusher.put_manifest(_row("r", D2), [D1], ["t"], lambda: None),
                                                 published.set()))
            t.start()
            assert not published.wait(0.5)  # waits for the sweep to end
            assert not sweep.is_referenced(D1)
        t.join(10)
        assert published.is_set() and gc_side.referenced_digests() == {D1, D2}
        with gc_side.gc_lock() as first, pusher.gc_lock() as second:
            assert first and not second  # one gc at a time over the database
    finally:
        gc_side.close()
        pusher.close()


def test_password_never_in_messages() -> None:
    assert redact("postgresql://reg:s3cret@db:5432/x") == "postgresql://reg:***@db:5432/x"
    assert redact("postgresql://reg@db/x") == "postgresql://reg@db/x"


def test_the_database_key_and_flag(tmp_path: Path) -> None:
    from polyarch.cli.registry_config import load_serve_file

    path = tmp_path / "registry.yaml"
    path.write_text("version: 0.1\ndatabase: postgresql://reg:pw@db:5432/registry\n")
    assert load_serve_file(path).database == "postgresql://reg:pw@db:5432/registry"
    assert load_serve_file(path, (("REGISTRY_DATABASE", "sqlite"),)).database is None  # environment over file
    path.write_text("database: mysql://reg@db/x\n")
    with pytest.raises(UsageError, match=r"registry.yaml:1: database: expected sqlite or a postgresql://"):
        load_serve_file(path)


@pytest.mark.parametrize("args", [["--config", "{cfg}"], ["--database", "mysql://x"],
                                  ["--database", "postgresql://reg:s3cret@127.0.0.1:{port}/x"]])
def test_the_cli_says_one_error_line_for_a_bad_or_unreachable_database(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("database: [1, 2]\n")
    argv = [a.format(cfg=tmp_path / "r.yaml", port=_closed_port()) for a in args]
    for command in (["registry", "serve", "--addr", f"127.0.0.1:{_closed_port()}"], ["registry", "gc"]):
        proc = run_cli(*command, *argv, root=tmp_path / "store", check=False, timeout=60)
        assert proc.returncode != 0 and proc.stderr.count("error:") == 1, proc.stderr
        assert "Traceback" not in proc.stderr and "s3cret" not in proc.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
