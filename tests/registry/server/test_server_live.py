"""Against a real ``polyarch registry serve`` process: skopeo and buildah as clients, crash safety under
SIGKILL, GC under load, TLS, timeouts, a full disk, and the CLI's refusals."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.registry.imagegen import make_test_image

from polyarch.content.store import ContentStore
from polyarch.digest import Digest, hash_file
from polyarch.registry.server import collect_garbage, scrub
from polyarch.registry.server.serve import exposure_warning, parse_addr, tls_context

from .conftest import Api, Server, cli_env, sha256, start_server

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


def skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def digests_of_layout(path: Path) -> set[str]:
    return {p.name for p in (path / "blobs" / "sha256").iterdir()}


# --- real clients ----------------------------------------------------------------------------------------------

@pytest.mark.skopeo
@needs_skopeo
def test_skopeo_copy_all_in_and_out_identical_digests(live: Callable[..., Server], tmp_path: Path) -> None:
    src = tmp_path / "src"
    desc = make_test_image(src, "gen/app:1", platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"),
                           layer_sizes=(5000, 300_000))
    server = live()
    skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", f"oci:{src}:gen/app:1",
           f"docker://{server.host}/gen/app:1")
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{server.host}/gen/app:1")
    assert sha256(raw.encode()) == str(desc.digest)
    out = tmp_path / "out"
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", f"docker://{server.host}/gen/app:1",
           f"oci:{out}:x")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(desc.digest)
    assert digests_of_layout(out) == digests_of_layout(src)
    # a second copy into another repository mounts or re-uploads, same digest
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{server.host}/gen/app:1", f"docker://{server.host}/copy/app:2")
    tags = skopeo("list-tags", "--tls-verify=false", f"docker://{server.host}/copy/app")
    assert json.loads(tags)["Tags"] == ["2"]
    raw2 = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{server.host}/copy/app:2")
    assert raw2 == raw


@pytest.mark.skopeo
@needs_skopeo
def test_local_import_is_served_at_once(store_root: Path, live: Callable[..., Server]) -> None:
    """``polyarch import … -t base/busybox:1`` then ``skopeo inspect docker://…/base/busybox:1``."""
    server = live(store_root)
    out = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64",
                            f"docker://{server.host}/base/busybox:1"))
    assert out["Architecture"] == "arm64" and out["Name"] == f"{server.host}/base/busybox"
    index = json.loads((store_root / "index.json").read_text())
    local = next(m for m in index["manifests"] if m["annotations"].get("org.opencontainers.image.ref.name")
                 == "base/busybox:1")
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{server.host}/base/busybox:1")
    assert sha256(raw.encode()) == local["digest"]


@pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")
def test_buildah_pulls_pushed_multiplatform_image(live: Callable[..., Server], tmp_path: Path) -> None:
    server = live()
    src = tmp_path / "src"
    make_test_image(src, "gen/app:1", platforms=("linux/amd64", "linux/arm64"), layer_sizes=(3000, 40_000))
    with httpx.Client(base_url=server.url) as c:
        _push_layout(c, src, "gen/app:1", "multi/app", "1")
    root = tmp_path / "buildah"
    base = ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]
    for arch in ("arm64", "amd64"):
        proc = subprocess.run([*base, "pull", "--tls-verify=false", "--platform", f"linux/{arch}",
                               f"{server.host}/multi/app:1"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        image_id = proc.stdout.strip().splitlines()[-1]
        info = json.loads(subprocess.run([*base, "inspect", "--type", "image", image_id], capture_output=True,
                                         text=True, check=True).stdout)
        assert info["OCIv1"]["architecture"] == arch
    subprocess.run([*base, "rmi", "--all", "--force"], capture_output=True)


def _push_layout(c: httpx.Client, layout: Path, name: str, repo: str, tag: str) -> str:
    """Push an image of a local OCI layout with plain HTTP calls (chunked uploads); returns its digest."""
    store = ContentStore(layout)
    index = json.loads((layout / "index.json").read_text())
    top = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == name)

    def blob(d: str) -> bytes:
        return store.read(Digest.parse(d), limit=1 << 30)

    def put_blob(d: str) -> None:
        data = blob(d)
        loc = c.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
        half = len(data) // 2
        assert c.patch(loc, content=data[:half], headers={"Content-Range": f"0-{max(half - 1, 0)}"}
                       if half else {}).status_code == 202
        assert c.put(f"{loc}?digest={d}", content=data[half:]).status_code == 201

    def put_manifest(d: str, media_type: str, ref: str) -> None:
        raw = blob(d)
        doc = json.loads(raw)
        for child in doc.get("manifests", []):
            put_manifest(child["digest"], child["mediaType"], child["digest"])
        for desc in [doc["config"], *doc["layers"]] if "config" in doc else []:
            put_blob(desc["digest"])
        r = c.put(f"/v2/{repo}/manifests/{ref}", content=raw, headers={"Content-Type": media_type})
        assert r.status_code == 201, r.text

    put_manifest(top["digest"], top["mediaType"], tag)
    return str(top["digest"])


# --- R6 concurrency ------------------------------------------------------------------------------------------------

def test_r6_parallel_same_blob_and_same_tag(live: Callable[..., Server]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = live()
    data = os.urandom(2 << 20)
    d = sha256(data)

    def upload(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            repo = f"par/r{i % 8}"
            if i % 2:  # monolithic
                return c.post(f"/v2/{repo}/blobs/uploads/?digest={d}", content=data).status_code
            loc = c.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
            half = len(data) // 2
            c.patch(loc, content=data[:half], headers={"Content-Range": f"0-{half - 1}"})
            return c.put(f"{loc}?digest={d}", content=data[half:]).status_code

    with ThreadPoolExecutor(24) as pool:
        assert list(pool.map(upload, range(24))) == [201] * 24
    store = ContentStore(server.root)
    assert hash_file(store.blob_path(
        Digest.parse(d)))[0].hex == d.split(":")[1]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        api = Api(c)
        manifests = [api.manifest("par/r0", [data], extra=str(i)) for i in range(16)]

    def put(raw: bytes) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            return Api(c).put_manifest("par/r0", "same", raw).status_code

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(put, manifests)) == [201] * 16
    with httpx.Client(base_url=server.url) as c:
        final = c.get("/v2/par/r0/manifests/same")
        assert final.status_code == 200 and final.content in manifests
        assert final.headers["docker-content-digest"] == sha256(final.content)
        for i in range(8):
            assert sha256(c.get(f"/v2/par/r{i}/blobs/{d}").content) == d


# --- F3 crash consistency --------------------------------------------------------------------------------------

def _verify_served(server: Server, images: dict[str, bytes]) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for ref, raw in images.items():
            repo, _, tag = ref.rpartition(":")
            r = c.get(f"/v2/{repo}/manifests/{tag}")
            assert r.status_code == 200 and r.content == raw, ref
            doc = json.loads(raw)
            for desc in [doc["config"], *doc["layers"]]:
                b = c.get(f"/v2/{repo}/blobs/{desc['digest']}")
                assert b.status_code == 200 and sha256(b.content) == desc["digest"]


@pytest.mark.slow
def test_f3_sigkill_during_pushes_then_restart(tmp_path: Path) -> None:
    root = tmp_path / "store"
    done: dict[str, bytes] = {}
    for round_ in range(3):
        server = start_server(root)
        stop = threading.Event()

        def pusher(worker: int, server: Server = server, round_: int = round_,
                   stop: threading.Event = stop) -> None:
            with httpx.Client(base_url=server.url, timeout=10) as c:
                api = Api(c)
                i = 0
                while not stop.is_set():
                    repo, tag = f"crash/w{worker}", f"r{round_}-{i}"
                    try:
                        raw = api.manifest(repo, [os.urandom(150_000), os.urandom(3000)])
                        r = api.put_manifest(repo, tag, raw)
                    except (httpx.HTTPError, AssertionError):
                        return
                    if r.status_code == 201:
                        done[f"{repo}:{tag}"] = raw
                    i += 1

        def chunker(server: Server = server, stop: threading.Event = stop) -> None:  # in flight at the kill
            with httpx.Client(base_url=server.url, timeout=10) as c:
                try:
                    loc = c.post("/v2/crash/big/blobs/uploads/").headers["location"]
                    while not stop.is_set():
                        c.patch(loc, content=os.urandom(256 << 10))
                except httpx.HTTPError:
                    return

        threads = [threading.Thread(target=pusher, args=(w,)) for w in range(3)] + [threading.Thread(target=chunker)]
        for t in threads:
            t.start()
        time.sleep(0.6 + 0.4 * round_)
        server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=20)
        server = start_server(root)
        try:
            with contextlib.closing(sqlite3.connect(root / "registry.db")) as db:  # sessions survive a restart,
                rows = {r[0] for r in db.execute("SELECT id FROM uploads")}   # data without a row does not
            assert {p.name for p in (root / "registry" / "uploads").iterdir()} <= rows, "orphan upload data survived"
            _verify_served(server, done)
        finally:
            server.stop()
    assert len(done) >= 3
    store = ContentStore(root)
    assert scrub(store, repair=False) == []
    for d, _ in store.list():
        assert hash_file(store.blob_path(d))[0] == d


# --- F1 GC under load -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_f1_gc_under_load_never_201_then_404(live: Callable[..., Server]) -> None:
    server = live()
    store = ContentStore(server.root)
    done: dict[str, bytes] = {}
    refused = [0]
    deadline = time.monotonic() + 4

    def pusher(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=20) as c:
            api = Api(c)
            i = 0
            while time.monotonic() < deadline:
                repo = f"load/w{worker}"
                raw = api.manifest(repo, [os.urandom(20_000)])
                r = api.put_manifest(repo, f"t{i}", raw)
                if r.status_code == 201:
                    done[f"{repo}:t{i}"] = raw
                else:  # GC (grace 0) removed a blob between upload and manifest: a clean 400
                    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
                    refused[0] += 1
                i += 1

    threads = [threading.Thread(target=pusher, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    runs = 0
    while time.monotonic() < deadline:
        collect_garbage(store, grace=0)  # the most aggressive setting, concurrently with pushes
        runs += 1
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert runs >= 2 and len(done) >= 1 and len(done) + refused[0] >= 8
    _verify_served(server, done)


# --- R16 TLS ---------------------------------------------------------------------------------------------------

def _make_cert(folder: Path, name: str, ca: tuple[Path, Path] | None = None) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    if ca is None:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    else:
        csr = folder / f"{name}.csr"
        subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
                        "-CAcreateserial", "-out", str(cert), "-days", "2"], check=True, capture_output=True)
    return key, cert


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_r16_tls_minimum_and_mtls(tmp_path: Path, live: Callable[..., Server]) -> None:
    key, cert = _make_cert(tmp_path, "server")
    ok = ssl.create_default_context(cafile=str(cert))
    server = live(None, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https", verify=ok)
    host, port = server.host.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s, \
            ok.wrap_socket(s, server_hostname=host) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert httpx.get(f"{server.url}/v2/", verify=ok).status_code == 200
    assert tls_context(cert, key).minimum_version == ssl.TLSVersion.TLSv1_2
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, OSError)), socket.create_connection((host, int(port)), timeout=5) as s, \
            old.wrap_socket(s):
        pass
    # plain HTTP to the TLS port fails cleanly, and the server keeps serving
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{server.host}/v2/", timeout=5)
    assert httpx.get(f"{server.url}/v2/", verify=ok).status_code == 200
    # mTLS: without a client certificate the handshake is refused
    ca_key, ca_cert = _make_cert(tmp_path, "ca")
    ckey, ccert = _make_cert(tmp_path, "client", (ca_key, ca_cert))
    mtls = live(None, "--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(ca_cert),
                scheme="https", wait=False)
    deadline = time.monotonic() + 20
    with_cert = ssl.create_default_context(cafile=str(cert))
    with_cert.load_cert_chain(str(ccert), str(ckey))
    while True:
        try:
            assert httpx.get(f"{mtls.url}/v2/", verify=with_cert, timeout=2).status_code == 200
            break
        except httpx.ConnectError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{mtls.url}/v2/", verify=ok, timeout=5)


