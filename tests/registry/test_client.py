"""Registry client: challenges, credentials (config.json, helpers), basic auth against docker-registry with
htpasswd, bearer tokens and cross-origin redirects against a small scripted registry."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.conftest import run_cli

from polyarch.cli.environment import Environment
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import RegistryError
from polyarch.oci import reference
from polyarch.oci.spec import Descriptor, MediaType
from polyarch.registry.auth import parse_challenges
from polyarch.registry.client import RegistryClient
from polyarch.registry.credentials import Credential, CredentialStore
from polyarch.registry.endpoints import ClientOptions, is_loopback

# --- pure ------------------------------------------------------------------------------------------------


def test_parse_bearer_and_basic_challenges() -> None:
    [ch] = parse_challenges('Bearer realm="https://auth.example/token",service="registry.example",'
                            'scope="repository:a/b:pull,push"')
    assert ch.scheme == "bearer" and ch.realm == "https://auth.example/token"
    assert ch.service == "registry.example" and ch.params["scope"] == "repository:a/b:pull,push"
    [basic] = parse_challenges('Basic realm="polyarch-test"')
    assert basic.scheme == "basic" and basic.realm == "polyarch-test"
    both = parse_challenges('Basic realm="x", Bearer realm="https://t/x",service=s')
    assert [c.scheme for c in both] == ["basic", "bearer"] and both[1].service == "s"


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1:5000", True), ("127.1.2.3", True), ("localhost:80", True),
                                            ("[::1]:5000", True), ("registry.lan:5000", False),
                                            ("10.0.0.1:5000", False), ("localhost.evil.com", False)])
def test_loopback_detection(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_options_from_env() -> None:
    env = Environment.read({"POLYARCH_INSECURE_REGISTRIES": "a.lan:5000, B.lan",
                            "POLYARCH_DOCKERHUB_MIRROR": "http://mirror.lan:5000", "POLYARCH_REGISTRY_TIMEOUT": "7",
                            "POLYARCH_ALLOW_NONDISTRIBUTABLE_ARTIFACTS": "yes"})
    opts = env.client_options(insecure=("c.lan",))
    assert opts.insecure == {"a.lan:5000", "b.lan", "c.lan"} and opts.mirror == "http://mirror.lan:5000"
    assert opts.timeout == 7.0 and opts.retries == ClientOptions().retries and opts.allow_nondistributable
    assert not Environment.read({}).client_options().allow_nondistributable
    assert Environment.read({}).client_options(allow_nondistributable=True).allow_nondistributable
    with pytest.raises(RegistryError, match="POLYARCH_REGISTRY_RETRIES"):
        Environment.read({"POLYARCH_REGISTRY_RETRIES": "many"}).client_options()


# --- credentials -----------------------------------------------------------------------------------------


def test_config_json_roundtrip_in_docker_format(docker_config: Path) -> None:
    store = Environment.read({"DOCKER_CONFIG": str(docker_config)}).credentials()
    assert store.path == docker_config / "config.json"
    store.store("registry.lan:5000", Credential("alice", "pw:with:colons"))
    store.store("docker.io", Credential("bob", "hub"))
    doc = json.loads((docker_config / "config.json").read_text())
    assert doc["auths"]["registry.lan:5000"]["auth"] == base64.b64encode(b"alice:pw:with:colons").decode()
    assert "https://index.docker.io/v1/" in doc["auths"]
    assert stat.S_IMODE((docker_config / "config.json").stat().st_mode) == 0o600
    assert store.get("https://registry.lan:5000/") == Credential("alice", "pw:with:colons")
    assert store.get("index.docker.io") == Credential("bob", "hub")
    assert store.erase("registry.lan:5000") and store.get("registry.lan:5000") is None
    assert not store.erase("registry.lan:5000")
    assert "hub" not in repr(store.get("docker.io"))


def test_credential_helper_program(docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    vault = tmp_path / "vault"
    helper = bindir / "docker-credential-polytest"
    helper.write_text(f"""#!/bin/sh
set -e
input=$(cat)
case "$1" in
  get) if [ -f {vault} ]; then cat {vault}; else echo "credentials not found in native keychain"; exit 1; fi ;;
  store) printf '%s' "$input" > {vault} ;;
  erase) rm -f {vault} ;;
esac
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {"reg.lan": "polytest"}}))
    store = CredentialStore(docker_config / "config.json")
    assert store.get("reg.lan") is None
    assert "docker-credential-polytest" in store.store("reg.lan", Credential("carol", "s3"))
    assert json.loads(vault.read_text()) == {"ServerURL": "reg.lan", "Username": "carol", "Secret": "s3"}
    assert store.get("reg.lan") == Credential("carol", "s3")
    assert store.get("other.lan") is None  # no helper, no auths entry
    assert store.erase("reg.lan") and not vault.exists()


