"""Issue 13 on the client side, against scripted hostile servers on 127.0.0.1 and through the real CLI:
bounded reads of every response (item 15), typed errors for deeply nested manifests (item 14), and foreign-layer
URLs off by default and fenced when on (item 9)."""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from tests.peakrss import run_peak_rss
from tests.registry.hostile_server import Answer, HostileServer, endless

from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, RegistryError
from polyarch.oci.spec import Descriptor, MediaType
from polyarch.registry.foreign import address_allowed, fetch_foreign

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20


def run_measured(args: list[str], root: Path, env: dict[str, str] | None = None,
                 stdin: bytes = b"") -> tuple[int, str, int]:
    """Run ``python -m polyarch ARGS``; (exit code, stderr, peak RSS in bytes of that process)."""
    err = root.parent / f"stderr-{os.getpid()}-{len(os.listdir(root.parent))}"
    full = {**os.environ, "POLYARCH_ROOT": str(root), "PYTHONPATH": str(REPO / "src"),
            "POLYARCH_REGISTRY_RETRIES": "0", "DOCKER_CONFIG": str(root.parent / "docker-config"), **(env or {})}
    with open(err, "wb") as f:
        code, peak = run_peak_rss([sys.executable, "-m", "polyarch", *args], env=full, stdin=stdin,
                                  stdout=subprocess.DEVNULL, stderr=f)
    return code, err.read_text(), peak


def one_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "internal error" not in lines[0], stderr
    return lines[0]


BEARER = {"WWW-Authenticate": 'Bearer realm="http://127.0.0.1:{port}/token",service="hostile"'}


# --- item 15: no body is read whole ------------------------------------------------------------------------------

def test_item15_endless_token_answer_fails_with_bounded_memory(tmp_path: Path) -> None:
    with HostileServer() as srv:
        srv.routes["*"] = Answer(401, BEARER, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
        srv.routes["/token"] = Answer(stream=lambda: endless(b'{"token":"'))
        rc, err, rss = run_measured(["pull", f"{srv.host}/x:1"], tmp_path / "store")
    assert rc != 0 and "more than 1048576 bytes" in one_error(err), err
    assert rss < 300 * MiB, rss


def test_item15_endless_error_body_on_a_streamed_answer(tmp_path: Path) -> None:
    with HostileServer() as srv:
        srv.routes["/v2/"] = Answer(200, body=b"{}")
        srv.routes["*"] = Answer(404, stream=lambda: endless(b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"'))
        rc, err, rss = run_measured(["pull", f"{srv.host}/x:1"], tmp_path / "store")
    assert rc != 0 and "not found" in one_error(err), err
    assert rss < 300 * MiB, rss


def test_item15_endless_body_on_a_small_answer(tmp_path: Path) -> None:
    """``login`` pings /v2/ (a non-streamed request): the server answers 401 and then talks forever."""
    with HostileServer() as srv:
        srv.routes["*"] = Answer(401, {"WWW-Authenticate": 'Basic realm="x"'}, stream=lambda: endless(b"<html>"))
        rc, err, rss = run_measured(["login", srv.host, "-u", "a", "--password-stdin"], tmp_path / "store",
                                    stdin=b"pw\n")
    assert rc != 0 and "unauthorized" in one_error(err), err
    assert rss < 300 * MiB, rss


def test_item15_endless_manifest(tmp_path: Path) -> None:
    with HostileServer() as srv:
        srv.routes["/v2/"] = Answer(200, body=b"{}")
        srv.routes["*"] = Answer(200, {"Content-Type": MediaType.OCI_MANIFEST}, stream=lambda: endless(b"{"))
        rc, err, rss = run_measured(["pull", f"{srv.host}/x:1"], tmp_path / "store")
    assert rc != 0 and "larger than 4194304 bytes" in one_error(err), err
    assert rss < 300 * MiB, rss


@pytest.mark.parametrize("answer", [b"[1]", b'{"token": 5}', b"[" * 100_000, b'{"token":"t","expires_in":1e999}',
                                    b"\xff\xfe", b'{"access_token":"t","expires_in":' + b"9" * 400 + b"}"],
                         ids=["list", "int-token", "deep", "inf-ttl", "binary", "huge-ttl"])
def test_item15_weird_token_answers_are_one_error(tmp_path: Path, answer: bytes) -> None:
    with HostileServer() as srv:
        srv.routes["*"] = Answer(401, BEARER)
        srv.routes["/token"] = Answer(200, body=answer)
        rc, err, _ = run_measured(["pull", f"{srv.host}/x:1"], tmp_path / "store")
    assert rc != 0
    one_error(err)


# --- item 14: deeply nested manifests from a registry -----------------------------------------------------------

@pytest.mark.parametrize("ctype", ["application/json", MediaType.OCI_MANIFEST, MediaType.OCI_INDEX])
def test_item14_deeply_nested_manifest_from_a_registry_is_invalid(tmp_path: Path, ctype: str) -> None:
    with HostileServer() as srv:
        srv.routes["/v2/"] = Answer(200, body=b"{}")
        srv.routes["*"] = Answer(200, {"Content-Type": ctype}, b'{"mediaType":' + b"[" * 100_000)
        rc, err, _ = run_measured(["pull", f"{srv.host}/x:1"], tmp_path / "store")
    assert rc != 0
    line = one_error(err)
    assert "JSON" in line or "media type" in line, line


# --- item 9: foreign layers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "ok"), [
    ("127.0.0.1", False), ("127.8.9.10", False), ("::1", False), ("0.0.0.0", False), ("0.1.2.3", False),
    ("::", False), ("169.254.169.254", False), ("fe80::1", False), ("fec0::1", False), ("224.0.0.1", False),
    ("ff02::1", False), ("255.255.255.255", False), ("240.0.0.1", False), ("::ffff:127.0.0.1", False),
    ("::ffff:169.254.169.254", False), ("::127.0.0.1", False), ("64:ff9b::a9fe:a9fe", False),
    ("2002:7f00:1::", False), ("2002:a9fe:a9fe::1", False), ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),
    ("8.8.8.8", True), ("93.184.216.34", True), ("192.168.1.10", True), ("10.1.2.3", True),
    ("2606:4700:4700::1111", True), ("::ffff:8.8.8.8", False), ("2002:808:808::1", True)])