# --- F4 timeouts and resource exhaustion -------------------------------------------------------------------------

def test_f4_header_and_body_timeouts(live: Callable[..., Server]) -> None:
    server = live(None, "--header-timeout", "1s", "--body-timeout", "1s")
    host, port = server.host.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:  # slowloris: never finishes the head
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        assert s.recv(100) == b""  # closed by the server
        assert time.monotonic() - start < 5
    with socket.create_connection((host, int(port)), timeout=10) as s:  # a body that stalls
        s.sendall(b"POST /v2/app/blobs/uploads/?digest=" + sha256(b"x" * 100).encode() +
                  b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        start = time.monotonic()
        reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
        assert time.monotonic() - start < 5
    with socket.create_connection((host, int(port)), timeout=10) as s:  # idle after connecting
        start = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - start < 5
    assert not list(ContentStore(server.root).ingest_dir.iterdir())
    assert httpx.get(f"{server.url}/v2/").status_code == 200


def test_f4_abandoned_session_expires(live: Callable[..., Server]) -> None:
    server = live(None, "--upload-ttl", "1s")
    with httpx.Client(base_url=server.url) as c:
        loc = c.post("/v2/app/blobs/uploads/").headers["location"]
        assert c.patch(loc, content=b"abandoned").status_code == 202
        deadline = time.monotonic() + 10
        while c.get(loc).status_code != 404:
            assert time.monotonic() < deadline, "session never expired"
            time.sleep(0.2)
        assert c.patch(loc, content=b"more").status_code == 404
    assert not list((server.root / "registry" / "uploads").iterdir())


def test_f4_huge_manifest_stream_is_cut_off(live: Callable[..., Server]) -> None:
    server = live()

    def body():  # 256 MiB without Content-Length: refused after 4 MiB, never buffered
        chunk = b" " * (1 << 20)
        for _ in range(256):
            yield chunk

    start = time.monotonic()
    try:
        r = httpx.put(f"{server.url}/v2/app/manifests/1", content=body(),
                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, timeout=30)
        assert r.status_code == 413
    except httpx.HTTPError:
        pass  # the server may close the connection while we are still sending: also a refusal
    assert time.monotonic() - start < 20
    assert httpx.get(f"{server.url}/v2/").status_code == 200


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_f4_enospc_during_upload(tmp_path: Path, live: Callable[..., Server]) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {proc.stderr.decode().strip()}")
    try:
        server = live(mnt / "store")
        with httpx.Client(base_url=server.url, timeout=30) as c:
            api = Api(c)
            raw, _ = api.push_image("app", "1", [os.urandom(1000)])
            big = os.urandom(4 << 20)
            r = c.post(f"/v2/app/blobs/uploads/?digest={sha256(big)}", content=big)
            assert r.status_code == 507 and r.json()["errors"][0]["code"] == "UNKNOWN"
            assert str(mnt) not in r.text
            loc = c.post("/v2/app/blobs/uploads/").headers["location"]
            r = c.patch(loc, content=big)
            assert r.status_code == 507
            assert c.get(loc).headers["range"] == "0-0"  # rolled back, nothing half-written is kept
            c.delete(loc)
            assert c.get("/v2/app/manifests/1").content == raw  # reads keep working
            assert c.head(f"/v2/app/blobs/{sha256(big)}").status_code == 404
        store = ContentStore(mnt / "store", create=False)
        assert not list(store.ingest_dir.iterdir())
        assert scrub(store, repair=False) == []
        server.stop()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# --- CLI ----------------------------------------------------------------------------------------------------------

def _serve(root: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "polyarch", "registry", "serve", *args], env=cli_env(root),
                          capture_output=True, text=True, timeout=timeout)


