"""Registry test fixtures.

Client side (issue 3): ``ref_registry`` (Debian's docker-registry, anonymous, one per session: tests use their own
repository names), ``auth_registry`` (htpasswd user/pass), ``fault_proxy`` (a loopback HTTP proxy in front of
``ref_registry`` that injects 503s, resets and stalls), ``docker_config`` (an empty DOCKER_CONFIG dir) and
``make_image`` (a store with a generated multi-platform image), ``tls_server`` (https on 127.0.0.1 with a
certificate for 'localhost').
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.registry.faultproxy import FaultProxy
from tests.registry.imagegen import make_test_image
from tests.registry.pg import Postgres, start_postgres
from tests.registry.pg import available as pg_available
from tests.registry.refregistry import RefRegistry, start_registry
from tests.registry.rgw import Rgw, start_rgw
from tests.registry.rgw import available as rgw_available


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed")


@pytest.fixture(scope="session")
def ref_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefRegistry]:
    _need("docker-registry")
    reg = start_registry(tmp_path_factory.mktemp("ref-registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefRegistry]:
    _need("docker-registry")
    _need("htpasswd")
    reg = start_registry(tmp_path_factory.mktemp("auth-registry"), user="polyuser", password="s3cret-pass")
    yield reg
    reg.stop()


@pytest.fixture
def fault_proxy(ref_registry: RefRegistry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(ref_registry.host)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., tuple[Path, str]]:
    """make_image(name, platforms=..., layer_sizes=...) → (store root, name): a generated image in a fresh store."""
    counter = iter(range(1000))

    def make(name: str = "gen/app:1", *, platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64", "linux/arm/v7"),
             layer_sizes: tuple[int, ...] = (4096, 70000), seed: int = 0) -> tuple[Path, str]:
        root = tmp_path / f"store-{next(counter)}"
        make_test_image(root, name, platforms=platforms, layer_sizes=layer_sizes, seed=seed)
        return root, name

    return make


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An https server on 127.0.0.1 with a self-signed certificate for 'localhost'; yields (host:port, cert)."""
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)

    class V2(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            return

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), V2)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"localhost:{srv.server_address[1]}", cert
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rgw]:
    """A throwaway Ceph RGW (S3) for the session: tests/registry/rgw.py; scripts/setup.sh installs Ceph."""
    if not rgw_available():
        raise AssertionError("Ceph RGW is not installed: apt-get install --no-install-recommends ceph-mon ceph-osd "
                             "radosgw (scripts/setup.sh)")
    cluster = start_rgw(tmp_path_factory.mktemp("rgw"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Postgres]:
    """A throwaway PostgreSQL 15 cluster for the session: tests/registry/pg.py; scripts/setup.sh installs it."""
    if not pg_available():
        raise AssertionError("PostgreSQL 15 is not installed: apt-get install postgresql-15 (scripts/setup.sh)")
    cluster = start_postgres()
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg(pg_cluster: Postgres) -> str:
    """The URL of a new empty database on the session's PostgreSQL cluster."""
    return pg_cluster.database()
