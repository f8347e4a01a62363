"""The registry client makes its verified TLS context only when a request needs it: a client that talks plain http
(loopback registries, an http token realm, a redirect to an http origin) never loads the system's CAs, and a
``--tls-ca`` file that cannot be loaded still fails when the client is made."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.registry.test_client import _Scripted

from polyarch.content.store import ContentStore
from polyarch.errors import RegistryError
from polyarch.oci import reference
from polyarch.oci.spec import Descriptor, MediaType
from polyarch.registry.client import RegistryClient
from polyarch.registry.credentials import CredentialStore
from polyarch.registry.endpoints import ClientOptions


@pytest.fixture
def scripted_http() -> Iterator[_Scripted]:
    s = _Scripted()
    yield s
    s.close()


@pytest.fixture
def trust_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every verified context made and every load of the system's CAs, in this process."""
    calls: list[str] = []
    make, load = ssl.create_default_context, ssl.SSLContext.load_default_certs

    def counted_make(*a: Any, **k: Any) -> ssl.SSLContext:
        calls.append("create_default_context")
        return make(*a, **k)

    def counted_load(self: ssl.SSLContext, *a: Any, **k: Any) -> None:
        calls.append("load_default_certs")
        load(self, *a, **k)

    monkeypatch.setattr(ssl, "create_default_context", counted_make)
    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", counted_load)
    return calls


def test_plain_http_client_never_makes_the_verified_context(scripted_http: _Scripted, trust_loads: list[str],
                                                            tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "s")
    desc = Descriptor(MediaType.OCI_LAYER, scripted_http.digest, len(scripted_http.blob))
    ref = reference.parse(f"{scripted_http.host}/a/b:1")
    # bearer token from an http realm, then the blob GET redirected to another http origin
    with RegistryClient(ClientOptions(backoff=0.01), CredentialStore(tmp_path / "none.json")) as c:
        c.fetch_blob(ref, desc, lambda: store.writer())
    assert store.read(scripted_http.digest) == scripted_http.blob
    assert len(scripted_http.token_requests) == 1 and scripted_http.cdn_auth == [None]
    assert trust_loads == []


def test_verified_context_is_made_once_on_first_use(trust_loads: list[str], tmp_path: Path) -> None:
    with RegistryClient(ClientOptions(), CredentialStore(tmp_path / "none.json")) as c:
        assert trust_loads == []
        first = c.ssl_context
        assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
        assert c.ssl_context is first
    assert trust_loads.count("create_default_context") == 1


def test_https_request_is_verified_and_tls_ca_trusted(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    host, cert = tls_server  # a self-signed https server, reached as Docker Hub's mirror
    for ca, ok in (("", False), (str(cert), True)):
        opts = ClientOptions(mirror=f"https://{host}", ca_file=ca, retries=0)
        with RegistryClient(opts, CredentialStore(tmp_path / "none.json")) as c:
            reg = c.endpoint("docker.io")
            assert reg.base == f"https://{host}"
            if ok:
                assert c.call(reg, "GET", f"{reg.base}/v2/", scopes=[]).status_code == 200
            else:
                with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED"):
                    c.call(reg, "GET", f"{reg.base}/v2/", scopes=[])


def test_unloadable_tls_ca_fails_when_the_client_is_made(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("no certificate here\n")
    for path in (bad, tmp_path / "missing.pem"):
        with pytest.raises(RegistryError, match=f"cannot load CA file {path}"):
            RegistryClient(ClientOptions(ca_file=str(path)), CredentialStore(tmp_path / "none.json"))