def test_cli_refusals(tmp_path: Path, live: Callable[..., Server]) -> None:
    root = tmp_path / "store"
    for args, needle in ((["--htpasswd", str(tmp_path / "missing")], "refusing to start"),
                         (["--addr", "nope"], "invalid --addr"), (["--tls-cert", "x"], "go together"),
                         (["--token-auth"], "needs --htpasswd"), (["--upload-ttl", "soon"], "invalid duration")):
        proc = _serve(root, *args)
        assert proc.returncode != 0, args
        assert needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    bad = tmp_path / "md5"
    bad.write_text(subprocess.run(["htpasswd", "-nbm", "u", "p"], capture_output=True, text=True).stdout
                   if shutil.which("htpasswd") else "u:$apr1$x$y\n")
    proc = _serve(root, "--htpasswd", str(bad))
    assert proc.returncode != 0 and "non-bcrypt" in proc.stderr
    server = live(root)
    proc = _serve(root, "--addr", f"127.0.0.1:{int(server.host.split(':')[1]) + 1}")
    assert proc.returncode != 0 and "already serving" in proc.stderr


def test_cli_gc(tmp_path: Path, live: Callable[..., Server]) -> None:
    server = live()
    with httpx.Client(base_url=server.url) as c:
        api = Api(c)
        api.push_image("app", "1")
        orphan = api.push_blob("app", os.urandom(100))
    env = cli_env(server.root)
    run = [sys.executable, "-m", "polyarch", "registry", "gc"]
    proc = subprocess.run([*run, "--dry-run", "--grace", "0s"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and f"would delete {orphan}" in proc.stdout
    proc = subprocess.run([*run, "--grace", "1h"], env=env, capture_output=True, text=True)
    assert "deleted 0 blobs" in proc.stdout and "1 unreferenced blobs kept" in proc.stdout
    proc = subprocess.run([*run, "--grace", "0", "--scrub"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and f"deleted {orphan}" in proc.stdout
    with httpx.Client(base_url=server.url) as c:
        assert c.head(f"/v2/app/blobs/{orphan}").status_code == 404
        assert c.get("/v2/app/manifests/1").status_code == 200
    proc = subprocess.run([*run, "--grace", "later"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid duration" in proc.stderr


def test_addr_parsing_and_exposure_warning() -> None:
    assert parse_addr("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_addr("[::1]:5000") == ("::1", 5000)
    assert parse_addr("localhost:80") == ("localhost", 80)
    for loopback in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert exposure_warning(loopback, False) is None
    assert "without authentication" in (exposure_warning("0.0.0.0", False) or "")
    assert exposure_warning("0.0.0.0", True) is None
    assert exposure_warning("192.168.1.10", False)


def test_sigterm_is_a_clean_stop(live: Callable[..., Server]) -> None:
    server = live()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutdown
    assert "Traceback" not in server.log.read_text()
