"""R13 cross-repo isolation, R14 delete policy, R16 htpasswd and bearer tokens (in-process)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch.errors import UsageError
from polyarch.registry.server.auth import Access, Authorizer, Htpasswd, TokenError, TokenIssuer, parse_scope

from .conftest import Api, sha256


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def htpasswd_file(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"alice:{hashed}\n# comment\n\nbob:{bcrypt.hashpw(b'hunter2', bcrypt.gensalt(rounds=4)).decode()}\n")
    return path


# --- R16 htpasswd -----------------------------------------------------------------------------------------------

def test_htpasswd_refuses_missing_unreadable_and_non_bcrypt(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        Htpasswd.load(tmp_path / "missing")
    folder = tmp_path / "dir"
    folder.mkdir()
    with pytest.raises(UsageError, match="cannot read"):
        Htpasswd.load(folder)
    for line in ("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "alice:$apr1$abc$defghijklmnopqrstuvwx.",
                 "alice:plaintext", "alice:$5$rounds=1000$salt$hash", "nocolon"):
        (tmp_path / "h").write_text(line + "\n")
        with pytest.raises(UsageError):
            Htpasswd.load(tmp_path / "h")
    (tmp_path / "empty").write_text("# nobody\n")
    with pytest.raises(UsageError, match="no users"):
        Htpasswd.load(tmp_path / "empty")


@pytest.mark.skipif(not os.path.exists("/usr/bin/htpasswd"), reason="apache2-utils htpasswd not installed")
def test_htpasswd_tool_bcrypt_hashes_are_accepted(tmp_path: Path) -> None:
    out = subprocess.run(["htpasswd", "-nbB", "-C", "4", "carol", "pw"], capture_output=True, check=True, text=True)
    (tmp_path / "h").write_text(out.stdout)
    assert Htpasswd.load(tmp_path / "h").check("carol", "pw")
    out = subprocess.run(["htpasswd", "-nbm", "dave", "pw"], capture_output=True, check=True, text=True)  # MD5
    (tmp_path / "m").write_text(out.stdout)
    with pytest.raises(UsageError, match="non-bcrypt"):
        Htpasswd.load(tmp_path / "m")


def test_basic_auth(make_api, htpasswd_file: Path) -> None:  # type: ignore[no-untyped-def]
    api: Api = make_api(authorizer=Authorizer(Htpasswd.load(htpasswd_file)))
    r = api.c.get("/v2/")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    r = api.c.get("/v2/", headers=basic("alice", "wrong"))
    assert r.status_code == 401 and "www-authenticate" in r.headers
    assert api.c.get("/v2/", headers=basic("mallory", "s3cret")).status_code == 401
    assert api.c.get("/v2/", headers={"Authorization": "Basic !!!notbase64"}).status_code == 401
    assert api.c.get("/v2/", headers=basic("alice", "s3cret")).status_code == 200
    assert api.c.get("/v2/", headers=basic("alice", "s3cret" + "x" * 100)).status_code == 401  # > 72 bytes
    api.c.headers.update(basic("bob", "hunter2"))
    raw, _ = api.push_image("app", "1")
    assert api.c.get("/v2/app/manifests/1").content == raw


# --- R16 tokens -------------------------------------------------------------------------------------------------

@pytest.fixture
def token_api(make_api, htpasswd_file: Path):  # type: ignore[no-untyped-def]
    issuer = TokenIssuer(b"k" * 32)
    return make_api(authorizer=Authorizer(Htpasswd.load(htpasswd_file), issuer), delete_enabled=True), issuer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_flow(token_api) -> None:  # type: ignore[no-untyped-def]
    api, _ = token_api
    r = api.c.get("/v2/app/tags/list")
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="http://127.0.0.1:5000/token"')
    assert 'scope="repository:app:pull"' in challenge and 'service="polyarch-registry"' in challenge
    assert api.c.get("/token?scope=repository:app:pull").status_code == 401  # anonymous: no token
    assert api.c.get("/token?scope=repository:app:pull", headers=basic("alice", "bad")).status_code == 401
    r = api.c.get("/token?service=polyarch-registry&scope=repository:app:pull,push", headers=basic("alice", "s3cret"))
    assert r.status_code == 200
    token = r.json()["token"]
    assert r.json()["access_token"] == token and r.json()["expires_in"] > 0
    api.c.headers.update(bearer(token))
    raw, _ = api.push_image("app", "1")
    assert api.c.get("/v2/app/manifests/1").content == raw
    assert api.c.get("/v2/").status_code == 200
    # another repository, or an action not granted
    r = api.c.get("/v2/other/tags/list")
    assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert api.c.delete("/v2/app/manifests/1").status_code == 401
    assert api.c.get("/v2/_catalog").status_code == 401
    # POST form (OAuth2 style) works too
    r = api.c.post("/token", data={"scope": "registry:catalog:*", "service": "polyarch-registry"},
                   headers=basic("alice", "s3cret"))
    assert api.c.get("/v2/_catalog", headers=bearer(r.json()["token"])).json()["repositories"] == ["app"]
    assert api.c.get("/token?service=evil", headers=basic("alice", "s3cret")).status_code == 400


def _forge(issuer: TokenIssuer, header: dict, claims: dict, key: bytes | None = None) -> str:  # type: ignore[type-arg]
    signer = TokenIssuer(key or issuer.key)
    return signer.sign(header, claims)


def test_token_rejections(token_api) -> None:  # type: ignore[no-untyped-def]
    api, issuer = token_api
    now = int(time.time())
    good_claims = {"iss": issuer.issuer, "aud": issuer.service, "sub": "alice", "iat": now, "nbf": now,
                   "exp": now + 300, "access": [{"type": "repository", "name": "app", "actions": ["pull"]}]}
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.kid}
    assert api.c.get("/v2/app/tags/list", headers=bearer(_forge(issuer, header, good_claims))).status_code in (200, 404)

    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    cases = {
        "alg none": f"{b64({'alg': 'none', 'kid': issuer.kid})}.{b64(good_claims)}.",
        "alg HS512": _forge(issuer, {**header, "alg": "HS512"}, good_claims),
        "unknown kid": _forge(issuer, {**header, "kid": "someone-else"}, good_claims),
        "jwk header with our kid": _forge(issuer, {**header, "jwk": {"kty": "oct", "k": "AAAA"}}, good_claims,
                                          key=b"attacker-key-attacker-key-attack"),
        "jwk header even when signed by us": _forge(issuer, {**header, "jwk": {"kty": "oct"}}, good_claims),
        "other key": _forge(issuer, header, good_claims, key=b"z" * 32),
        "expired": _forge(issuer, header, {**good_claims, "exp": now - 120}),
        "not yet valid": _forge(issuer, header, {**good_claims, "nbf": now + 120}),
        "no exp": _forge(issuer, header, {k: v for k, v in good_claims.items() if k != "exp"}),
        "wrong audience": _forge(issuer, header, {**good_claims, "aud": "other-registry"}),
        "wrong issuer": _forge(issuer, header, {**good_claims, "iss": "someone"}),
        "other repo": _forge(issuer, header, {**good_claims, "access": [
            {"type": "repository", "name": "other", "actions": ["pull"]}]}),
        "push only": _forge(issuer, header, {**good_claims, "access": [
            {"type": "repository", "name": "app", "actions": ["push"]}]}),
        "garbage": "a.b.c", "not a jwt": "xyz",
    }
    for why, token in cases.items():
        r = api.c.get("/v2/app/tags/list", headers=bearer(token))
        assert r.status_code in (401, 403), why
        assert "www-authenticate" in r.headers, why
    # within leeway is fine
    ok = _forge(issuer, header, {**good_claims, "exp": now - 5})
    assert api.c.get("/v2/app/tags/list", headers=bearer(ok)).status_code in (200, 404)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _enb64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_ISSUER = TokenIssuer(b"k" * 32)
_CLAIM_NAMES = ("alg", "kid", "typ", "jwk", "jku", "x5c", "crit", "iss", "aud", "exp", "nbf", "iat", "access", "sub")
_JSON_VALUES = st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.sampled_from(
    ["HS256", "none", "HS512", "RS256", _ISSUER.kid, _ISSUER.service, _ISSUER.issuer]) | st.lists(
    st.dictionaries(st.sampled_from(["type", "name", "actions"]), st.text(max_size=6) | st.just(["*"])), max_size=2)


@st.composite
def _tampered(draw: st.DrawFn) -> tuple[str, str]:
    """(a valid token, the same token with its header, payload or signature bytes changed)."""
    token = _ISSUER.issue("alice", [Access("repository", "app", frozenset({"pull", "push"}))])
    parts = token.split(".")
    i = draw(st.sampled_from([0, 1, 2]))
    data = _unb64(parts[i])
    how = draw(st.sampled_from(["flip", "replace", "field"] if i < 2 else ["flip", "replace"]))
    if how == "flip":
        at = draw(st.integers(0, len(data) - 1))
        new = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    elif how == "replace":
        new = draw(st.binary(max_size=80).filter(lambda b: b != data))
    else:
        doc = json.loads(data)
        key = draw(st.sampled_from(_CLAIM_NAMES))
        value = draw(_JSON_VALUES.filter(lambda v: key not in doc or v != doc[key]))
        new = json.dumps({**doc, key: value}).encode()
    parts[i] = _enb64(new)
    return token, ".".join(parts)


@settings(max_examples=300, deadline=None)
@given(_tampered())
def test_tampered_tokens_are_refused(pair: tuple[str, str]) -> None:
    """Any change to the bytes of a token's header, payload or signature is refused (never accepted, never
    another exception): no alg confusion, no unsigned claims."""
    token, tampered = pair
    assert [a.name for a in _ISSUER.verify(token)] == ["app"]
    with pytest.raises(TokenError):
        _ISSUER.verify(tampered)


def test_token_checks_are_pyjwt_backed_and_strict() -> None:
    now = int(time.time())
    good = {"iss": _ISSUER.issuer, "aud": [_ISSUER.service, "x"], "sub": "a", "iat": now, "exp": now + 60,
            "access": [{"type": "repository", "name": "app", "actions": ["pull"]}]}
    header = {"alg": "HS256", "typ": "JWT", "kid": _ISSUER.kid}
    assert [a.name for a in _ISSUER.verify(_ISSUER.sign(header, good))] == ["app"]
    for claims, why in (({**good, "exp": str(now + 60)}, "token expired"),
                        ({**good, "exp": True}, "token expired"),
                        ({**good, "iat": now + 120}, "token not yet valid"),
                        ({k: v for k, v in good.items() if k != "aud"}, "token audience mismatch"),
                        ({k: v for k, v in good.items() if k != "iss"}, "token issuer mismatch"),
                        ({k: v for k, v in good.items() if k != "exp"}, "token expired")):
        with pytest.raises(TokenError, match=why):
            _ISSUER.verify(_ISSUER.sign(header, claims))
    unsigned = f"{_enb64(json.dumps({**header, 'alg': 'none'}).encode())}.{_enb64(json.dumps(good).encode())}."
    with pytest.raises(TokenError, match="unsupported token algorithm"):
        _ISSUER.verify(unsigned)


def test_parse_scope() -> None:
    assert parse_scope("repository:a/b:pull,push") == Access("repository", "a/b", frozenset({"pull", "push"}))
    assert parse_scope("registry:catalog:*") == Access("registry", "catalog", frozenset({"*"}))
    for bad in ("", "repository", "repository:a", "repository::pull", "user:a:pull", "repository:a:"):
        assert parse_scope(bad) is None


def test_token_needs_htpasswd() -> None:
    with pytest.raises(UsageError):
        Authorizer(None, TokenIssuer())
    with pytest.raises(UsageError):
        TokenIssuer(b"short")


def test_read_only_token_drops_push(make_api, htpasswd_file: Path) -> None:  # type: ignore[no-untyped-def]
    api = make_api(authorizer=Authorizer(Htpasswd.load(htpasswd_file), TokenIssuer()), read_only=True)
    r = api.c.get("/token?scope=repository:app:pull,push,delete", headers=basic("alice", "s3cret"))
    claims = json.loads(base64.urlsafe_b64decode(r.json()["token"].split(".")[1] + "=="))
    assert claims["access"] == [{"type": "repository", "name": "app", "actions": ["pull"]}]


# --- R13 cross-repo isolation ----------------------------------------------------------------------------------

def test_r13_mount_needs_read_access_on_source(token_api) -> None:  # type: ignore[no-untyped-def]
    api, _ = token_api
    secret = os.urandom(500)
    t_secret = api.c.get("/token?scope=repository:secret:pull,push", headers=basic("alice", "s3cret")).json()["token"]
    d = sha256(secret)
    assert api.c.post(f"/v2/secret/blobs/uploads/?digest={d}", content=secret,
                      headers=bearer(t_secret)).status_code == 201
    # a token for "mine" only: mount from "secret" must not link, HEAD in "mine" stays 404
    t_mine = api.c.get("/token?scope=repository:mine:pull,push", headers=basic("bob", "hunter2")).json()["token"]
    r = api.c.post(f"/v2/mine/blobs/uploads/?mount={d}&from=secret", headers=bearer(t_mine))
    assert r.status_code == 202
    r = api.c.post(f"/v2/mine/blobs/uploads/?mount={d}", headers=bearer(t_mine))  # anonymous mount
    assert r.status_code == 202
    assert api.c.head(f"/v2/mine/blobs/{d}", headers=bearer(t_mine)).status_code == 404
    assert api.c.get(f"/v2/mine/blobs/{d}", headers=bearer(t_mine)).status_code == 404
    # with read access to both, the mount links
    both = api.c.get("/token?scope=repository:mine:pull,push&scope=repository:secret:pull",
                     headers=basic("bob", "hunter2")).json()["token"]
    assert api.c.post(f"/v2/mine/blobs/uploads/?mount={d}&from=secret", headers=bearer(both)).status_code == 201
    assert api.c.get(f"/v2/mine/blobs/{d}", headers=bearer(both)).content == secret


def test_r13_blob_only_in_other_repo_is_404_and_delete_sticks(api: Api) -> None:
    data = os.urandom(700)
    d = api.push_blob("a", data)
    assert api.c.head(f"/v2/b/blobs/{d}").status_code == 404
    assert api.push_blob("b", data) == d
    assert api.c.delete(f"/v2/a/blobs/{d}").status_code == 202
    assert api.c.head(f"/v2/a/blobs/{d}").status_code == 404
    assert api.c.get(f"/v2/a/blobs/{d}").status_code == 404
    assert api.c.get(f"/v2/b/blobs/{d}").content == data  # B still holds it
    api.push_blob("c", data)  # the store gets the same bytes again through another repository
    assert api.c.head(f"/v2/a/blobs/{d}").status_code == 404


# --- R14 delete policy -----------------------------------------------------------------------------------------

def test_r14_delete_disabled(make_api) -> None:  # type: ignore[no-untyped-def]
    api = make_api()  # delete_enabled=False
    raw, d = api.push_image("app", "1")
    layer = json.loads(raw)["layers"][0]["digest"]
    for path in (f"/v2/app/manifests/{d}", "/v2/app/manifests/1", f"/v2/app/blobs/{layer}"):
        r = api.c.delete(path)
        assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED", path
    assert api.c.get("/v2/app/manifests/1").status_code == 200


def test_r14_delete_enabled_policy(api: Api) -> None:
    raw, d = api.push_image("app", "1")
    api.put_manifest("app", "2", raw)
    layer = json.loads(raw)["layers"][0]["digest"]
    assert api.c.delete("/v2/app/manifests/2").status_code == 202  # by tag: only the tag goes
    assert api.c.get("/v2/app/manifests/2").status_code == 404
    assert api.c.get("/v2/app/manifests/1").status_code == 200
    assert api.c.delete(f"/v2/app/manifests/{d}").status_code == 202  # by digest: manifest and its tags
    assert api.c.get("/v2/app/manifests/1").status_code == 404
    assert api.c.get(f"/v2/app/manifests/{d}").status_code == 404
    assert api.c.delete(f"/v2/app/manifests/{d}").status_code == 404
    assert api.c.delete(f"/v2/app/blobs/{layer}").status_code == 202  # no longer referenced
    assert api.c.head(f"/v2/app/blobs/{layer}").status_code == 404
    assert api.c.delete(f"/v2/app/blobs/{layer}").status_code == 404


def test_read_only_refuses_writes(make_api) -> None:  # type: ignore[no-untyped-def]
    api = make_api(read_only=True, delete_enabled=True)
    for method, path in (("POST", "/v2/app/blobs/uploads/"), ("PUT", "/v2/app/manifests/1"),
                         ("DELETE", "/v2/app/manifests/1")):
        r = api.c.request(method, path, content=b"{}" if method == "PUT" else None)
        assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED"
