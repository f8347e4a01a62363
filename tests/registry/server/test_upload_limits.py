"""Upload-session limits counted in the metadata database (SQLite and a real PostgreSQL 15), so every process on
one database shares them: ``create_upload`` with ``UploadLimits`` refuses the session over a repository's or a
client's limit, idle sessions stop counting, concurrent creators through separate connections never overshoot,
and two ``registry serve`` replicas on one bucket and one PostgreSQL answer 429 at the shared limit; the limits come
from ``limits.*`` in the config file or the flags over it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.registry.rgw import Rgw

from polyarch.registry.server.metadata import DB_NAME, Metadata
from polyarch.registry.server.metastore import MetadataStore, TooManyUploads, UploadLimits
from polyarch.registry.server.pgmeta import PostgresMetadata

from .conftest import sha256, start_server
from .test_s3_storage import _config, bucket  # noqa: F401  (bucket: the fixture)


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], MetadataStore]]:
    """opener() → a new store (its own connections) on the one database of this test."""
    url = request.getfixturevalue("pg") if request.param == "postgresql" else ""
    opened: list[MetadataStore] = []

    def open_one() -> MetadataStore:
        m: MetadataStore = PostgresMetadata(url) if url else Metadata(tmp_path / DB_NAME)
        opened.append(m)
        return m

    yield open_one
    for m in opened:
        m.close()


def test_limits_per_repository_and_client(opener: Callable[[], MetadataStore]) -> None:
    a, b = opener(), opener()
    limits = UploadLimits(per_repo=2, per_client=3, idle=3600.0)
    a.create_upload("u1", "r1", "sha256", "10.0.0.1", limits)
    b.create_upload("u2", "r1", "sha256", "10.0.0.1", limits)  # another process on the same database
    with pytest.raises(TooManyUploads) as info:
        a.create_upload("u3", "r1", "sha256", "10.0.0.2", limits)
    assert (info.value.scope, info.value.limit) == ("repository", 2)
    b.create_upload("u4", "r2", "sha256", "10.0.0.1", limits)
    with pytest.raises(TooManyUploads) as info:
        b.create_upload("u5", "r3", "sha256", "10.0.0.1", limits)
    assert (info.value.scope, info.value.limit) == ("client", 3)
    assert a.upload("u3") is None and a.upload("u5") is None  # refused: no row
    assert b.finish_upload("u1")  # a finished session frees its slot, for every process
    a.create_upload("u6", "r1", "sha256", "10.0.0.2", limits)
    a.create_upload("u7", "r9", "sha256", "", None)  # without limits nothing is counted
    assert {u.id for u in b.uploads()} == {"u2", "u4", "u6", "u7"}


def test_idle_sessions_stop_counting(opener: Callable[[], MetadataStore]) -> None:
    m = opener()
    limits = UploadLimits(per_repo=1, per_client=10, idle=0.5)
    m.create_upload("old", "r", "sha256", "c", limits)
    with pytest.raises(TooManyUploads):
        m.create_upload("new", "r", "sha256", "c", limits)
    time.sleep(0.3)
    assert m.advance_upload("old", 10)  # written to: still open
    time.sleep(0.3)
    with pytest.raises(TooManyUploads):
        m.create_upload("new", "r", "sha256", "c", limits)
    time.sleep(0.6)  # idle longer than the limit's TTL: the expiry purge will drop it, it no longer counts
    m.create_upload("new", "r", "sha256", "c", limits)


def test_concurrent_creators_never_overshoot(opener: Callable[[], MetadataStore]) -> None:
    stores = [opener() for _ in range(4)]
    limits = UploadLimits(per_repo=5, per_client=1000, idle=3600.0)
    made: list[str] = []
    refused: list[str] = []
    barrier = threading.Barrier(24)

    def create(i: int) -> None:
        barrier.wait()
        try:
            stores[i % 4].create_upload(f"u{i}", "hot", "sha256", f"c{i}", limits)
            made.append(f"u{i}")
        except TooManyUploads:
            refused.append(f"u{i}")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 5 and len(refused) == 19, (made, refused)
    assert sorted(u.id for u in stores[0].uploads()) == sorted(made)


def test_two_replicas_share_the_limits(rgw: Rgw, bucket: str, pg: str, tmp_path: Path) -> None:  # noqa: F811
    config = _config(tmp_path, rgw, bucket, f"database: {pg}\n")
    limits = ("--max-uploads-per-repo", "3", "--max-uploads-per-client", "5")
    one = start_server(tmp_path / "one" / "store", "--config", str(config), *limits)
    two = start_server(tmp_path / "two" / "store", "--config", str(config), *limits)
    try:
        with httpx.Client(base_url=one.url, timeout=30) as c1, httpx.Client(base_url=two.url, timeout=30) as c2:
            first = c1.post("/v2/a/blobs/uploads/")
            assert [first.status_code, c1.post("/v2/a/blobs/uploads/").status_code,
                    c2.post("/v2/a/blobs/uploads/").status_code] == [202, 202, 202]
            for c in (c1, c2):  # the repository's 4th session, on either replica
                r = c.post("/v2/a/blobs/uploads/")
                assert r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
                assert "repository a has 3 open upload sessions" in r.json()["errors"][0]["message"]
                assert r.headers["retry-after"]
            data = b"monolithic"
            assert c2.post(f"/v2/a/blobs/uploads/?digest={sha256(data)}", content=data).status_code == 429
            # the same client address (127.0.0.1) on both replicas: 5 in all
            assert [c2.post("/v2/b/blobs/uploads/").status_code, c1.post("/v2/c/blobs/uploads/").status_code] == \
                [202, 202]
            r = c2.post("/v2/d/blobs/uploads/")
            assert r.status_code == 429 and "this client has 5 open upload sessions" in r.text
            # a session cancelled on one replica frees its slot on the other
            assert c1.delete(first.headers["location"]).status_code == 204
            assert c2.post(f"/v2/a/blobs/uploads/?digest={sha256(data)}", content=data).status_code == 201
            assert c1.get(f"/v2/a/blobs/{sha256(data)}").content == data
    finally:
        one.stop()
        two.stop()


def test_limits_from_the_config_file_and_the_flag_over_it(tmp_path: Path) -> None:
    config = tmp_path / "registry.yaml"
    config.write_text("limits:\n  uploadsperrepo: 2\n  uploadsperclient: 100\n  uploadttl: 1h\n")
    server = start_server(tmp_path / "store", "--config", str(config))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert [c.post("/v2/a/blobs/uploads/").status_code for _ in range(3)] == [202, 202, 429]
    finally:
        server.stop()
    server = start_server(tmp_path / "store2", "--config", str(config), "--max-uploads-per-repo", "3")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert [c.post("/v2/a/blobs/uploads/").status_code for _ in range(4)] == [202, 202, 202, 429]
    finally:
        server.stop()