def test_item9_address_policy(address: str, ok: bool) -> None:
    assert address_allowed(ipaddress.ip_address(address)) is ok


def _layer() -> tuple[bytes, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), "sha256:" + hashlib.sha256(raw).hexdigest()


def _foreign_registry(srv: HostileServer, urls: list[str]) -> Descriptor:
    """Make ``srv`` a registry serving x:1, whose one layer is foreign (404 here, available at ``urls``)."""
    layer, diff_id = _layer()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    cfg_digest = Digest.of(config)
    layer_desc = Descriptor(MediaType.OCI_LAYER_ND_GZIP, Digest.of(layer), len(layer), urls=tuple(urls))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
        "config": {"mediaType": MediaType.OCI_CONFIG, "digest": str(cfg_digest), "size": len(config)},
        "layers": [{"mediaType": layer_desc.media_type, "digest": str(layer_desc.digest), "size": len(layer),
                    "urls": urls}]}).encode()
    srv.routes["/v2/"] = Answer(200, body=b"{}")
    srv.routes["/v2/x/manifests/1"] = Answer(200, {"Content-Type": MediaType.OCI_MANIFEST}, manifest)
    srv.routes[f"/v2/x/blobs/{cfg_digest}"] = Answer(200, body=config)
    srv.routes["/layer.tar.gz"] = Answer(200, body=layer)
    return layer_desc


def test_item9_foreign_urls_are_not_fetched_by_default(tmp_path: Path) -> None:
    with HostileServer() as srv:
        _foreign_registry(srv, [f"http://127.0.0.1:{srv.port}/layer.tar.gz"])
        rc, err, _ = run_measured(["pull", "--platform", "linux/amd64", f"{srv.host}/x:1"], tmp_path / "store")
        assert rc != 0 and "non-distributable" in one_error(err) and "--allow-nondistributable-artifacts" in err
        assert srv.hits["/layer.tar.gz"] == 0
        assert srv.hits["/v2/x/manifests/1"] == 1  # the pull got that far: the refusal is about the layer


