"""The pull-through mirror against a real upstream: a second ``polyarch registry serve`` holding a 2-platform image,
reached through the fault proxy (tests/registry/faultproxy.py, which also logs what the mirror asked the upstream),
with the mirror (``--config`` with a ``proxy:`` section) in front. skopeo pulls one platform, then all; the upstream
stopped → the cache still serves; a tag changed upstream is served once its ttl expired; faults mid-blob leave
nothing half-stored and a retry succeeds; pushes are refused; an upstream requiring bearer tokens is reached with
the proxy's credentials."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import boto3
import botocore.config
import httpx
import pytest
from tests.conftest import run_cli
from tests.registry.faultproxy import FaultProxy
from tests.registry.imagegen import make_test_image
from tests.registry.rgw import Rgw

from polyarch.content.store import ContentStore
from polyarch.digest import Digest

from .conftest import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256, start_server

AMD64, ARM64 = "linux/amd64", "linux/arm64"
LAYERS = (5000, 600_000)


class Mirror:
    """An upstream registry with ``gen/app:1`` (amd64 + arm64), the fault proxy before it, and the mirror."""

    def __init__(self, tmp: Path, *, ttl: str = "168h", upstream_args: tuple[str, ...] = (),
                 proxy_extra: str = "", storage: str = "") -> None:
        self.tmp = tmp
        make_test_image(tmp / "up" / "store", "gen/app:1", platforms=(AMD64, ARM64), layer_sizes=LAYERS)
        self.upstream = start_server(tmp / "up" / "store", *upstream_args)
        self.faults = FaultProxy(self.upstream.host)
        self.faults.start()
        config = tmp / "mirror.yaml"
        config.write_text(f"version: 0.1\nproxy:\n  remoteurl: http://{self.faults.host}\n  ttl: {ttl}\n"
                          f"{proxy_extra}{storage}")
        self.server = start_server(tmp / "mirror" / "store", "--config", str(config))
        self.store = ContentStore(tmp / "mirror" / "store")
        self.http = httpx.Client(base_url=self.server.url, timeout=30)
        self.up = httpx.Client(base_url=self.upstream.url, timeout=30)

    def close(self) -> None:
        self.http.close()
        self.up.close()
        self.server.stop()
        self.faults.stop()
        self.upstream.stop()

    def upstream_gets(self, what: str) -> list[str]:
        return [path for method, path, _ in self.faults.log if method == "GET" and what in path]

    def index(self) -> dict[str, dict[str, object]]:
        """platform → the upstream's child manifest (its digest and document)."""
        doc = self.up.get("/v2/gen/app/manifests/1", headers={"Accept": OCI_INDEX}).json()
        out = {}
        for m in doc["manifests"]:
            p = m["platform"]
            raw = self.up.get(f"/v2/gen/app/manifests/{m['digest']}", headers={"Accept": OCI_MANIFEST}).content
            out[f"{p['os']}/{p['architecture']}"] = {"digest": m["digest"], "doc": json.loads(raw)}
        return out

    def sessions(self) -> list[str]:
        uploads = self.tmp / "mirror" / "store" / "registry" / "uploads"
        return sorted(os.listdir(uploads)) if uploads.exists() else []


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    m = Mirror(tmp_path)
    yield m
    m.close()


def _skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _blobs(doc: dict[str, object]) -> list[str]:
    return [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]  # type: ignore[index]