def test_corrupt_config_is_one_line_error(docker_config: Path) -> None:
    (docker_config / "config.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"config\.json is not valid JSON"):
        CredentialStore(docker_config / "config.json").get("x.lan")


# --- basic auth against docker-registry ----------------------------------------------------------------------


@pytest.mark.registry
def test_login_push_logout_roundtrip(auth_registry, make_image, tmp_path: Path) -> None:
    root, name = make_image("gen/auth:1", platforms=("linux/amd64",), layer_sizes=(1000, 2000))
    env = {"DOCKER_CONFIG": str(tmp_path / "dc")}
    dest = f"{auth_registry.host}/gen/auth:1"
    denied = run_cli("push", name, dest, root=root, env=env, check=False)
    assert denied.returncode == 1
    first = denied.stderr.splitlines()[0]
    assert first == (f"error: {auth_registry.host}: unauthorized: authentication required for "
                     "repository:gen/auth:pull,push")
    bad = run_cli("login", "-u", auth_registry.user, "--password-stdin", auth_registry.host, root=root, env=env,
                  input=b"wrong\n", check=False)
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[0].startswith(f"error: {auth_registry.host}: unauthorized")
    assert not (tmp_path / "dc" / "config.json").exists()
    ok = run_cli("login", "-u", auth_registry.user, "--password-stdin", auth_registry.host, root=root, env=env,
                 input=f"{auth_registry.password}\n".encode())
    assert "Login Succeeded" in ok.stdout
    doc = json.loads((tmp_path / "dc" / "config.json").read_text())
    token = base64.b64decode(doc["auths"][auth_registry.host]["auth"]).decode()
    assert token == f"{auth_registry.user}:{auth_registry.password}"
    run_cli("push", name, dest, root=root, env=env)
    run_cli("pull", "--platform", "linux/amd64", dest, root=tmp_path / "p", env=env)
    out = run_cli("logout", auth_registry.host, root=root, env=env)
    assert f"Removing login credentials for {auth_registry.host}" in out.stdout
    again = run_cli("pull", dest, root=tmp_path / "p2", env=env, check=False)
    assert again.returncode == 1 and "unauthorized" in again.stderr


# --- bearer tokens and redirects (scripted registry) -----------------------------------------------------------


class _Scripted:
    """A tiny registry: bearer auth from /token, one blob whose GET redirects to another origin."""

    def __init__(self) -> None:
        self.blob = os.urandom(50_000)
        self.digest = Digest.of(self.blob)
        self.token_requests: list[dict[str, str]] = []
        self.cdn_auth: list[str | None] = []
        self.expires_in = 3600
        state = self

        class Cdn(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                return

            def do_GET(self) -> None:
                state.cdn_auth.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.send_header("Content-Length", str(len(state.blob)))
                self.end_headers()
                self.wfile.write(state.blob)

        class Reg(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                return

            def do_GET(self) -> None:
                if self.path.startswith("/token"):
                    from urllib.parse import parse_qs, urlparse

                    q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                    q["auth"] = self.headers.get("Authorization") or ""
                    state.token_requests.append(q)
                    body = json.dumps({"token": f"tok-{len(state.token_requests)}",
                                       "expires_in": state.expires_in}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if not (self.headers.get("Authorization") or "").startswith("Bearer tok-"):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", f'Bearer realm="http://{state.host}/token",'
                                     'service="scripted",scope="repository:a/b:pull"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(307)
                self.send_header("Location", f"http://{state.cdn_host}/bucket/blob?sig=1")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

        self.reg = ThreadingHTTPServer(("127.0.0.1", 0), Reg)
        self.cdn = ThreadingHTTPServer(("127.0.0.2", 0), Cdn)
        self.host = f"127.0.0.1:{self.reg.server_address[1]}"
        self.cdn_host = f"127.0.0.2:{self.cdn.server_address[1]}"
        for srv in (self.reg, self.cdn):
            threading.Thread(target=srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        for srv in (self.reg, self.cdn):
            srv.shutdown()
            srv.server_close()


@pytest.fixture
def scripted() -> Iterator[_Scripted]:
    s = _Scripted()
    yield s
    s.close()


def test_bearer_token_per_scope_and_no_credentials_on_redirect(scripted: _Scripted, docker_config: Path,
                                                               tmp_path: Path) -> None:
    creds = CredentialStore(docker_config / "config.json")
    creds.store(scripted.host, Credential("dave", "pw"))
    store = ContentStore(tmp_path / "s")
    desc = Descriptor(MediaType.OCI_LAYER, scripted.digest, len(scripted.blob))
    ref = reference.parse(f"{scripted.host}/a/b:1")
    with RegistryClient(ClientOptions(backoff=0.01), creds) as c:
        for _ in range(3):
            c.fetch_blob(ref, desc, lambda: store.writer())
    assert store.read(scripted.digest) == scripted.blob
    assert len(scripted.token_requests) == 1  # cached for the scope
    tr = scripted.token_requests[0]
    assert tr["scope"] == "repository:a/b:pull" and tr["service"] == "scripted" and tr["account"] == "dave"
    assert tr["auth"] == "Basic " + base64.b64encode(b"dave:pw").decode()
    assert scripted.cdn_auth == [None, None, None]  # credentials never left the registry's origin


def test_expired_token_is_renewed(scripted: _Scripted, docker_config: Path, tmp_path: Path) -> None:
    scripted.expires_in = 1  # short-lived: renewed before it runs out
    store = ContentStore(tmp_path / "s")
    desc = Descriptor(MediaType.OCI_LAYER, scripted.digest, len(scripted.blob))
    ref = reference.parse(f"{scripted.host}/a/b:1")
    with RegistryClient(ClientOptions(backoff=0.01), CredentialStore(docker_config / "config.json")) as c:
        c.fetch_blob(ref, desc, lambda: store.writer())
        store.delete(scripted.digest)
        time.sleep(0.6)
        c.fetch_blob(ref, desc, lambda: store.writer())
    assert len(scripted.token_requests) == 2
    assert all(r["auth"] == "" for r in scripted.token_requests)  # anonymous: no credentials configured


def test_blob_digest_mismatch_is_rejected(scripted: _Scripted, docker_config: Path, tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "s")
    wrong = Descriptor(MediaType.OCI_LAYER, Digest.of(b"something else"), len(scripted.blob))
    ref = reference.parse(f"{scripted.host}/a/b:1")
    from polyarch.errors import DigestMismatch

    with RegistryClient(ClientOptions(backoff=0.01), CredentialStore(docker_config / "config.json")) as c, \
            pytest.raises(DigestMismatch):
        c.fetch_blob(ref, wrong, lambda: store.writer())
    assert not store.has(wrong.digest) and list((tmp_path / "s" / "ingest").iterdir()) == []


# --- TLS -------------------------------------------------------------------------------------------------------


def test_tls_failure_is_named_and_tls_ca_fixes_it(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    import httpx

    from polyarch.registry.httperrors import transport_error

    host, cert = tls_server
    with RegistryClient(ClientOptions(), CredentialStore(tmp_path / "x.json")) as c:
        with pytest.raises(httpx.ConnectError) as info:
            httpx.get(f"https://{host}/v2/", verify=c.ssl_context)
        err = transport_error(host, info.value)
        assert err.message.startswith(f"TLS failure talking to {host}: ")
        assert "CERTIFICATE_VERIFY_FAILED" in err.message and "--tls-ca" in (err.hint or "")
    with RegistryClient(ClientOptions(ca_file=str(cert)), CredentialStore(tmp_path / "x.json")) as c:
        assert httpx.get(f"https://{host}/v2/", verify=c.ssl_context).status_code == 200


def test_dockerhub_mirror_and_insecure_registries_reach_pull(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    """``POLYARCH_DOCKERHUB_MIRROR`` sends a Docker Hub pull to the mirror, and ``POLYARCH_INSECURE_REGISTRIES``
    lets it skip the verification of the mirror's certificate (this one is self-signed)."""
    host, _ = tls_server
    env = {"POLYARCH_DOCKERHUB_MIRROR": f"https://{host}", "POLYARCH_REGISTRY_RETRIES": "0",
           "DOCKER_CONFIG": str(tmp_path / "dc")}
    verified = run_cli("pull", "busybox:1", root=tmp_path / "root", env=env, check=False)
    assert verified.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in verified.stderr.splitlines()[0]
    unverified = run_cli("pull", "busybox:1", root=tmp_path / "root", check=False,
                         env={**env, "POLYARCH_INSECURE_REGISTRIES": host})
    # the mirror answered (it is not a registry: its manifest is "{}"), so TLS was not checked
    assert unverified.returncode == 1 and "manifest has no media type" in unverified.stderr.splitlines()[0]