@pytest.mark.parametrize("how", ["flag", "env"])
def test_item9_allowed_still_refuses_loopback_and_metadata_addresses(tmp_path: Path, how: str) -> None:
    with HostileServer() as srv:
        _foreign_registry(srv, ["http://169.254.169.254/latest/meta-data/", "file:///etc/passwd",
                                f"http://u:p@example.com:{srv.port}/layer.tar.gz",
                                f"http://127.0.0.1:{srv.port}/layer.tar.gz", f"http://localhost:{srv.port}/x"])
        flag = ["--allow-nondistributable-artifacts"] if how == "flag" else []
        env = {"POLYARCH_ALLOW_NONDISTRIBUTABLE_ARTIFACTS": "1"} if how == "env" else {}
        rc, err, _ = run_measured(["pull", *flag, "--platform", "linux/amd64", f"{srv.host}/x:1"],
                                  tmp_path / "store", env=env)
        line = one_error(err)
        assert rc != 0 and "could not be fetched" in line
        for reason in ("169.254.169.254", "'file' is not http or https", "credentials", "127.0.0.1, an address"):
            assert reason in line, (reason, line)
        assert srv.hits["/layer.tar.gz"] == 0 and srv.hits["/x"] == 0


def _everywhere(ip: object) -> bool:
    return True


def test_item9_size_cap_digest_and_redirects(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    with HostileServer() as srv, HostileServer() as other:
        desc = _foreign_registry(srv, [f"http://127.0.0.1:{srv.port}/layer.tar.gz"])
        sink = fetch_foreign(desc, store.writer, allowed=_everywhere)  # the test-only policy reaches loopback
        assert sink.commit(desc.digest, desc.size)[0] == desc.digest
        srv.routes["/more"] = Answer(stream=lambda: endless(b"x"))
        srv.routes["/same-origin"] = Answer(302, {"Location": "/layer.tar.gz"})
        srv.routes["/other-origin"] = Answer(302, {"Location": f"http://127.0.0.1:{other.port}/layer.tar.gz"})
        other.routes["/layer.tar.gz"] = srv.routes["/layer.tar.gz"]

        def at(path: str) -> Descriptor:
            return Descriptor(desc.media_type, desc.digest, desc.size, urls=(f"http://127.0.0.1:{srv.port}{path}",))

        with pytest.raises(DigestMismatch, match="more than the declared"):
            fetch_foreign(at("/more"), store.writer, allowed=_everywhere)
        sink = fetch_foreign(at("/same-origin"), store.writer, allowed=_everywhere)
        assert sink.commit(desc.digest, desc.size)[0] == desc.digest
        with pytest.raises(RegistryError, match="another origin"):
            fetch_foreign(at("/other-origin"), store.writer, allowed=_everywhere)
        assert other.hits["/layer.tar.gz"] == 0
        short = Descriptor(desc.media_type, desc.digest, desc.size + 10, urls=at("/layer.tar.gz").urls)
        with pytest.raises(RegistryError, match=r"got \d+ of the declared"):
            fetch_foreign(short, store.writer, allowed=_everywhere)
        wrong = Descriptor(desc.media_type, Digest.of(b"other"), desc.size, urls=at("/layer.tar.gz").urls)
        sink = fetch_foreign(wrong, store.writer, allowed=_everywhere)
        with pytest.raises(DigestMismatch):
            sink.commit(wrong.digest, wrong.size)
    assert not any((store.root / "ingest").glob("*")) if (store.root / "ingest").exists() else True


def test_item9_https_goes_to_the_checked_address_with_the_url_host_name(
        tls_server: tuple[str, Path], tmp_path: Path) -> None:
    """The connection is made to the resolved address, yet TLS still verifies the certificate for the URL's host
    (SNI and hostname check), so a valid certificate is needed for the name, not for the address."""
    import ssl

    host, cert = tls_server  # localhost:PORT, a certificate for 'localhost' only
    store = ContentStore(tmp_path / "store")
    body = b"{}"
    desc = Descriptor(MediaType.OCI_LAYER_ND_GZIP, Digest.of(body), len(body), urls=(f"https://{host}/layer",))
    ctx = ssl.create_default_context(cafile=str(cert))
    sink = fetch_foreign(desc, store.writer, verify=ctx, allowed=_everywhere)
    assert sink.commit(desc.digest, desc.size)[0] == desc.digest
    with pytest.raises(RegistryError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        fetch_foreign(desc, store.writer, verify=ssl.create_default_context(), allowed=_everywhere)
    by_address = Descriptor(desc.media_type, desc.digest, desc.size,
                            urls=(f"https://127.0.0.1:{host.split(':')[1]}/layer",))
    with pytest.raises(RegistryError, match=r"IP address mismatch|certificate"):
        fetch_foreign(by_address, store.writer, verify=ctx, allowed=_everywhere)