@pytest.mark.skopeo
def test_one_platform_then_all_pulled_through(mirror: Mirror, tmp_path: Path) -> None:
    children = mirror.index()
    arm, amd = children[ARM64], children[AMD64]
    only_amd = set(_blobs(amd["doc"])) - set(_blobs(arm["doc"]))  # type: ignore[arg-type]
    _skopeo("copy", "--src-tls-verify=false", "--override-arch", "arm64", "--override-os", "linux",
            f"docker://{mirror.server.host}/gen/app:1", f"oci:{tmp_path / 'one'}:x")
    store = mirror.store
    assert store.stat(Digest.parse(str(arm["digest"]))) is not None
    for d in _blobs(arm["doc"]):  # type: ignore[arg-type]
        assert store.stat(Digest.parse(d)) is not None
    assert store.stat(Digest.parse(str(amd["digest"]))) is None  # the other platform was never fetched
    assert not any(store.stat(Digest.parse(d)) for d in only_amd)
    assert not mirror.upstream_gets(str(amd["digest"]))
    assert not any(mirror.upstream_gets(d) for d in only_amd)
    # the index itself is cached: its digest is the upstream's
    index_digest = mirror.up.head("/v2/gen/app/manifests/1", headers={"Accept": OCI_INDEX}).headers[
        "docker-content-digest"]
    assert store.stat(Digest.parse(index_digest)) is not None

    shared = _blobs(arm["doc"])[1]  # type: ignore[arg-type]
    before = len(mirror.upstream_gets(shared))
    _skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{mirror.server.host}/gen/app:1",
            f"oci:{tmp_path / 'all'}:x")
    for d in [str(amd["digest"]), *_blobs(amd["doc"])]:  # type: ignore[arg-type]
        assert store.stat(Digest.parse(d)) is not None
    assert len(mirror.upstream_gets(shared)) == before  # cached blobs are not fetched again
    # what the mirror serves is what the upstream has, byte for byte
    for d in _blobs(amd["doc"]):  # type: ignore[arg-type]
        assert sha256(mirror.http.get(f"/v2/gen/app/blobs/{d}").content) == d
    assert mirror.sessions() == []


@pytest.mark.skopeo
def test_upstream_stopped_cached_content_still_served(tmp_path: Path) -> None:
    m = Mirror(tmp_path, ttl="1s")
    try:
        _skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{m.server.host}/gen/app:1",
                f"oci:{tmp_path / 'first'}:x")
        want = m.http.get("/v2/gen/app/manifests/1", headers={"Accept": OCI_INDEX}).headers["docker-content-digest"]
        m.upstream.stop()
        time.sleep(1.2)  # the tag's ttl is over: the check fails, the cached tag is served
        r = m.http.get("/v2/gen/app/manifests/1", headers={"Accept": OCI_INDEX})
        assert r.status_code == 200 and r.headers["docker-content-digest"] == want
        _skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{m.server.host}/gen/app:1",
                f"oci:{tmp_path / 'again'}:x")
        # not cached and the upstream is down: a clean 503, not a hang or a 500
        r = m.http.get("/v2/gen/other/manifests/1")
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
        r = m.http.get(f"/v2/gen/app/blobs/{sha256(b'never seen')}")
        assert r.status_code == 503
    finally:
        m.close()


