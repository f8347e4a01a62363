"""The registry server over both storage drivers: filesystem (the local store) and s3 against a real Ceph RGW
(tests/registry/rgw.py). Chunked uploads, sessions resumed by a new process, range GETs, redirects, skopeo round
trips through ``registry serve --config``, and RGW stopped in the middle of a push."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import httpx
import pytest
from tests.registry.imagegen import make_test_image
from tests.registry.rgw import Rgw

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from polyarch.registry.server import Registry, RegistryConfig, create_app
from polyarch.registry.server.storage import BlobStorage
from polyarch.registry.server.storage.s3 import S3Options, S3Storage

from .conftest import Api, sha256, start_server

PART = 5 << 20  # the smallest S3 part: parts fill up with a few MiB of test data


def _client(rgw: Rgw) -> Any:
    return boto3.client("s3", endpoint_url=rgw.endpoint, aws_access_key_id=rgw.access_key,
                        aws_secret_access_key=rgw.secret_key, region_name="us-east-1",
                        config=botocore.config.Config(s3={"addressing_style": "path"}))


@pytest.fixture
def bucket(rgw: Rgw) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    _client(rgw).create_bucket(Bucket=name)
    return name


def _options(rgw: Rgw, bucket: str) -> S3Options:
    return S3Options(bucket=bucket, regionendpoint=rgw.endpoint, accesskey=rgw.access_key, secretkey=rgw.secret_key,
                     secure=False, forcepathstyle=True, rootdirectory="reg", part_size=PART)


def _keys(rgw: Rgw, bucket: str, prefix: str = "") -> list[str]:
    res = _client(rgw).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in res.get("Contents", [])]


class Drivers:
    """make(**config) → Api over an in-process app on this test's driver; restart() → a new Registry on the same
    root and bucket (what a restarted process sees)."""

    def __init__(self, kind: str, root: Path, storage: Callable[[], BlobStorage | None]) -> None:
        self.kind, self.root, self._storage = kind, root, storage
        self._made: list[tuple[Registry, TestClient]] = []

    def make(self, **config: Any) -> Api:
        reg = Registry(self.root, RegistryConfig(**config), storage=self._storage())
        reg.recover()
        client = TestClient(create_app(reg), base_url="http://127.0.0.1:5000", follow_redirects=False)
        self._made.append((reg, client))
        return Api(client, reg)

    def close(self) -> None:
        for reg, client in self._made:
            client.close()
            reg.close()


@pytest.fixture(params=["filesystem", "s3"])
def drivers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Drivers]:
    if request.param == "s3":
        rgw: Rgw = request.getfixturevalue("rgw")
        name = request.getfixturevalue("bucket")
        d = Drivers("s3", tmp_path / "store", lambda: S3Storage(_options(rgw, name)))
    else:
        d = Drivers("filesystem", tmp_path / "store", lambda: None)
    yield d
    d.close()


def _patch(api: Api, loc: str, data: bytes, start: int) -> httpx.Response:
    return api.c.patch(loc, content=data, headers={"Content-Range": f"{start}-{start + len(data) - 1}",
                                                  "Content-Type": "application/octet-stream"})


def test_chunked_upload_round_trip_and_ranges(drivers: Drivers) -> None:
    api = drivers.make(redirect=False)
    data = os.urandom(PART + (3 << 20) + 777)  # one full part, a tail carried across requests
    loc = api.c.post("/v2/a/b/blobs/uploads/").headers["location"]
    cuts = [0, 3 << 20, PART + 100, len(data)]
    for lo, hi in itertools.pairwise(cuts):
        r = _patch(api, loc, data[lo:hi], lo)
        assert r.status_code == 202, r.text
        assert r.headers["range"] == f"0-{hi - 1}"
    r = _patch(api, loc, b"xx", 5)  # out of order
    assert r.status_code == 416
    r = api.c.put(f"{loc}?digest={sha256(data)}")
    assert r.status_code == 201, r.text
    got = api.c.get(f"/v2/a/b/blobs/{sha256(data)}")
    assert got.status_code == 200 and got.content == data
    part = api.c.get(f"/v2/a/b/blobs/{sha256(data)}", headers={"Range": f"bytes={PART - 10}-{PART + 9}"})
    assert part.status_code == 206 and part.content == data[PART - 10:PART + 10]
    assert part.headers["content-range"] == f"bytes {PART - 10}-{PART + 9}/{len(data)}"
    tail = api.c.get(f"/v2/a/b/blobs/{sha256(data)}", headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    head = api.c.head(f"/v2/a/b/blobs/{sha256(data)}")
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
    small = api.push_blob("a/b", b"tiny")  # monolithic: one PUT on S3
    assert api.c.get(f"/v2/a/b/blobs/{small}").content == b"tiny"
    if drivers.kind == "s3":
        storage = api.reg.blobs  # type: ignore[union-attr]
        assert isinstance(storage, S3Storage)
        keys = _keys_of(storage)
        assert f"reg/blobs/sha256/{sha256(data).split(':')[1]}" in keys
        assert not [k for k in keys if "/_uploads/" in k]  # session objects are gone
        assert not storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads")


def _keys_of(storage: S3Storage) -> list[str]:
    res = storage.client.list_objects_v2(Bucket=storage.bucket)
    return [o["Key"] for o in res.get("Contents", [])]


def test_session_resumes_in_a_new_process(drivers: Drivers) -> None:
    first = drivers.make()
    data = os.urandom(PART + (2 << 20))
    loc = first.c.post("/v2/r/blobs/uploads/").headers["location"]
    assert _patch(first, loc, data[:PART + 1000], 0).status_code == 202
    drivers.close()  # the process ends; the session is only in registry.db and the storage
    second = drivers.make()
    status = second.c.get(loc)
    assert status.status_code == 204 and status.headers["range"] == f"0-{PART + 999}"
    assert _patch(second, loc, data[PART + 1000:], PART + 1000).status_code == 202
    wrong = second.c.put(f"{loc}?digest={sha256(b'other')}")  # the hash is recomputed from the stored data
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert second.c.get(f"/v2/r/blobs/{sha256(b'other')}").status_code == 404
    assert second.c.get(loc).status_code == 404  # a wrong digest closes the session
    # a second session, resumed and completed with the right digest
    loc = second.c.post("/v2/r/blobs/uploads/").headers["location"]
    assert _patch(second, loc, data[:PART + 5], 0).status_code == 202
    drivers.close()
    third = drivers.make(redirect=False)
    assert _patch(third, loc, data[PART + 5:], PART + 5).status_code == 202
    assert third.c.put(f"{loc}?digest={sha256(data)}").status_code == 201
    assert third.c.get(f"/v2/r/blobs/{sha256(data)}").content == data


def test_cancel_and_expiry_drop_the_session_data(drivers: Drivers) -> None:
    api = drivers.make(upload_ttl=3600)
    loc = api.c.post("/v2/r/blobs/uploads/").headers["location"]
    assert _patch(api, loc, os.urandom(PART + 10), 0).status_code == 202
    assert api.c.delete(loc).status_code == 204
    loc2 = api.c.post("/v2/r/blobs/uploads/").headers["location"]
    assert _patch(api, loc2, os.urandom(PART + 10), 0).status_code == 202
    drivers.close()
    later = drivers.make(upload_ttl=3600)
    assert later.reg is not None
    assert later.reg.uploads.expire(now=2e10) == 1  # a session of an earlier process expires too
    assert later.c.get(loc2).status_code == 404
    assert list(later.reg.blobs.sessions()) == []
    if drivers.kind == "s3":
        storage = later.reg.blobs
        assert isinstance(storage, S3Storage)
        assert not storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads")


def test_redirect_to_presigned_url_or_stream(rgw: Rgw, bucket: str, tmp_path: Path) -> None:
    d = Drivers("s3", tmp_path / "store", lambda: S3Storage(_options(rgw, bucket)))
    try:
        api = d.make(redirect_min=0)  # every blob redirected, as distribution does
        data = os.urandom(100_000)
        digest = api.push_blob("x", data)
        r = api.c.get(f"/v2/x/blobs/{digest}")
        assert r.status_code == 307 and r.headers["location"].startswith(rgw.endpoint)
        assert httpx.get(r.headers["location"]).content == data
        ranged = httpx.get(r.headers["location"], headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.content == data[10:20]
        assert api.c.head(f"/v2/x/blobs/{digest}").status_code == 200  # HEAD is answered here
        assert api.c.get(f"/v2/x/blobs/sha256:{'0' * 64}").status_code == 404  # no redirect to nothing
        off = d.make(redirect=False)
        r = off.c.get(f"/v2/x/blobs/{digest}")
        assert r.status_code == 200 and r.content == data
    finally:
        d.close()


# --- real processes: skopeo through --config, and RGW stopped mid-push ----------------------------------------

def _config(tmp_path: Path, rgw: Rgw | None, bucket: str = "", extra: str = "") -> Path:
    path = tmp_path / "registry.yaml"
    if rgw is None:
        storage = "  filesystem: {}\n"
    else:
        storage = (f"  s3:\n    regionendpoint: {rgw.endpoint}\n    region: us-east-1\n    bucket: {bucket}\n"
                   f"    rootdirectory: /polyarch\n    accesskey: {rgw.access_key}\n    secretkey: {rgw.secret_key}\n"
                   f"    secure: false\n    forcepathstyle: true\n    chunksize: {PART}\n")
    path.write_text("version: 0.1\nlog:\n  level: info\nstorage:\n" + storage + "  delete:\n    enabled: true\n"
                    "  cache:\n    blobdescriptor: inmemory\nhttp:\n  headers:\n    X-Content-Type-Options: [nosniff]\n"
                    + extra)
    return path


def _skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skopeo
@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_skopeo_round_trip_through_config(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    rgw: Rgw | None = request.getfixturevalue("rgw") if kind == "s3" else None
    name = request.getfixturevalue("bucket") if kind == "s3" else ""
    src = tmp_path / "src"
    desc = make_test_image(src, "gen/app:1", platforms=("linux/amd64", "linux/arm64"),
                           layer_sizes=(5000, 7 << 20))
    server = start_server(tmp_path / "store", "--config", str(_config(tmp_path, rgw, name)))
    try:
        _skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", f"oci:{src}:gen/app:1",
                f"docker://{server.host}/gen/app:1")
        raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{server.host}/gen/app:1")
        assert sha256(raw.encode()) == str(desc.digest)
        out = tmp_path / "out"
        _skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                f"docker://{server.host}/gen/app:1", f"oci:{out}:x")
        assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == str(desc.digest)
        assert {p.name for p in (out / "blobs" / "sha256").iterdir()} == \
            {p.name for p in (src / "blobs" / "sha256").iterdir()}
        if rgw is not None:
            keys = _keys(rgw, name, "polyarch/blobs/sha256/")
            assert {k.rsplit("/", 1)[1] for k in keys} == {p.name for p in (src / "blobs" / "sha256").iterdir()}
            assert not (tmp_path / "store" / "blobs" / "sha256").exists() or \
                not list((tmp_path / "store" / "blobs" / "sha256").iterdir())
    finally:
        server.stop()


def test_rgw_stopped_mid_push_then_retry(rgw: Rgw, bucket: str, tmp_path: Path) -> None:
    server = start_server(tmp_path / "store", "--config", str(_config(tmp_path, rgw, bucket)))
    layer = os.urandom(PART + 300_000)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256(cfg), "size": len(cfg)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": sha256(layer), "size": len(layer)}]}).encode()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            api = Api(c)
            api.push_blob("f/app", cfg)
            loc = c.post("/v2/f/app/blobs/uploads/").headers["location"]
            assert _patch(api, loc, layer[:PART + 1000], 0).status_code == 202
            rgw.stop_gateway()
            try:
                r = _patch(api, loc, layer[PART + 1000:], PART + 1000)
                assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
                assert c.get(loc).headers["range"] == f"0-{PART + 999}"  # still at its last good offset
                r = c.put("/v2/f/app/manifests/v1", content=manifest,
                          headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
                assert 500 <= r.status_code < 600 and "Traceback" not in r.text
                assert c.get("/v2/f/app/tags/list").json().get("tags") in (None, [])  # nothing published
                assert c.get("/v2/f/app/manifests/v1").status_code == 404
            finally:
                rgw.start_gateway()
            # the client retries: the session continues from where the registry said it is
            assert _patch(api, loc, layer[PART + 1000:], PART + 1000).status_code == 202
            assert c.put(f"{loc}?digest={sha256(layer)}").status_code == 201
            r = c.put("/v2/f/app/manifests/v1", content=manifest,
                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 201, r.text
            got = c.get(f"/v2/f/app/blobs/{sha256(layer)}", follow_redirects=True)
            assert hashlib.sha256(got.content).hexdigest() == sha256(layer).split(":")[1]
    finally:
        server.stop()
