"""Replicas: several ``polyarch registry serve`` processes on one S3 bucket (a real Ceph RGW) and one PostgreSQL
(tests/registry/pg.py) serve the same content. Push through one and pull through another (skopeo); an upload begun
on one replica is continued and finished on another (and a replica starting meanwhile leaves it alone), also after
the first one was killed; gc beside
pushes on another replica deletes nothing referenced and publishes nothing half-way; ``registry gc`` against S3
sweeps unreferenced blobs and abandoned multipart uploads; PostgreSQL stopped mid-push answers 503 and a retry
after its restart succeeds; manifests are served from memory once verified."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import run_cli
from tests.registry.imagegen import make_test_image
from tests.registry.pg import Postgres
from tests.registry.rgw import Rgw

from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import NotFound
from polyarch.registry.server import collect_garbage
from polyarch.registry.server.pgmeta import PostgresMetadata
from polyarch.registry.server.storage.s3 import S3Options, S3Storage

from .conftest import Server, sha256, start_server
from .test_s3_storage import PART, _client, _config, _keys, _skopeo

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def bucket(rgw: Rgw) -> str:
    name = f"r-{uuid.uuid4().hex[:12]}"
    _client(rgw).create_bucket(Bucket=name)
    return name


class Replicas:
    def __init__(self, tmp_path: Path, rgw: Rgw, bucket: str, database: str) -> None:
        self.tmp, self.rgw, self.bucket, self.database = tmp_path, rgw, bucket, database
        self.config = _config(tmp_path, rgw, bucket, f"database: {database}\n")
        self.servers: list[Server] = []

    def start(self, name: str) -> Server:
        server = start_server(self.tmp / name / "store", "--config", str(self.config))
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


@pytest.fixture
def replicas(tmp_path: Path, rgw: Rgw, bucket: str, pg: str) -> Iterator[Replicas]:
    r = Replicas(tmp_path, rgw, bucket, pg)
    yield r
    r.stop()


def _patch(c: httpx.Client, loc: str, data: bytes, start: int) -> httpx.Response:
    return c.patch(loc, content=data, headers={"Content-Range": f"{start}-{start + len(data) - 1}",
                                              "Content-Type": "application/octet-stream"})


def _image(layer: bytes, extra: str = "") -> tuple[bytes, bytes]:
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                      "x": extra}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256(cfg), "size": len(cfg)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": sha256(layer), "size": len(layer)}]}).encode()
    return cfg, manifest


def _push_blob(c: httpx.Client, repo: str, data: bytes) -> int:
    return c.post(f"/v2/{repo}/blobs/uploads/?digest={sha256(data)}", content=data).status_code


@pytest.mark.skopeo
def test_push_through_one_replica_pull_through_another(replicas: Replicas, tmp_path: Path) -> None:
    a, b = replicas.start("a"), replicas.start("b")
    src = tmp_path / "src"
    desc = make_test_image(src, "gen/app:1", platforms=("linux/amd64", "linux/arm64"), layer_sizes=(5000, 6 << 20))
    _skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", f"oci:{src}:gen/app:1",
            f"docker://{a.host}/gen/app:1")
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{b.host}/gen/app:1")
    assert sha256(raw.encode()) == str(desc.digest)
    out = tmp_path / "out"
    _skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", f"docker://{b.host}/gen/app:1",
            f"oci:{out}:x")
    assert {p.name for p in (out / "blobs" / "sha256").iterdir()} == \
        {p.name for p in (src / "blobs" / "sha256").iterdir()}
    assert httpx.get(f"{b.url}/v2/_catalog").json() == {"repositories": ["gen/app"]}
    # neither replica keeps anything of it in its own store: blobs in S3, names in PostgreSQL
    for server in (a, b):
        assert not (server.root / "registry.db").exists()
        assert not (server.root / "blobs" / "sha256").exists() or not any((server.root / "blobs" / "sha256").iterdir())


def test_an_upload_begun_on_one_replica_is_finished_on_another(replicas: Replicas) -> None:
    a, b = replicas.start("a"), replicas.start("b")
    layer = os.urandom(2 * PART + 12345)
    cfg, manifest = _image(layer)
    cut1, cut2 = PART + 1000, 2 * PART + 500
    with httpx.Client(base_url=a.url, timeout=60) as ca, httpx.Client(base_url=b.url, timeout=60) as cb:
        loc = ca.post("/v2/up/app/blobs/uploads/").headers["location"]
        assert _patch(ca, loc, layer[:cut1], 0).status_code == 202
        # a third replica starting now must leave the open session's data alone (its row is in PostgreSQL)
        replicas.start("c")
        r = _patch(cb, loc, layer[cut1:cut2], cut1)
        assert r.status_code == 202 and r.headers["range"] == f"0-{cut2 - 1}"
        # back on A, whose live session is now behind: the row (B's offset) wins
        assert ca.get(loc).headers["range"] == f"0-{cut2 - 1}"
        assert _patch(ca, loc, layer[cut2:cut2 + 100], cut2).status_code == 202
        r = cb.put(f"{loc}?digest={sha256(layer)}", content=layer[cut2 + 100:])
        assert r.status_code == 201, r.text
        assert _push_blob(ca, "up/app", cfg) == 201
        r = ca.put("/v2/up/app/manifests/v1", content=manifest, headers={"Content-Type": MANIFEST})
        assert r.status_code == 201, r.text
        got = cb.get(f"/v2/up/app/blobs/{sha256(layer)}", follow_redirects=True)
        assert hashlib.sha256(got.content).hexdigest() == sha256(layer).split(":")[1]
        assert cb.get("/v2/up/app/manifests/v1").content == manifest
    assert _keys(replicas.rgw, replicas.bucket, "polyarch/_uploads/") == []  # nothing of the session left


def _storage(rgw: Rgw, bucket: str) -> S3Storage:
    return S3Storage(S3Options(bucket=bucket, regionendpoint=rgw.endpoint, accesskey=rgw.access_key,
                               secretkey=rgw.secret_key, secure=False, forcepathstyle=True, rootdirectory="/polyarch",
                               part_size=PART))


def test_gc_beside_pushes_on_another_replica(replicas: Replicas, rgw: Rgw, bucket: str, pg: str,
                                             tmp_path: Path) -> None:
    a, b = replicas.start("a"), replicas.start("b")
    with httpx.Client(base_url=b.url, timeout=60) as cb:
        garbage = os.urandom(3000)  # pushed, never referenced
        assert _push_blob(cb, "gc/app", garbage) == 201
    s3 = _client(rgw)
    orphan = s3.create_multipart_upload(Bucket=bucket, Key=f"polyarch/_uploads/{uuid.uuid4().hex}/data")["UploadId"]
    time.sleep(1.1)  # S3 times have one-second resolution: all of the above is older than the first gc

    published: list[tuple[str, bytes, bytes, bytes]] = []
    failures: list[str] = []
    stop = threading.Event()

    def pusher(n: int) -> None:
        with httpx.Client(base_url=b.url, timeout=60) as c:
            i = 0
            while not stop.is_set():
                layer = os.urandom(1000 + i)
                cfg, manifest = _image(layer, f"{n}-{i}")
                tag = f"t{n}-{i}"
                for _ in range(5):  # a blob the gc swept before its manifest came is pushed again
                    if _push_blob(c, "gc/app", layer) != 201 or _push_blob(c, "gc/app", cfg) != 201:
                        continue
                    r = c.put(f"/v2/gc/app/manifests/{tag}", content=manifest, headers={"Content-Type": MANIFEST})
                    if r.status_code == 201:
                        published.append((tag, manifest, layer, cfg))
                        break
                    if r.status_code != 400 or r.json()["errors"][0]["code"] != "MANIFEST_BLOB_UNKNOWN":
                        failures.append(f"{r.status_code} {r.text[:200]}")
                        break
                i += 1

    threads = [threading.Thread(target=pusher, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    storage, meta = _storage(rgw, bucket), PostgresMetadata(pg)
    deleted: set[str] = set()
    runs = 0
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # the harshest gc: no grace at all, again and again, beside the pushes
            report = collect_garbage(ContentStore(tmp_path / "gc-store"), grace=0.0, storage=storage, meta=meta)
            deleted.update(report.deleted)
            runs += 1
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        meta.close()
    assert failures == [] and len(published) >= 4 and runs >= 2
    assert sha256(garbage) in deleted
    # nothing referenced was deleted, nothing half-published: every tag answered 201 is whole, on either replica
    with httpx.Client(base_url=a.url, timeout=60, follow_redirects=True) as ca:
        for tag, manifest, layer, cfg in published:
            assert ca.get(f"/v2/gc/app/manifests/{tag}").content == manifest
            assert ca.get(f"/v2/gc/app/blobs/{sha256(layer)}").content == layer
            assert ca.get(f"/v2/gc/app/blobs/{sha256(cfg)}").content == cfg
        assert ca.get(f"/v2/gc/app/blobs/{sha256(garbage)}").status_code == 404
    # sessions are never purged within two minutes of their last write: five minutes later (pushes ended), the
    # abandoned multipart upload no row owns is gone, and what the pushes published is still whole
    ups = s3.list_multipart_uploads(Bucket=bucket, Prefix="polyarch/_uploads/").get("Uploads", [])
    assert orphan in [u["UploadId"] for u in ups]
    meta = PostgresMetadata(pg)
    try:
        later = collect_garbage(ContentStore(tmp_path / "gc-store"), grace=0.0, storage=storage, meta=meta,
                                now=time.time() + 300)
    finally:
        meta.close()
    assert later.uploads_purged >= 1
    with httpx.Client(base_url=b.url, timeout=60, follow_redirects=True) as cb:
        for tag, manifest, layer, _cfg in published:
            assert cb.get(f"/v2/gc/app/manifests/{tag}").content == manifest
            assert cb.get(f"/v2/gc/app/blobs/{sha256(layer)}").content == layer
    ups = s3.list_multipart_uploads(Bucket=bucket, Prefix="polyarch/_uploads/").get("Uploads", [])
    assert orphan not in [u["UploadId"] for u in ups]


def test_registry_gc_cli_against_s3(replicas: Replicas, rgw: Rgw, bucket: str, tmp_path: Path) -> None:
    a = replicas.start("a")
    with httpx.Client(base_url=a.url, timeout=60) as c:
        keep, manifest = _image(b"layer")
        assert _push_blob(c, "cli/app", b"layer") == 201 and _push_blob(c, "cli/app", keep) == 201
        assert c.put("/v2/cli/app/manifests/v1", content=manifest, headers={"Content-Type": MANIFEST}).status_code \
            == 201
        assert _push_blob(c, "cli/app", b"garbage") == 201
    time.sleep(1.1)
    root = tmp_path / "cli-root"
    dry = run_cli("registry", "gc", "--config", str(replicas.config), "--dry-run", "--grace", "0s", root=root)
    assert dry.returncode == 0, dry.stderr
    assert f"would delete {sha256(b'garbage')}" in dry.stdout and "would delete 1 blobs" in dry.stdout
    done = run_cli("registry", "gc", "--config", str(replicas.config), "--grace", "0s", root=root)
    assert done.returncode == 0 and f"deleted {sha256(b'garbage')}" in done.stdout, done.stderr
    keys = {k.rsplit("/", 1)[1] for k in _keys(rgw, bucket, "polyarch/blobs/sha256/")}
    assert keys == {h.split(":")[1] for h in (sha256(b"layer"), sha256(keep), sha256(manifest))}
    bad = run_cli("registry", "gc", "--config", str(replicas.config), "--scrub", root=root, check=False)
    assert bad.returncode != 0 and bad.stderr.count("error:") == 1 and "Traceback" not in bad.stderr


def test_postgres_stopped_mid_push_then_retry(replicas: Replicas, pg_cluster: Postgres) -> None:
    a = replicas.start("a")
    layer = os.urandom(PART + 300_000)
    cfg, manifest = _image(layer)
    with httpx.Client(base_url=a.url, timeout=60) as c:
        assert _push_blob(c, "pg/app", cfg) == 201
        loc = c.post("/v2/pg/app/blobs/uploads/").headers["location"]
        assert _patch(c, loc, layer[:PART + 1000], 0).status_code == 202
        pg_cluster.stop()
        try:
            r = _patch(c, loc, layer[PART + 1000:], PART + 1000)
            assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE", r.text
            r = c.put("/v2/pg/app/manifests/v1", content=manifest, headers={"Content-Type": MANIFEST})
            assert r.status_code == 503 and "Traceback" not in r.text
            assert c.get("/v2/pg/app/manifests/v1").status_code == 503
        finally:
            pg_cluster.start()
        assert c.get("/v2/pg/app/tags/list").json().get("tags") in (None, [])  # nothing was published
        assert c.get(loc).headers["range"] == f"0-{PART + 999}"  # the session is where it was
        assert _patch(c, loc, layer[PART + 1000:], PART + 1000).status_code == 202
        assert c.put(f"{loc}?digest={sha256(layer)}").status_code == 201
        r = c.put("/v2/pg/app/manifests/v1", content=manifest, headers={"Content-Type": MANIFEST})
        assert r.status_code == 201, r.text
        assert c.get("/v2/pg/app/manifests/v1").content == manifest


def test_small_blobs_are_served_from_memory_once_verified(rgw: Rgw, bucket: str) -> None:
    storage, s3 = _storage(rgw, bucket), _client(rgw)
    data = b'{"schemaVersion": 2}'
    digest = Digest.of(data)
    storage.write(data, digest)
    s3.delete_object(Bucket=bucket, Key=storage.blob_key(digest))  # gone from S3: the verified copy answers
    assert storage.read(digest, limit=1 << 20) == data
    storage.delete(digest)
    with pytest.raises(NotFound):
        storage.read(digest, limit=1 << 20)
    other = Digest.of(b"right")
    s3.put_object(Bucket=bucket, Key=storage.blob_key(other), Body=b"wrong")  # bytes that do not match their name
    assert storage.read(other, limit=100) == b"wrong"  # returned (the caller verifies), never kept
    s3.put_object(Bucket=bucket, Key=storage.blob_key(other), Body=b"right")
    assert storage.read(other, limit=100) == b"right"


def test_a_replica_killed_mid_upload_the_other_finishes_it(replicas: Replicas) -> None:
    a, b = replicas.start("a"), replicas.start("b")
    assert "with metadata in postgresql://" in a.log.read_text()
    layer = os.urandom(PART + 4321)
    with httpx.Client(base_url=a.url, timeout=60) as ca, httpx.Client(base_url=b.url, timeout=60) as cb:
        loc = ca.post("/v2/kill/app/blobs/uploads/").headers["location"]
        assert _patch(ca, loc, layer[:PART + 100], 0).status_code == 202
        a.kill()
        assert cb.get(loc).headers["range"] == f"0-{PART + 99}"
        r = cb.put(f"{loc}?digest={sha256(layer)}", content=layer[PART + 100:],
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        got = cb.get(f"/v2/kill/app/blobs/{sha256(layer)}", follow_redirects=True)
        assert hashlib.sha256(got.content).hexdigest() == sha256(layer).split(":")[1]
