"""Fixtures for the embedded registry server: an in-process API client (Starlette TestClient over the ASGI
app, no socket) and real ``polyarch registry serve`` processes on free loopback ports."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from polyarch.registry.server import Registry, RegistryConfig, create_app
from polyarch.registry.server.auth import Authorizer

REPO = Path(__file__).resolve().parents[3]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    """Helpers over an httpx-compatible client talking to one registry."""

    def __init__(self, client: httpx.Client, reg: Registry | None = None) -> None:
        self.c = client
        self.reg = reg

    def push_blob(self, repo: str, data: bytes) -> str:
        d = sha256(data)
        r = self.c.post(f"/v2/{repo}/blobs/uploads/?digest={d}", content=data)
        assert r.status_code == 201, r.text
        return d

    def config(self, arch: str = "amd64", extra: str = "") -> bytes:
        return json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                           "extra": extra}).encode()

    def manifest(self, repo: str, layers: list[bytes], *, arch: str = "amd64", extra: str = "",
                 subject: dict[str, Any] | None = None, artifact_type: str = "") -> bytes:
        cfg = self.config(arch, extra)
        doc: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.push_blob(repo, cfg), "size": len(cfg)},
            "layers": [{"mediaType": OCI_LAYER, "digest": self.push_blob(repo, b), "size": len(b)} for b in layers]}
        if subject is not None:
            doc["subject"] = subject
        if artifact_type:
            doc["artifactType"] = artifact_type
        return json.dumps(doc, indent=1).encode()  # not canonical on purpose: bytes must come back exactly

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str = OCI_MANIFEST) -> httpx.Response:
        return self.c.put(f"/v2/{repo}/manifests/{ref}", content=raw, headers={"Content-Type": media_type})

    def push_image(self, repo: str, tag: str, layers: list[bytes] | None = None, **kw: Any) -> tuple[bytes, str]:
        raw = self.manifest(repo, layers if layers is not None else [os.urandom(1000)], **kw)
        r = self.put_manifest(repo, tag, raw)
        assert r.status_code == 201, r.text
        return raw, r.headers["docker-content-digest"]


def raw_request(app: Any, method: str, raw_path: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Call the ASGI app with an exact raw path (no client-side URL normalisation); returns status, headers,
    body."""
    import asyncio

    async def run() -> tuple[int, dict[str, str], bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": raw_path.decode("latin-1"), "raw_path": raw_path, "root_path": "",
                 "query_string": b"", "headers": [(b"host", b"127.0.0.1:5000"),
                                                  (b"content-length", str(len(body)).encode())],
                 "server": ("127.0.0.1", 5000), "client": ("127.0.0.1", 40000)}
        sent = False
        status, headers, out = 0, {}, bytearray()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers.update({k.decode(): v.decode() for k, v in message.get("headers", [])})
            elif message["type"] == "http.response.body":
                out.extend(message.get("body", b""))

        await app(scope, receive, send)
        return status, headers, bytes(out)

    return asyncio.run(run())


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """make_api(root=None, authorizer=None, **RegistryConfig fields) → Api over an in-process app."""
    made: list[tuple[Registry, TestClient]] = []

    def make(root: Path | None = None, authorizer: Authorizer | None = None, **config: Any) -> Api:
        reg = Registry(root or tmp_path / f"store{len(made)}", RegistryConfig(**config), authorizer)
        reg.recover()
        client = TestClient(create_app(reg), base_url="http://127.0.0.1:5000", raise_server_exceptions=True,
                            follow_redirects=False)
        made.append((reg, client))
        return Api(client, reg)

    yield make
    for reg, client in made:
        client.close()
        reg.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api(delete_enabled=True)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    host: str
    root: Path
    log: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def cli_env(root: Path) -> dict[str, str]:
    return {**os.environ, "POLYARCH_ROOT": str(root), "PYTHONPATH": str(REPO / "src")}


def start_server(root: Path, *args: str, port: int | None = None, scheme: str = "http",
                 wait: bool = True, verify: Any = False, preexec_fn: Callable[[], None] | None = None) -> Server:
    port = port or free_port()
    host = f"127.0.0.1:{port}"
    log = root.parent / f"server-{port}.log"
    root.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "polyarch", "registry", "serve", "--addr", host, *args],
                                env=cli_env(root), stdout=out, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
    server = Server(proc, host, root, log, scheme)
    if not wait:
        return server
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"registry exited {proc.returncode}: {log.read_text()[-800:]}")
        try:
            httpx.get(f"{server.url}/v2/", timeout=1, verify=verify)
            return server
        except httpx.HTTPError:
            time.sleep(0.05)
    server.stop()
    raise AssertionError("registry did not start within 20 s")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """live(root=None, *args) → a running ``polyarch registry serve`` (stopped at teardown)."""
    servers: list[Server] = []

    def make(root: Path | None = None, *args: str, **kw: Any) -> Server:
        server = start_server(root or tmp_path / f"live{len(servers)}" / "store", *args, **kw)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()
