"""The distribution API in-process (Starlette TestClient over the ASGI app): uploads, blobs, manifests, tags,
catalog, referrers, and the registry cases R1–R12 of RELIABILITY.md."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from polyarch.digest import Digest

from .conftest import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Api, raw_request, sha256, sha512


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "registry.db" not in p.name}


def errors(r) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["code"] for e in r.json()["errors"]]


# --- basic protocol -----------------------------------------------------------------------------------------

def test_base_endpoint(api: Api) -> None:
    r = api.c.get("/v2/")
    assert r.status_code == 200
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"


def test_monolithic_post_and_blob_get(api: Api) -> None:
    data = os.urandom(3000)
    d = api.push_blob("app", data)
    r = api.c.get(f"/v2/app/blobs/{d}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["docker-content-digest"] == d
    assert r.headers["content-length"] == "3000"
    assert r.headers["accept-ranges"] == "bytes"
    h = api.c.head(f"/v2/app/blobs/{d}")
    assert h.status_code == 200 and h.headers["content-length"] == "3000" and h.content == b""
    # the bytes live once, in the content store, under their digest
    assert api.reg.store.blob_path(Digest.parse(d)).read_bytes() == data


def test_post_then_put(api: Api) -> None:
    data = os.urandom(5000)
    r = api.c.post("/v2/app/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["location"]
    assert r.headers["docker-upload-uuid"] in loc
    r = api.c.put(f"{loc}?digest={sha256(data)}", content=data)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/app/blobs/{sha256(data)}"
    assert api.c.get(f"/v2/app/blobs/{sha256(data)}").content == data


def test_chunked_upload_status_and_cancel(api: Api) -> None:
    data = os.urandom(10000)
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    r = api.c.patch(loc, content=data[:4000], headers={"Content-Range": "0-3999"})
    assert r.status_code == 202 and r.headers["range"] == "0-3999"
    r = api.c.patch(loc, content=data[4000:7000])  # streaming PATCH without Content-Range
    assert r.status_code == 202 and r.headers["range"] == "0-6999"
    r = api.c.get(loc)
    assert r.status_code == 204 and r.headers["range"] == "0-6999"
    r = api.c.put(f"{loc}?digest={sha256(data)}", content=data[7000:], headers={"Content-Range": "7000-9999"})
    assert r.status_code == 201, r.text
    assert api.c.get(f"/v2/app/blobs/{sha256(data)}").content == data
    # cancel
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    api.c.patch(loc, content=b"abc")
    assert api.c.delete(loc).status_code == 204
    assert api.c.get(loc).status_code == 404
    assert not list((api.reg.store.root / "registry" / "uploads").iterdir())


def test_manifest_roundtrip_exact_bytes_tags_and_catalog(api: Api) -> None:
    raw, d = api.push_image("team/app", "v1")
    assert d == sha256(raw)
    for ref in ("v1", d):
        r = api.c.get(f"/v2/team/app/manifests/{ref}")
        assert r.status_code == 200
        assert r.content == raw  # exact pushed bytes, not re-serialized
        assert r.headers["docker-content-digest"] == sha256(r.content)
        assert r.headers["content-type"] == OCI_MANIFEST
        h = api.c.head(f"/v2/team/app/manifests/{ref}")
        assert h.status_code == 200 and h.headers["content-length"] == str(len(raw))
    for tag in ("v2", "a", "b"):
        assert api.put_manifest("team/app", tag, raw).status_code == 201
    assert api.c.get("/v2/team/app/tags/list").json() == {"name": "team/app", "tags": ["a", "b", "v1", "v2"]}
    r = api.c.get("/v2/team/app/tags/list?n=2")
    assert r.json()["tags"] == ["a", "b"] and r.headers["link"] == '</v2/team/app/tags/list?n=2&last=b>; rel="next"'
    assert api.c.get("/v2/team/app/tags/list?n=2&last=b").json()["tags"] == ["v1", "v2"]
    assert api.c.get("/v2/team/app/tags/list?n=0").json()["tags"] == []
    assert api.c.get("/v2/_catalog").json() == {"repositories": ["team/app"]}
    assert errors(api.c.get("/v2/nope/tags/list")) == ["NAME_UNKNOWN"]
    assert errors(api.c.get("/v2/team/app/manifests/missing")) == ["MANIFEST_UNKNOWN"]


def test_index_requires_children_in_repo(api: Api) -> None:
    amd, d_amd = api.push_image("multi", "amd64", arch="amd64")
    arm, d_arm = api.push_image("multi", "arm64", arch="arm64")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d_amd, "size": len(amd), "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": d_arm, "size": len(arm), "platform": {"os": "linux", "architecture": "arm64"}}]}
    raw = json.dumps(index).encode()
    assert api.put_manifest("multi", "1", raw, OCI_INDEX).status_code == 201
    r = api.put_manifest("other", "1", raw, OCI_INDEX)  # children only exist in "multi"
    assert r.status_code == 400 and errors(r) == ["MANIFEST_BLOB_UNKNOWN"]


def test_cross_repo_mount(api: Api) -> None:
    data = os.urandom(2000)
    d = api.push_blob("src", data)
    r = api.c.post(f"/v2/dst/blobs/uploads/?mount={d}&from=src")
    assert r.status_code == 201 and r.headers["docker-content-digest"] == d
    assert api.c.get(f"/v2/dst/blobs/{d}").content == data
    # unknown source: falls back to a new upload session
    r = api.c.post(f"/v2/dst2/blobs/uploads/?mount={sha256(b'nope')}&from=src")
    assert r.status_code == 202
    # anonymous mount (no from): the registry has the blob and auth is off
    r = api.c.post(f"/v2/dst3/blobs/uploads/?mount={d}")
    assert r.status_code == 201


def test_referrers_with_filter_and_subject_header(api: Api) -> None:
    raw, d = api.push_image("app", "1")
    subject = {"mediaType": OCI_MANIFEST, "digest": d, "size": len(raw)}
    sig = api.manifest("app", [b"signature"], subject=subject, artifact_type="application/vnd.example.sig")
    r = api.put_manifest("app", sha256(sig), sig)
    assert r.status_code == 201 and r.headers["oci-subject"] == d
    sbom = api.manifest("app", [b"sbom"], subject=subject, artifact_type="application/vnd.example.sbom")
    assert api.put_manifest("app", sha256(sbom), sbom).status_code == 201
    r = api.c.get(f"/v2/app/referrers/{d}")
    assert r.status_code == 200 and r.headers["content-type"] == OCI_INDEX
    got = {m["digest"]: m["artifactType"] for m in r.json()["manifests"]}
    assert got == {sha256(sig): "application/vnd.example.sig", sha256(sbom): "application/vnd.example.sbom"}
    r = api.c.get(f"/v2/app/referrers/{d}?artifactType=application/vnd.example.sbom")
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(sbom)]
    assert r.headers["oci-filters-applied"] == "artifactType"
    # a missing subject is allowed
    ghost = {"mediaType": OCI_MANIFEST, "digest": sha256(b"ghost"), "size": 5}
    orphan = api.manifest("app", [b"x"], subject=ghost, artifact_type="application/vnd.example.sig")
    assert api.put_manifest("app", sha256(orphan), orphan).status_code == 201
    assert len(api.c.get(f"/v2/app/referrers/{sha256(b'ghost')}").json()["manifests"]) == 1
    # R14: deleting a referrer updates the list
    assert api.c.delete(f"/v2/app/manifests/{sha256(sig)}").status_code == 202
    assert [m["digest"] for m in api.c.get(f"/v2/app/referrers/{d}").json()["manifests"]] == [sha256(sbom)]
    assert errors(api.c.get("/v2/app/referrers/sha256:bad")) == ["DIGEST_INVALID"]


# --- R1 wrong digest on completion ----------------------------------------------------------------------------

def test_r1_wrong_digest_monolithic_and_chunked(api: Api) -> None:
    data = os.urandom(1000)
    wrong = sha256(b"something else")
    r = api.c.post(f"/v2/app/blobs/uploads/?digest={wrong}", content=data)
    assert r.status_code == 400 and errors(r) == ["DIGEST_INVALID"]
    assert api.c.head(f"/v2/app/blobs/{wrong}").status_code == 404
    assert api.c.head(f"/v2/app/blobs/{sha256(data)}").status_code == 404
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    api.c.patch(loc, content=data, headers={"Content-Range": "0-999"})
    r = api.c.put(f"{loc}?digest={wrong}")
    assert r.status_code == 400 and errors(r) == ["DIGEST_INVALID"]
    assert api.c.head(f"/v2/app/blobs/{wrong}").status_code == 404
    # documented: the session is closed after a failed completion
    assert errors(api.c.patch(loc, content=b"x")) == ["BLOB_UPLOAD_UNKNOWN"]
    assert not list(api.reg.store.ingest_dir.iterdir())
    assert not list((api.reg.store.root / "registry" / "uploads").iterdir())


# --- R2 digest syntax -------------------------------------------------------------------------------------------

BAD_DIGESTS = ["sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha256:" + "a" * 65, "md5:" + "a" * 32,
               "sha256:../../x", "sha256:", "sha256:baddigeststring", "sha256:" + "a" * 62 + "/x",
               "sha512:" + "a" * 64, "SHA256:" + "a" * 64, ":" + "a" * 64]


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_r2_digest_syntax_never_500(api: Api, bad: str) -> None:
    before = tree(api.reg.store.root)
    data = b"payload"
    probes = [
        api.c.get(f"/v2/app/blobs/{bad}"), api.c.head(f"/v2/app/blobs/{bad}"),
        api.c.get(f"/v2/app/manifests/{bad}"), api.c.put(f"/v2/app/manifests/{bad}", content=b"{}"),
        api.c.post(f"/v2/app/blobs/uploads/?digest={bad}", content=data),
        api.c.post(f"/v2/app/blobs/uploads/?mount={bad}&from=other"),
        api.c.get(f"/v2/app/referrers/{bad}"), api.c.delete(f"/v2/app/blobs/{bad}"),
    ]
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    probes.append(api.c.put(f"{loc}?digest={bad}", content=data))
    for r in probes:
        assert 400 <= r.status_code < 500, (r.request.method, r.request.url, r.status_code)
        if r.request.method != "HEAD" and "/" not in bad.partition(":")[2]:
            assert r.json()["errors"][0]["code"] in ("DIGEST_INVALID", "NAME_INVALID", "UNSUPPORTED", "TAG_INVALID")
    assert tree(api.reg.store.root) - before <= {f"registry/uploads/{loc.rsplit('/', 1)[1]}"}


# --- R3 sha512 ----------------------------------------------------------------------------------------------------

def test_r3_sha512_chunked_monolithic_and_manifest(api: Api) -> None:
    data = os.urandom(4000)
    d512 = sha512(data)
    loc = api.c.post("/v2/app/blobs/uploads/?digest-algorithm=sha512").headers["location"]
    api.c.patch(loc, content=data, headers={"Content-Range": "0-3999"})
    r = api.c.put(f"{loc}?digest={d512}")
    assert r.status_code == 201 and r.headers["docker-content-digest"] == d512
    r = api.c.get(f"/v2/app/blobs/{d512}")
    assert r.content == data and r.headers["docker-content-digest"] == d512
    # monolithic, and a sha256 session finished with a sha512 digest
    other = os.urandom(100)
    assert api.c.post(f"/v2/app/blobs/uploads/?digest={sha512(other)}", content=other).status_code == 201
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    more = os.urandom(300)
    assert api.c.put(f"{loc}?digest={sha512(more)}", content=more).status_code == 201
    assert api.c.head(f"/v2/app/blobs/{sha512(more)}").headers["docker-content-digest"] == sha512(more)
    # a manifest PUT by sha512 digest is stored and served under it
    raw = api.manifest("app", [data])
    r = api.put_manifest("app", sha512(raw), raw)
    assert r.status_code == 201 and r.headers["docker-content-digest"] == sha512(raw)
    r = api.c.get(f"/v2/app/manifests/{sha512(raw)}")
    assert r.content == raw and r.headers["docker-content-digest"] == sha512(raw)
    assert errors(api.c.post("/v2/app/blobs/uploads/?digest-algorithm=md5")) == ["DIGEST_INVALID"]


# --- R4 chunk order ----------------------------------------------------------------------------------------------

def test_r4_chunk_order(api: Api) -> None:
    data = os.urandom(2000)
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    r = api.c.patch(loc, content=data[500:1000], headers={"Content-Range": "500-999"})
    assert r.status_code == 416 and r.headers["range"] == "0-0"
    assert api.c.patch(loc, content=data[:1000], headers={"Content-Range": "0-999"}).status_code == 202
    for rng, body in (("1100-1199", data[1100:1200]), ("900-1099", data[900:1100]), ("0-99", data[:100])):
        r = api.c.patch(loc, content=body, headers={"Content-Range": rng})
        assert r.status_code == 416, rng
        assert api.c.get(loc).headers["range"] == "0-999"
    r = api.c.patch(loc, content=data[1000:1100], headers={"Content-Range": "1000-1199"})  # length mismatch
    assert r.status_code == 400 and errors(r) == ["SIZE_INVALID"]
    r = api.c.patch(loc, content=data[1000:1100], headers={"Content-Range": "1100-1000"})  # inverted
    assert r.status_code == 416
    assert api.c.get(loc).headers["range"] == "0-999"
    assert api.c.patch(loc, content=data[1000:], headers={"Content-Range": "1000-1999"}).status_code == 202
    assert api.c.put(f"{loc}?digest={sha256(data)}").status_code == 201
    assert api.c.get(f"/v2/app/blobs/{sha256(data)}").content == data


# --- R5 stale sessions ----------------------------------------------------------------------------------------

def test_r5_stale_sessions(api: Api) -> None:
    data = os.urandom(500)
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    assert api.c.put(f"{loc}?digest={sha256(data)}", content=data).status_code == 201
    blob = api.reg.store.blob_path(Digest.parse(sha256(data)))
    for r in (api.c.patch(loc, content=b"evil"), api.c.put(f"{loc}?digest={sha256(b'evil')}", content=b"evil"),
              api.c.get(loc), api.c.delete(loc)):
        assert r.status_code == 404 and errors(r) == ["BLOB_UPLOAD_UNKNOWN"]
    assert blob.read_bytes() == data
    # cancelled
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    api.c.delete(loc)
    assert api.c.patch(loc, content=b"x").status_code == 404
    # expired (TTL) and purged
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    api.c.patch(loc, content=b"partial")
    import time

    assert api.reg.uploads.expire(now=time.time() + 2 * api.reg.uploads.ttl) == 1
    assert api.c.patch(loc, content=b"x").status_code == 404
    # a session of another repository is not reachable through this one
    loc = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    assert api.c.patch(loc.replace("/v2/app/", "/v2/other/"), content=b"x").status_code == 404
    # malformed session ids
    assert api.c.patch("/v2/app/blobs/uploads/..%2f..%2fx", content=b"x").status_code == 404
    assert api.c.patch("/v2/app/blobs/uploads/not-a-uuid", content=b"x").status_code == 404


def test_r5_patch_racing_put_is_serialised(make_api) -> None:  # type: ignore[no-untyped-def]
    import asyncio


    api = make_api()
    app = api.c.app
    data = os.urandom(300_000)
    for _ in range(5):
        asyncio.run(_race(app, data))


async def _race(app, data: bytes) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as c:
        loc = (await c.post("/v2/app/blobs/uploads/")).headers["location"]
        put, patch = await asyncio.gather(c.put(f"{loc}?digest={sha256(data)}", content=data),
                                          c.patch(loc, content=b"late bytes"))
        assert put.status_code == 201
        assert patch.status_code in (202, 404)
        if patch.status_code == 202:  # the PATCH won: the PUT appended after it, digest no longer matched
            raise AssertionError("PATCH after completion must not succeed")
        got = await c.get(f"/v2/app/blobs/{sha256(data)}")
        assert hashlib.sha256(got.content).hexdigest() == sha256(data).split(":")[1]


# --- R7 manifest validation ------------------------------------------------------------------------------------

def test_r7_manifest_validation(api: Api) -> None:
    layer = os.urandom(100)
    cfg = api.config()
    d_cfg, d_layer = api.push_blob("app", cfg), api.push_blob("app", layer)

    def doc(config_digest: str = d_cfg, config_size: int = len(cfg), layer_size: int = len(layer),
            **extra: object) -> bytes:
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
                           "layers": [{"mediaType": OCI_LAYER, "digest": d_layer, "size": layer_size}],
                           **extra}).encode()

    r = api.put_manifest("app", "t", doc(config_digest=sha256(b"missing")))
    assert r.status_code == 400 and errors(r) == ["MANIFEST_BLOB_UNKNOWN"]
    r = api.put_manifest("app", "t", doc(layer_size=99))
    assert r.status_code == 400 and errors(r) == ["MANIFEST_INVALID"]
    r = api.put_manifest("app", "t", doc(manifests=[]))
    assert r.status_code == 400 and errors(r) == ["MANIFEST_INVALID"]
    r = api.put_manifest("app", "t", doc(), OCI_INDEX)
    assert r.status_code == 400 and errors(r) == ["MANIFEST_INVALID"]
    for junk in (b"{not json", b"[]", b"", b'{"schemaVersion": 1}', b"\xff\xfe"):
        r = api.put_manifest("app", "t", junk)
        assert r.status_code == 400 and errors(r) == ["MANIFEST_INVALID"], junk
    # blob present in the store, but only linked to another repository
    other_layer = os.urandom(50)
    d_other = api.push_blob("other", other_layer)
    bad = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "digest": d_cfg, "size": len(cfg)},
                      "layers": [{"mediaType": OCI_LAYER, "digest": d_other, "size": 50}]}).encode()
    assert errors(api.put_manifest("app", "t", bad)) == ["MANIFEST_BLOB_UNKNOWN"]
    # digest in the URL must match the body
    r = api.put_manifest("app", sha256(b"other body"), doc())
    assert r.status_code == 400 and errors(r) == ["DIGEST_INVALID"]
    assert api.c.get("/v2/app/manifests/t").status_code == 404
    assert api.put_manifest("app", "t", doc()).status_code == 201


# --- R8 size limits ---------------------------------------------------------------------------------------------

def _sized_manifest(api: Api, size: int) -> bytes:
    layer = b"l"
    cfg = api.config()
    base = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": api.push_blob("app", cfg), "size": len(cfg)},
            "layers": [{"mediaType": OCI_LAYER, "digest": api.push_blob("app", layer), "size": 1}],
            "annotations": {"pad": ""}}
    n = size - len(json.dumps(base).encode())
    base["annotations"]["pad"] = "x" * n
    raw = json.dumps(base).encode()
    assert len(raw) == size
    return raw


def test_r8_manifest_size_limit(api: Api) -> None:
    exact = _sized_manifest(api, 4 << 20)
    assert api.put_manifest("app", "big", exact).status_code == 201
    assert api.c.get("/v2/app/manifests/big").content == exact
    over = _sized_manifest(api, (4 << 20) + 1)
    r = api.put_manifest("app", "over", over)
    assert r.status_code == 413 and errors(r) == ["SIZE_INVALID"]

    def stream():  # no Content-Length: the streaming cap must stop it
        yield over[: 1 << 20]
        yield over[1 << 20:]

    r = api.c.put("/v2/app/manifests/over2", content=stream(), headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413


# --- R9 names and tags ------------------------------------------------------------------------------------------

BAD_NAMES = ["a/../b", "%2e%2e", "a%2Fb", "UPPER", "trailing/", "/lead", "a//b", "x" * 256, "a/" + "b" * 254,
             ".hidden", "-dash", "a..b", "a:b", "a b", "a/./b"]
BAD_TAGS = ["t" * 129, ".dot", "-dash", "a/b", "a:b", "a%2Fb", "a b", "ü"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_r9_bad_repository_names(api: Api, name: str) -> None:
    before = tree(api.reg.store.root)
    for method, path in (("GET", f"/v2/{name}/tags/list"), ("GET", f"/v2/{name}/manifests/latest"),
                         ("PUT", f"/v2/{name}/manifests/latest"), ("POST", f"/v2/{name}/blobs/uploads/"),
                         ("GET", f"/v2/{name}/blobs/{sha256(b'x')}")):
        status, headers, _ = raw_request(api.c.app, method, path.encode(), b"{}" if method == "PUT" else b"")
        assert status in (400, 404), (method, path, status)
        assert "location" not in headers
    assert tree(api.reg.store.root) == before
    assert api.c.get("/v2/_catalog").json()["repositories"] == []


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_r9_bad_tags(api: Api, tag: str) -> None:
    raw = api.manifest("app", [b"x"])
    path = f"/v2/app/manifests/{tag}".encode()
    assert raw_request(api.c.app, "PUT", path, raw)[0] in (400, 404)
    assert raw_request(api.c.app, "GET", path)[0] in (400, 404)
    assert api.c.get("/v2/app/tags/list").json()["tags"] == []  # no manifest was recorded


def test_r9_longest_valid_tag_and_name(api: Api) -> None:
    name = "a" * 255
    raw, _ = api.push_image(name, "t" * 128)
    assert api.c.get(f"/v2/{name}/manifests/{'t' * 128}").content == raw


# --- R10 pagination -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["n=1e11", "n=-1", "n=abc", "n=", "n=1.5", "n=" + "9" * 30, "last=" + "z" * 600])
def test_r10_bad_pagination(api: Api, query: str) -> None:
    api.push_image("app", "1")
    for path in ("/v2/_catalog", "/v2/app/tags/list"):
        r = api.c.get(f"{path}?{query}")
        assert r.status_code == 400 and errors(r) == ["PAGINATION_NUMBER_INVALID"], (path, query)


def test_r10_huge_n_is_clamped(make_api) -> None:  # type: ignore[no-untyped-def]
    api = make_api(page_max=3)
    raw, _ = api.push_image("app", "t0")
    for i in range(1, 6):
        api.put_manifest("app", f"t{i}", raw)
    r = api.c.get("/v2/app/tags/list?n=100000000000")
    assert r.json()["tags"] == ["t0", "t1", "t2"] and "last=t2" in r.headers["link"]
    r = api.c.get("/v2/app/tags/list?last=%27%3B%20DROP%20TABLE%20tags%3B--")
    assert r.status_code == 200


# --- R11 ranges ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "status", "body"), [
    ("bytes=0-99", 206, (0, 100)), ("bytes=900-", 206, (900, 1000)), ("bytes=-10", 206, (990, 1000)),
    ("bytes=990-5000", 206, (990, 1000)), ("bytes=5000-6000", 416, None), ("bytes=500-0", 416, None),
    ("bytes=1000-", 416, None), ("bytes=-0", 416, None), ("bytes=abc", 416, None),
    ("bytes=0-1,5-9", 200, (0, 1000)), ("items=0-5", 200, (0, 1000)),
])
def test_r11_ranges(api: Api, header: str, status: int, body: tuple[int, int] | None) -> None:
    data = os.urandom(1000)
    d = api.push_blob("app", data)
    r = api.c.get(f"/v2/app/blobs/{d}", headers={"Range": header})
    assert r.status_code == status
    if status == 416:
        assert r.headers["content-range"] == "bytes */1000"
        assert int(r.headers["content-length"]) == len(r.content)
    else:
        assert body is not None
        assert r.content == data[body[0]:body[1]]
        assert int(r.headers["content-length"]) == body[1] - body[0]
        if status == 206:
            assert r.headers["content-range"] == f"bytes {body[0]}-{body[1] - 1}/1000"


# --- R12 error mapping ------------------------------------------------------------------------------------------

def test_r12_storage_error_is_500_without_paths(api: Api) -> None:
    data = os.urandom(100)
    d = api.push_blob("app", data)
    path = api.reg.store.blob_path(Digest.parse(d))
    path.unlink()
    path.mkdir()  # the store is broken under the registry: open() fails with EISDIR
    r = api.c.get(f"/v2/app/blobs/{d}")
    assert r.status_code == 500 and errors(r) == ["UNKNOWN"]
    assert str(api.reg.store.root) not in r.text and "blobs/" not in r.text


def test_r12_unknown_paths_and_methods(api: Api) -> None:
    for method, path, code in (("GET", "/v2/app/unknown", 404), ("DELETE", "/v2/", 405),
                               ("POST", "/v2/app/manifests/x", 405), ("GET", "/nothing", 404),
                               ("PUT", "/v2/app/blobs/uploads/", 405)):
        r = api.c.request(method, path)
        assert r.status_code == code, (method, path)
        assert r.json()["errors"][0]["code"]