def _push_small(up: httpx.Client, repo: str, tag: str, payload: bytes) -> str:
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    for blob in (cfg, payload):
        r = up.post(f"/v2/{repo}/blobs/uploads/?digest={sha256(blob)}", content=blob)
        assert r.status_code == 201, r.text
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "digest": sha256(cfg), "size": len(cfg)},
                      "layers": [{"mediaType": OCI_LAYER, "digest": sha256(payload), "size": len(payload)}]}).encode()
    r = up.put(f"/v2/{repo}/manifests/{tag}", content=raw, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return r.headers["docker-content-digest"]


def test_tag_changed_upstream_served_after_ttl(tmp_path: Path) -> None:
    m = Mirror(tmp_path, ttl="2s")
    try:
        first = _push_small(m.up, "lib/moving", "latest", b"one")
        r = m.http.get("/v2/lib/moving/manifests/latest", headers={"Accept": OCI_MANIFEST})
        assert r.headers["docker-content-digest"] == first
        second = _push_small(m.up, "lib/moving", "latest", b"two")
        heads = len([1 for method, path, _ in m.faults.log if method == "HEAD" and "lib/moving/manifests" in path])
        r = m.http.head("/v2/lib/moving/manifests/latest", headers={"Accept": OCI_MANIFEST})
        assert r.headers["docker-content-digest"] == first  # within the ttl: not even asked
        assert len([1 for method, path, _ in m.faults.log if method == "HEAD" and "lib/moving/manifests" in path]) \
            == heads
        time.sleep(2.2)
        r = m.http.get("/v2/lib/moving/manifests/latest", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.headers["docker-content-digest"] == second
        layer = json.loads(r.content)["layers"][0]["digest"]
        assert m.http.get(f"/v2/lib/moving/blobs/{layer}").content == b"two"
        # the old manifest stays reachable by digest
        assert m.http.get(f"/v2/lib/moving/manifests/{first}").status_code == 200
    finally:
        m.close()


def test_pushes_refused(mirror: Mirror) -> None:
    r = mirror.http.post("/v2/gen/app/blobs/uploads/")
    assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED"
    r = mirror.http.put("/v2/gen/app/manifests/2", content=b"{}", headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 405
    r = mirror.http.delete(f"/v2/gen/app/manifests/{sha256(b'x')}")
    assert r.status_code == 405


def _big_layer(m: Mirror) -> tuple[str, int]:
    doc = m.index()[AMD64]["doc"]
    layer = doc["layers"][1]  # type: ignore[index]
    return layer["digest"], layer["size"]


def test_upstream_cut_mid_blob_is_resumed(mirror: Mirror) -> None:
    digest, size = _big_layer(mirror)
    mirror.faults.add("GET", f"/blobs/{digest}", "reset", after=100_000, times=1)
    r = mirror.http.get(f"/v2/gen/app/blobs/{digest}")
    assert r.status_code == 200 and sha256(r.content) == digest and len(r.content) == size
    assert mirror.store.stat(Digest.parse(digest)) == size
    assert mirror.sessions() == []


def test_upstream_failing_mid_blob_nothing_half_stored_then_retry(mirror: Mirror) -> None:
    digest, size = _big_layer(mirror)
    mirror.faults.add("GET", f"/blobs/{digest}", "reset", after=100_000, times=4)  # beyond the client's retries
    with pytest.raises(httpx.HTTPError), mirror.http.stream("GET", f"/v2/gen/app/blobs/{digest}") as r:
        assert r.status_code == 200
        b"".join(r.iter_bytes())
    time.sleep(0.3)
    assert mirror.store.stat(Digest.parse(digest)) is None
    assert mirror.sessions() == []
    r = mirror.http.get(f"/v2/gen/app/blobs/{digest}")  # the faults are used up: the retry succeeds
    assert r.status_code == 200 and sha256(r.content) == digest
    assert mirror.store.stat(Digest.parse(digest)) == size


def test_upstream_5xx_before_any_byte_is_a_clean_503(mirror: Mirror) -> None:
    digest, _ = _big_layer(mirror)
    mirror.faults.add("GET", f"/blobs/{digest}", "status", status=503, times=4)
    r = mirror.http.get(f"/v2/gen/app/blobs/{digest}")
    assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert mirror.store.stat(Digest.parse(digest)) is None and mirror.sessions() == []
    r = mirror.http.get(f"/v2/gen/app/blobs/{digest}")
    assert r.status_code == 200 and sha256(r.content) == digest


def test_range_of_an_uncached_blob_and_unknown_names(mirror: Mirror) -> None:
    digest, _ = _big_layer(mirror)
    whole = mirror.up.get(f"/v2/gen/app/blobs/{digest}").content
    r = mirror.http.get(f"/v2/gen/app/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == whole[10:20]
    assert mirror.http.head(f"/v2/gen/app/blobs/{sha256(b'nope')}").status_code == 404
    r = mirror.http.get("/v2/gen/app/manifests/nosuchtag")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_upstream_with_bearer_tokens_reached_with_the_proxy_credentials(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"puller:{bcrypt.hashpw(b'pw-upstream', bcrypt.gensalt(rounds=4)).decode()}\n")
    m = Mirror(tmp_path, upstream_args=("--htpasswd", str(htpasswd), "--token-auth"),
               proxy_extra="  username: puller\n  password: pw-upstream\n")
    try:
        assert m.up.get("/v2/gen/app/manifests/1").status_code == 401  # the upstream wants a token
        r = m.http.get("/v2/gen/app/manifests/1", headers={"Accept": OCI_INDEX})
        assert r.status_code == 200
        child = r.json()["manifests"][0]["digest"]
        doc = m.http.get(f"/v2/gen/app/manifests/{child}", headers={"Accept": OCI_MANIFEST}).json()
        for digest in _blobs(doc):
            assert sha256(m.http.get(f"/v2/gen/app/blobs/{digest}").content) == digest
    finally:
        m.close()


def _push_blob(up: httpx.Client, repo: str, data: bytes) -> str:
    r = up.post(f"/v2/{repo}/blobs/uploads/?digest={sha256(data)}", content=data)
    assert r.status_code == 201, r.text
    return sha256(data)


def test_client_gone_mid_blob_the_blob_is_still_stored(mirror: Mirror) -> None:
    big = os.urandom(40 << 20)
    digest = _push_blob(mirror.up, "gen/app", big)
    with mirror.http.stream("GET", f"/v2/gen/app/blobs/{digest}") as r:
        assert r.status_code == 200
        next(r.iter_raw(64 << 10))  # one chunk, then the client hangs up
    deadline = time.monotonic() + 30
    while mirror.store.stat(Digest.parse(digest)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mirror.store.stat(Digest.parse(digest)) == len(big)
    assert len(mirror.upstream_gets(digest)) == 1
    r = mirror.http.get(f"/v2/gen/app/blobs/{digest}")  # from the storage now
    assert sha256(r.content) == digest and len(mirror.upstream_gets(digest)) == 1


def test_concurrent_pulls_of_one_blob_fetch_it_once(mirror: Mirror) -> None:
    big = os.urandom(24 << 20)
    digest = _push_blob(mirror.up, "gen/app", big)
    _push_blob(mirror.up, "gen/other", big)
    results: list[str] = []

    def pull(repo: str) -> None:
        with httpx.Client(base_url=mirror.server.url, timeout=60) as c:
            results.append(sha256(c.get(f"/v2/{repo}/blobs/{digest}").content))

    threads = [threading.Thread(target=pull, args=(repo,)) for repo in ("gen/app", "gen/other", "gen/app")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [digest] * 3
    assert len(mirror.upstream_gets(digest)) == 1
    mirror.upstream.stop()  # both repositories serve it from the cache now
    for repo in ("gen/app", "gen/other"):
        assert mirror.http.head(f"/v2/{repo}/blobs/{digest}").status_code == 200


def test_allow_push_serves_local_tags_beside_the_upstream(tmp_path: Path) -> None:
    m = Mirror(tmp_path, ttl="0", proxy_extra="  allowpush: true\n")
    try:
        mine = _push_small(m.http, "own/app", "1", b"local")  # the upstream never had it
        r = m.http.get("/v2/own/app/manifests/1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.headers["docker-content-digest"] == mine
        r = m.http.get("/v2/gen/app/manifests/1", headers={"Accept": OCI_INDEX})  # still a mirror
        assert r.status_code == 200
    finally:
        m.close()


def test_polyarch_pulls_one_platform_through_the_mirror(mirror: Mirror, tmp_path: Path) -> None:
    children = mirror.index()
    proc = run_cli("pull", "--platform", ARM64, "--progress", "quiet", f"{mirror.server.host}/gen/app:1",
                   root=tmp_path / "client")
    assert proc.returncode == 0
    assert mirror.store.stat(Digest.parse(str(children[ARM64]["digest"]))) is not None
    assert mirror.store.stat(Digest.parse(str(children[AMD64]["digest"]))) is None
    client = ContentStore(tmp_path / "client")
    for d in _blobs(children[ARM64]["doc"]):  # type: ignore[arg-type]
        assert client.stat(Digest.parse(d)) is not None


def test_s3_storage_nothing_half_stored_then_retry(tmp_path: Path, rgw: Rgw) -> None:
    """On the s3 driver the blob goes through a multipart upload: a fetch failing after a part was uploaded leaves
    neither an object nor a multipart upload behind."""
    s3 = boto3.client("s3", endpoint_url=rgw.endpoint, aws_access_key_id=rgw.access_key,
                      aws_secret_access_key=rgw.secret_key, region_name="us-east-1",
                      config=botocore.config.Config(s3={"addressing_style": "path"}))
    bucket = f"p-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    storage = (f"storage:\n  redirect:\n    disable: true\n  s3:\n    regionendpoint: {rgw.endpoint}\n"
               f"    region: us-east-1\n    bucket: {bucket}\n    accesskey: {rgw.access_key}\n"
               f"    secretkey: {rgw.secret_key}\n    secure: false\n    forcepathstyle: true\n"
               f"    chunksize: {5 << 20}\n")
    m = Mirror(tmp_path, storage=storage)
    try:
        big = os.urandom(13 << 20)
        digest = _push_blob(m.up, "gen/app", big)
        m.faults.add("GET", f"/blobs/{digest}", "reset", after=3 << 20, times=4)  # 12 MiB of 13 arrive
        with pytest.raises(httpx.HTTPError), m.http.stream("GET", f"/v2/gen/app/blobs/{digest}") as r:
            b"".join(r.iter_bytes())
        time.sleep(0.5)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert not any(Digest.parse(digest).hex in k for k in keys)
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        r = m.http.get(f"/v2/gen/app/blobs/{digest}")
        assert r.status_code == 200 and sha256(r.content) == digest
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert any(Digest.parse(digest).hex in k for k in keys)
        r = m.http.get("/v2/gen/app/manifests/1", headers={"Accept": OCI_INDEX})  # manifests in S3 too
        assert r.status_code == 200
        assert m.http.get(f"/v2/gen/app/blobs/{digest}").content == big  # now streamed from S3
    finally:
        m.close()


def test_new_tag_target_unfetchable_cached_tag_served_until_it_is(tmp_path: Path) -> None:
    m = Mirror(tmp_path, ttl="1s")
    try:
        first = _push_small(m.up, "lib/moving", "latest", b"one")
        assert m.http.get("/v2/lib/moving/manifests/latest").headers["docker-content-digest"] == first
        second = _push_small(m.up, "lib/moving", "latest", b"two")
        time.sleep(1.2)
        m.faults.add("GET", f"/manifests/{second}", "status", status=503, times=4)  # the HEAD answers, the GET fails
        r = m.http.get("/v2/lib/moving/manifests/latest")
        assert r.status_code == 200 and r.headers["docker-content-digest"] == first
        r = m.http.get("/v2/lib/moving/manifests/latest")  # not marked checked: asked again at once
        assert r.status_code == 200 and r.headers["docker-content-digest"] == second
    finally:
        m.close()


def test_tag_list_adds_the_upstreams_tags(mirror: Mirror) -> None:
    _push_small(mirror.up, "lib/t", "a", b"a")
    _push_small(mirror.up, "lib/t", "b", b"b")
    assert mirror.http.get("/v2/lib/t/tags/list").json() == {"name": "lib/t", "tags": ["a", "b"]}
    assert mirror.http.get("/v2/lib/t/tags/list?n=1").json()["tags"] == ["a"]
    assert mirror.http.get("/v2/lib/t/manifests/a").status_code == 200
    assert mirror.http.get("/v2/lib/none/tags/list").status_code == 404
    mirror.upstream.stop()
    assert mirror.http.get("/v2/lib/t/tags/list").json() == {"name": "lib/t", "tags": ["a"]}  # the cached ones
