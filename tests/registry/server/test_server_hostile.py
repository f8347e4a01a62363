"""Issue 13 against the embedded registry: upload sessions hold no descriptor and are limited per repository
and client (item 8), ``--read-only`` refuses every mutating route (item 13), and JSON bodies of any shape
never get a 500 (item 14)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Api,
    Server,
    cli_env,
    sha256,
    start_server,
)


def codes(r: httpx.Response) -> list[str]:
    return [e["code"] for e in r.json()["errors"]]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- item 8: upload sessions ------------------------------------------------------------------------------------

def _start_limited(root: Path, *args: str, nofile: int = 400) -> Server:
    """A real ``registry serve`` with RLIMIT_NOFILE lowered, so a descriptor per session would run out."""

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return start_server(root, *args, preexec_fn=lower)


def test_item8_thousand_posts_hold_no_descriptors_and_push_still_works(tmp_path: Path) -> None:
    server = _start_limited(tmp_path / "store", "--max-uploads-per-client", "5000")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            base = fd_count(server.proc.pid)
            statuses: dict[int, int] = {}
            for i in range(1100):  # spread over repositories so the per-repository cap lets most through
                r = c.post(f"/v2/spam{i % 20}/blobs/uploads/")
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 429:
                    assert codes(r) == ["TOOMANYREQUESTS"]
            assert statuses == {202: 1100}, statuses  # 55 per repository: under the default cap of 64
            assert fd_count(server.proc.pid) <= base + 20, (base, fd_count(server.proc.pid))
            # the 65th open session of a repository answers 429 (the default cap)
            more = [c.post("/v2/spam0/blobs/uploads/").status_code for _ in range(10)]
            assert more == [202] * 9 + [429], more
            # a normal push elsewhere still works, chunked and monolithic
            api = Api(c)
            raw, _ = api.push_image("app", "1", layers=[os.urandom(5000)])
            loc = c.post("/v2/app/blobs/uploads/").headers["location"]
            data = os.urandom(3000)
            assert c.patch(loc, content=data[:1000], headers={"Content-Range": "0-999"}).status_code == 202
            assert c.patch(loc, content=data[1000:], headers={"Content-Range": "1000-2999"}).status_code == 202
            assert c.put(f"{loc}?digest={sha256(data)}").status_code == 201
            assert c.get(f"/v2/app/blobs/{sha256(data)}").content == data
            assert c.get("/v2/app/manifests/1").content == raw
            assert fd_count(server.proc.pid) <= base + 20
    finally:
        server.stop()
    assert "Too many open files" not in server.log.read_text()


def test_item8_session_limits_per_repository_and_client(tmp_path: Path) -> None:
    server = _start_limited(tmp_path / "store", "--max-uploads-per-repo", "3", "--max-uploads-per-client", "5")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            locs = [c.post("/v2/a/blobs/uploads/") for _ in range(3)]
            assert [r.status_code for r in locs] == [202, 202, 202]
            r = c.post("/v2/a/blobs/uploads/")
            assert r.status_code == 429 and codes(r) == ["TOOMANYREQUESTS"] and "a" in r.json()["errors"][0]["message"]
            assert "retry-after" in r.headers
            # monolithic uploads go through a session too: refused while the repository is full
            data = os.urandom(100)
            assert c.post(f"/v2/a/blobs/uploads/?digest={sha256(data)}", content=data).status_code == 429
            assert c.post("/v2/b/blobs/uploads/").status_code == 202
            assert c.post("/v2/c/blobs/uploads/").status_code == 202
            r = c.post("/v2/d/blobs/uploads/")  # 5 sessions from this address
            assert r.status_code == 429 and codes(r) == ["TOOMANYREQUESTS"]
            assert c.delete(locs[0].headers["location"]).status_code == 204  # a finished session frees its slot
            assert c.post(f"/v2/a/blobs/uploads/?digest={sha256(data)}", content=data).status_code == 201
            assert c.post("/v2/d/blobs/uploads/").status_code == 202
    finally:
        server.stop()


def test_item8_cli_refuses_bad_limits(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "polyarch", "registry", "serve", "--max-uploads-per-repo", "0"],
                          env=cli_env(tmp_path / "store"), capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


# --- item 13: read-only ------------------------------------------------------------------------------------------

def test_item13_read_only_refuses_every_mutating_route(make_api: Callable[..., Api]) -> None:
    api = make_api(delete_enabled=True)
    raw, digest = api.push_image("app", "1")
    layer = json.loads(raw)["layers"][0]["digest"]
    orphan = api.push_blob("app", os.urandom(64))
    session = api.c.post("/v2/app/blobs/uploads/").headers["location"]
    assert api.reg is not None
    api.reg.config = replace(api.reg.config, read_only=True)
    data = b"x" * 10
    routes = [("POST", "/v2/app/blobs/uploads/", b""), ("POST", f"/v2/app/blobs/uploads/?digest={sha256(data)}", data),
              ("POST", f"/v2/new/blobs/uploads/?mount={orphan}&from=app", b""),
              ("PATCH", session, data), ("PUT", f"{session}?digest={sha256(data)}", data), ("DELETE", session, b""),
              ("PUT", "/v2/app/manifests/2", raw), ("PUT", f"/v2/app/manifests/{digest}", raw),
              ("DELETE", "/v2/app/manifests/1", b""), ("DELETE", f"/v2/app/manifests/{digest}", b""),
              ("DELETE", f"/v2/app/blobs/{orphan}", b""), ("DELETE", f"/v2/app/blobs/{layer}", b"")]
    for method, path, body in routes:
        r = api.c.request(method, path, content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 405 and codes(r) == ["UNSUPPORTED"], (method, path, r.status_code, r.text)
    assert api.c.get("/v2/app/manifests/1").content == raw
    assert api.c.head(f"/v2/app/blobs/{orphan}").status_code == 200
    assert api.c.get(session).status_code == 204  # the session is still there, untouched
    assert api.c.get("/v2/_catalog").json()["repositories"] == ["app"]


# --- item 14: hostile JSON ---------------------------------------------------------------------------------------

def _manifest_with(api: Api, **fields: object) -> bytes:
    cfg = api.config()
    layer = b"layer"
    doc: dict[str, object] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": api.push_blob("app", cfg), "size": len(cfg)},
        "layers": [{"mediaType": OCI_LAYER, "digest": api.push_blob("app", layer), "size": len(layer)}]}
    doc.update(fields)
    return json.dumps(doc).encode()


DEEP = [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'","config":' + b"[" * 200_000 + b"]" * 200_000
        + b"}"]


def test_item14_deeply_nested_manifest_is_400(api: Api) -> None:
    for body in DEEP:
        for ctype in (OCI_MANIFEST, "application/json"):
            r = api.put_manifest("app", "deep", body, ctype)
            assert r.status_code == 400 and codes(r) == ["MANIFEST_INVALID"], (body[:40], r.status_code)


def test_item14_deep_json_live_gets_400_and_no_traceback(live: Callable[..., Server]) -> None:
    server = live()
    with httpx.Client(base_url=server.url) as c:
        api = Api(c)
        for body in DEEP:
            r = api.put_manifest("app", "deep", body)
            assert r.status_code == 400 and codes(r) == ["MANIFEST_INVALID"]
        nested = _manifest_with(api, annotations={"a": "b"}, subject=json.loads("[" * 500 + "]" * 500))
        assert api.put_manifest("app", "deep", nested).status_code == 400
    assert "Traceback" not in server.log.read_text()


def test_item14_deeply_nested_bearer_token_is_401(make_api: Callable[..., Api], tmp_path: Path) -> None:
    import bcrypt

    from polyarch.registry.server.auth import Authorizer, Htpasswd, TokenIssuer

    users = Htpasswd({"u": bcrypt.hashpw(b"p", bcrypt.gensalt(rounds=4))})
    api = make_api(authorizer=Authorizer(users, TokenIssuer()))
    deep = "W1tb" * 4000  # base64 of 12,000 '['
    for token in (f"{deep}.e30.x", f"eyJhbGciOiJIUzI1NiJ9.{deep}.x"):
        r = api.c.get("/v2/app/tags/list", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401 and codes(r) == ["UNAUTHORIZED"], r.status_code


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids,
                                                                                max_size=4), max_leaves=30)
_FIELDS = ("config", "layers", "subject", "annotations", "mediaType", "schemaVersion", "manifests", "artifactType")


@st.composite
def _hostile_body(draw: st.DrawFn, base: dict[str, object]) -> bytes:
    kind = draw(st.sampled_from(["nest", "field", "bytes", "nest-field"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    depth = draw(st.integers(min_value=1, max_value=120_000))
    opener = draw(st.sampled_from([b"[", b'{"k":', b'[{"a":', b'{"layers":[']))
    closed = draw(st.booleans())
    closer = {b"[": b"]", b'{"k":': b"}", b'[{"a":': b"}]", b'{"layers":[': b"]}"}[opener]
    nest = opener * depth + b"0" + (closer * depth if closed else b"")
    if kind == "nest":
        return nest
    doc = dict(base)
    name = draw(st.sampled_from(_FIELDS))
    if kind == "field":
        doc[name] = draw(_json)
        return json.dumps(doc).encode()
    doc[name] = "@@"
    return json.dumps(doc).encode().replace(b'"@@"', nest)


def test_item14_property_json_bodies_never_500(make_api: Callable[..., Api]) -> None:
    api = make_api()
    base = json.loads(_manifest_with(api))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=_hostile_body(base), ctype=st.sampled_from([OCI_MANIFEST, "application/json", "text/plain", ""]),
           ref=st.sampled_from(["t", "latest"]))
    def check(body: bytes, ctype: str, ref: str) -> None:
        r = api.put_manifest("app", ref, body, ctype)
        assert r.status_code < 500, (body[:80], r.status_code, r.text[:200])
        if r.status_code >= 400:
            assert r.json()["errors"][0]["code"]

    check()


@pytest.mark.parametrize("body", DEEP, ids=["open-lists", "lists", "objects", "config"])
def test_item14_parse_document_raises_typed_error(body: bytes) -> None:
    from polyarch.errors import InvalidManifest
    from polyarch.oci.config import parse_config
    from polyarch.oci.spec import parse_document

    with pytest.raises(InvalidManifest):
        parse_document(body, None)
    with pytest.raises(InvalidManifest):
        parse_config(body)
