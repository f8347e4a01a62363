"""Blob GET redirects on the s3 driver (real Ceph RGW, tests/registry/rgw.py): blobs smaller than
``RegistryConfig.redirect_min`` (``storage.redirect.minsize``) are streamed with ``Docker-Content-Digest``, larger
ones answer 307 to a presigned URL, HEAD is always answered by the registry; and why: the storage's answer to a
presigned URL has no ``Docker-Content-Digest``, which the distribution spec asks for on the answer reached after any
redirect."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.registry.rgw import Rgw

from polyarch.registry.server import RegistryConfig
from polyarch.registry.server.state import REDIRECT_MIN
from polyarch.registry.server.storage.s3 import S3Storage

from .conftest import start_server
from .test_s3_storage import PART, Drivers, _options, bucket  # noqa: F401  (bucket: the fixture)


@pytest.fixture
def s3(rgw: Rgw, bucket: str, tmp_path: Path) -> Iterator[Drivers]:  # noqa: F811
    d = Drivers("s3", tmp_path / "store", lambda: S3Storage(_options(rgw, bucket)))
    yield d
    d.close()


def test_the_default_threshold_streams_small_blobs_and_redirects_layers() -> None:
    assert RegistryConfig().redirect and RegistryConfig().redirect_min == REDIRECT_MIN == 1 << 20


def test_a_small_blob_is_streamed_with_its_digest(s3: Drivers) -> None:
    api = s3.make(redirect_min=4096)
    data = os.urandom(4095)
    digest = api.push_blob("x", data)
    r = api.c.get(f"/v2/x/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["docker-content-digest"] == digest and r.headers["content-length"] == "4095"
    ranged = api.c.get(f"/v2/x/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    assert ranged.headers["docker-content-digest"] == digest
    empty = api.push_blob("x", b"")
    r = api.c.get(f"/v2/x/blobs/{empty}")
    assert r.status_code == 200 and r.content == b"" and r.headers["docker-content-digest"] == empty


def test_a_blob_at_the_threshold_is_redirected_and_head_is_answered_here(rgw: Rgw, s3: Drivers) -> None:
    api = s3.make(redirect_min=4096)
    data = os.urandom(4096)
    digest = api.push_blob("x", data)
    r = api.c.get(f"/v2/x/blobs/{digest}")
    assert r.status_code == 307 and r.headers["location"].startswith(rgw.endpoint)
    assert r.headers["docker-content-digest"] == digest
    followed = httpx.get(r.headers["location"])
    assert followed.status_code == 200 and followed.content == data
    assert followed.headers["content-type"] == "application/octet-stream"  # as a streamed blob says
    # the premise of the threshold: the storage's own answer cannot carry the registry's digest header
    assert "docker-content-digest" not in followed.headers
    head = api.c.head(f"/v2/x/blobs/{digest}")
    assert head.status_code == 200 and head.headers["docker-content-digest"] == digest
    assert head.headers["content-length"] == "4096"


def test_minsize_zero_redirects_every_blob_and_redirect_off_streams_every_blob(s3: Drivers) -> None:
    every = s3.make(redirect_min=0)
    digest = every.push_blob("x", b"tiny")
    assert every.c.get(f"/v2/x/blobs/{digest}").status_code == 307
    off = s3.make(redirect=False, redirect_min=0)
    big = os.urandom(200_000)
    big_digest = off.push_blob("x", big)
    r = off.c.get(f"/v2/x/blobs/{big_digest}")
    assert r.status_code == 200 and r.content == big and r.headers["docker-content-digest"] == big_digest


def test_storage_redirect_minsize_reaches_the_server(rgw: Rgw, bucket: str, tmp_path: Path) -> None:  # noqa: F811
    config = tmp_path / "registry.yaml"
    config.write_text(f"storage:\n  s3:\n    regionendpoint: {rgw.endpoint}\n    bucket: {bucket}\n"
                      f"    accesskey: {rgw.access_key}\n    secretkey: {rgw.secret_key}\n    secure: false\n"
                      f"    forcepathstyle: true\n    chunksize: {PART}\n  redirect:\n    minsize: 1000\n")
    server = start_server(tmp_path / "store", "--config", str(config))
    try:
        with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as c:
            got = {}
            for size in (999, 1000):
                data = os.urandom(size)
                r = c.post("/v2/x/blobs/uploads/")
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                assert c.put(r.headers["location"], params={"digest": digest}, content=data).status_code == 201
                got[size] = c.get(f"/v2/x/blobs/{digest}").status_code
            assert got == {999: 200, 1000: 307}
    finally:
        server.stop()
