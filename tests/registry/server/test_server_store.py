"""One store: local names served without copying; GC roots, grace and races (F1, F2); hypothesis properties
of the parsers and the app (never a 500 for client input)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.registry.imagegen import make_test_image

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest, hash_file
from polyarch.registry.server import collect_garbage, scrub
from polyarch.registry.server.blobs import parse_range
from polyarch.registry.server.errors import ApiError
from polyarch.registry.server.names import local_repo_tag, parse_digest, parse_route
from polyarch.registry.server.uploads import parse_content_range

from .conftest import OCI_INDEX, Api, sha256

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def blob_path(api: Api, d: str) -> Path:
    return api.reg.store.blob_path(Digest.parse(d))


# --- local names ------------------------------------------------------------------------------------------------

def test_local_repo_tag_mapping() -> None:
    assert local_repo_tag("base/busybox:1") == ("base/busybox", "1")
    assert local_repo_tag("localhost:5000/app:1") == ("app", "1")
    assert local_repo_tag("app:1") == ("app", "1")
    assert local_repo_tag("registry.example.com/team/app") == ("team/app", "latest")
    assert local_repo_tag("docker.io/library/busybox:1") == ("library/busybox", "1")
    assert local_repo_tag("app@sha256:" + "a" * 64) is None
    assert local_repo_tag("app:1@sha256:" + "a" * 64) == ("app", "1")
    for bad in ("", "UPPER:1", "a/../b:1", "app:.bad", "app:" + "t" * 129):
        assert local_repo_tag(bad) is None


def test_local_names_served_without_copying(make_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "local"
    desc = make_test_image(root, "localhost:5000/gen/app:1", platforms=("linux/amd64", "linux/arm64"),
                           layer_sizes=(1000, 2000))
    blobs_before = sorted(p.name for p in (root / "blobs" / "sha256").iterdir())
    api: Api = make_api(root=root, delete_enabled=True)
    r = api.c.get("/v2/gen/app/manifests/1")
    assert r.status_code == 200 and r.headers["content-type"] == OCI_INDEX
    assert r.headers["docker-content-digest"] == str(desc.digest) == sha256(r.content)
    index = r.json()
    for child in index["manifests"]:
        m = api.c.get(f"/v2/gen/app/manifests/{child['digest']}")
        assert m.status_code == 200 and sha256(m.content) == child["digest"]
        for layer in [m.json()["config"], *m.json()["layers"]]:
            b = api.c.get(f"/v2/gen/app/blobs/{layer['digest']}")
            assert b.status_code == 200 and sha256(b.content) == layer["digest"]
    assert api.c.get("/v2/gen/app/tags/list").json() == {"name": "gen/app", "tags": ["1"]}
    assert api.c.get("/v2/_catalog").json()["repositories"] == ["gen/app"]
    # another repository cannot read them
    assert api.c.head(f"/v2/other/blobs/{index['manifests'][0]['digest']}").status_code == 404
    # a name added while serving is served at once; local names cannot be deleted through the API
    ImageStore(ContentStore(root)).set_name("base/busybox:1", desc)
    assert api.c.get("/v2/base/busybox/manifests/1").content == r.content
    assert api.c.delete("/v2/gen/app/manifests/1").status_code == 409
    # nothing was copied
    assert sorted(p.name for p in (root / "blobs" / "sha256").iterdir()) == blobs_before
    # pushing into the same repository adds tags beside the local one
    api.push_image("gen/app", "2")
    assert api.c.get("/v2/gen/app/tags/list").json()["tags"] == ["1", "2"]
    # GC keeps what local names reach even when old and unreferenced by the registry
    report = collect_garbage(api.reg.store, grace=0, now=time.time() + 86400)
    assert not set(report.deleted) & {str(desc.digest), *(c["digest"] for c in index["manifests"])}
    assert api.c.get("/v2/gen/app/manifests/1").status_code == 200


# --- GC ---------------------------------------------------------------------------------------------------------

def test_f1_gc_during_inflight_push_keeps_it(api: Api) -> None:
    layer = os.urandom(50_000)
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    api.c.patch(loc, content=layer[:20_000], headers={"Content-Range": "0-19999"})
    cfg = api.config()
    d_cfg = api.push_blob("app", cfg)  # complete but not referenced yet
    for _ in range(2):
        report = collect_garbage(api.reg.store, grace=3600)
        assert report.deleted == () and report.uploads_purged == 0 and report.kept_recent >= 1
    api.c.patch(loc, content=layer[20_000:], headers={"Content-Range": f"20000-{len(layer) - 1}"})
    assert api.c.put(f"{loc}?digest={sha256(layer)}").status_code == 201
    raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d_cfg,
                                 "size": len(cfg)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                                  "size": len(layer)}]}).encode()
    assert api.put_manifest("app", "1", raw).status_code == 201
    collect_garbage(api.reg.store, grace=0, now=time.time() + 7200)  # everything is referenced now
    assert api.c.get(f"/v2/app/blobs/{sha256(layer)}").content == layer
    assert api.c.get("/v2/app/manifests/1").content == raw


def test_gc_grace_orphans_dry_run_and_stale_sessions(api: Api) -> None:
    raw, _ = api.push_image("app", "1")
    orphan = api.push_blob("app", os.urandom(3000))
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    api.c.patch(loc, content=b"abandoned")
    later = time.time() + 7200
    dry = collect_garbage(api.reg.store, grace=3600, dry_run=True, now=later)
    assert dry.deleted == (orphan,) and dry.uploads_purged == 1
    assert blob_path(api, orphan).exists() and api.c.get(loc).status_code == 204
    report = collect_garbage(api.reg.store, grace=3600, now=later)
    assert report.deleted == (orphan,) and report.bytes_freed == 3000 and report.uploads_purged == 1
    assert not blob_path(api, orphan).exists()
    assert api.c.head(f"/v2/app/blobs/{orphan}").status_code == 404  # F2: no stale existence cache
    assert api.c.get(loc).status_code == 404  # purged session
    assert not list((api.reg.store.root / "registry" / "uploads").iterdir())
    assert api.c.get("/v2/app/manifests/1").content == raw
    for layer in json.loads(raw)["layers"]:
        assert api.c.head(f"/v2/app/blobs/{layer['digest']}").status_code == 200


def test_f2_blob_removed_under_running_registry(api: Api) -> None:
    layer = os.urandom(4000)
    d = api.push_blob("app", layer)
    blob_path(api, d).unlink()
    assert api.c.head(f"/v2/app/blobs/{d}").status_code == 404
    assert api.c.get(f"/v2/app/blobs/{d}").status_code == 404
    cfg = api.config()
    raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": api.push_blob("app", cfg), "size": len(cfg)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
                                  "size": len(layer)}]}).encode()
    r = api.put_manifest("app", "1", raw)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert api.push_blob("app", layer) == d  # a re-push re-uploads
    assert api.put_manifest("app", "1", raw).status_code == 201
    assert api.c.get(f"/v2/app/blobs/{d}").content == layer


def test_scrub_removes_corrupt_blobs(api: Api) -> None:
    d = api.push_blob("app", os.urandom(1000))
    good = api.push_blob("app", os.urandom(1000))
    blob_path(api, d).write_bytes(b"bitrot")
    assert scrub(api.reg.store, repair=False) == [d]
    assert scrub(api.reg.store) == [d]
    assert api.c.head(f"/v2/app/blobs/{d}").status_code == 404
    assert hash_file(blob_path(api, good))[0] == Digest.parse(good)


def test_urls_layer_accepted_as_data_never_fetched(api: Api) -> None:
    cfg = api.config()
    foreign = {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
               "digest": sha256(b"windows base layer"), "size": 18, "urls": ["http://127.0.0.1:9/never"]}
    raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": api.push_blob("app", cfg), "size": len(cfg)},
                      "layers": [foreign]}).encode()
    start = time.monotonic()
    r = api.put_manifest("app", "1", raw)
    assert r.status_code == 201 and time.monotonic() - start < 2
    assert api.c.get(f"/v2/app/blobs/{foreign['digest']}").status_code == 404
    # a distributable layer with urls still has to be pushed
    foreign["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
    r = api.put_manifest("app", "2", raw.replace(b"nondistributable.v1.tar+gzip", b"v1.tar"))
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"


# --- hypothesis ---------------------------------------------------------------------------------------------------

NAME_CHARS = st.sampled_from([*"abz09._-/:%AZ ", "..", "//", "__", "\x00", "é"])
names = st.lists(NAME_CHARS, min_size=0, max_size=40).map("".join)
tags = st.one_of(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True),
                 st.text(alphabet="aZ0._-/:%é", max_size=140))
digests = st.one_of(
    st.builds(lambda h: f"sha256:{h}", st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
    st.builds(lambda a, h: f"{a}:{h}", st.sampled_from(["sha256", "sha512", "SHA256", "md5", ""]),
              st.text(alphabet="0123456789abcdefABX./", max_size=130)))
content_ranges = st.one_of(
    st.builds(lambda a, b, p: f"{p}{a}-{b}", st.integers(0, 2**70), st.integers(0, 2**70),
              st.sampled_from(["", "bytes ", "bytes="])),
    st.text(alphabet="0123456789-/ *bytes=,", max_size=40))


@FAST
@given(name=names)
def test_prop_route_names(name: str) -> None:
    try:
        route = parse_route(f"/v2/{name}/tags/list".encode())
    except ApiError as exc:
        assert 400 <= exc.status < 500
        return
    assert route is not None and route.name == name
    assert ".." not in name.split("/") and "%" not in name and name == name.lower()


@FAST
@given(text=digests)
def test_prop_digests(text: str) -> None:
    try:
        d = parse_digest(text)
    except ApiError as exc:
        assert exc.status == 400 and exc.code == "DIGEST_INVALID"
        return
    assert str(d) == text and "/" not in d.hex and "." not in d.hex


@FAST
@given(value=content_ranges)
def test_prop_content_range(value: str) -> None:
    try:
        start, end = parse_content_range(value)
    except ApiError as exc:
        assert exc.status == 416
        return
    assert 0 <= start <= end


@FAST
@given(value=st.one_of(st.builds(lambda a, b: f"bytes={a}-{b}", st.one_of(st.just(""), st.integers(0, 5000).map(str)),
                                 st.one_of(st.just(""), st.integers(0, 5000).map(str))),
                       st.text(max_size=30)),
       size=st.integers(0, 3000))
def test_prop_blob_range(value: str, size: int) -> None:
    try:
        rng = parse_range(value, size)
    except ApiError as exc:
        assert exc.status == 416 and exc.headers["Content-Range"] == f"bytes */{size}"
        return
    if rng is not None:
        assert 0 <= rng[0] <= rng[1] < size


@FAST
@given(tag=tags, digest=digests)
def test_prop_app_never_500(make_api, tag: str, digest: str) -> None:  # type: ignore[no-untyped-def]
    api = _shared_api(make_api)
    for method, path in (("GET", f"/v2/app/manifests/{tag}"), ("PUT", f"/v2/app/manifests/{tag}"),
                         ("GET", f"/v2/app/blobs/{digest}"), ("POST", f"/v2/app/blobs/uploads/?digest={digest}"),
                         ("GET", f"/v2/app/referrers/{digest}")):
        r = api.c.request(method, path, content=b"{}" if method != "GET" else None)
        assert r.status_code < 500, (method, path, r.text)


_API: dict[int, Api] = {}


def _shared_api(make_api) -> Api:  # type: ignore[no-untyped-def]
    key = id(make_api)
    if key not in _API:
        _API.clear()
        _API[key] = make_api()
    return _API[key]
