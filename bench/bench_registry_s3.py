"""Benchmark: ``polyarch registry serve`` with the ``s3`` driver vs Debian's docker-registry (distribution 2.8.2) on
the same S3 store, skopeo as the client.

One run starts a throwaway Ceph RGW (``tests/registry/rgw.py``) and PostgreSQL (``tests/registry/pg.py``), then, in
alternating order each round, three servers on the same bucket (each under its own ``rootdirectory``):

* ``docker-registry``: ``storage.s3`` on the RGW, ``cache.blobdescriptor: inmemory`` (as registry:2's own config);
* ``polyarch-pg``: ``polyarch registry serve --config`` with ``storage.s3`` and ``database: postgresql://…``;
* ``polyarch-sqlite``: the same with the default SQLite metadata.

Each round, for each server: skopeo pushes a 629 MB image of 3 incompressible layers (an OCI layout,
``skopeo copy oci:… docker://…``), pulls it back to a ``dir:`` with blob GETs redirected to presigned RGW URLs
(``redirect on``, distribution's default) and, after a restart with ``storage.redirect.disable: true``, streamed
through the server (``redirect off``; also the layer blobs to ``curl -o /dev/null``: the server's sending rate
without skopeo's hashing and disk writes); manifest GETs per second with 16 concurrent keep-alive clients (ApacheBench
``ab -k -c 16``, else httpx threads; the same for every server). The round's objects are then deleted and RGW's gc run, so every push
starts empty. Last, two polyarch replicas (same bucket, same PostgreSQL) vs one: manifest GETs/s with the clients
spread round-robin. Prints MB/s, requests/s, medians over the rounds and the ratios polyarch / docker-registry
(targets: >= 1.2x push and pull MB/s, >= 1.0x manifest GETs/s).

    PYTHONPATH=src python3 bench/bench_registry_s3.py [--layer-mb 200] [--layers 3] [--rounds 3] [--seconds 8]

Figures, run C (2026-12-06 15:21, 2 cores, the other sessions idle: load average 0.2–6.7 during the run, 3 rounds,
medians; ``python3 bench/bench_registry_s3.py --rounds 3``; part bodies SHA-256-signed, as over any plain-http
endpoint), MB/s unless said:

    server            push   pull redirect  pull stream  blob GET curl  manifest GETs/s (ab -k -c 16)
    C docker-registry  46.5  181.2          182.7         936            122
    C polyarch-pg     139.8  230.4          232.2        1020           2268
    C polyarch-sqlite 140.1  251.7          230.1        1040           5890
    C ratio pg/sqlite  3.00x / 3.01x  1.27x / 1.39x  1.27x / 1.26x  1.09x / 1.11x  18.6x / 48.3x
    replicas (polyarch-pg, manifest GETs/s, ab split 8+8): one 2297, two 5094 (2.22x)

Earlier runs with unsigned part bodies, under other sessions' load (A: 3.7–6.3, B: 4–15): push 3.70x / 3.67x
(A), 3.08x / 2.61x (B); pull redirect 1.09x / 1.00x (A), 0.98x / 0.95x (B); pull stream 1.15x / 1.08x (A),
1.16x / 0.99x (B); replicas 0.97x (A) and 1.73x (B). Under load the pulls sit on skopeo's own CPU (below).

Before this benchmark's changes to the s3 driver (same run shape, manifest GETs with httpx threads): push 57.7 /
60.6 vs 31.6 (1.82x / 1.91x); boto3's managed copy (8 MiB UploadPartCopy parts) and the leftover object
re-uploaded at the end were the costs (storage/s3.py; payload signing, kept over http, costs the rest). Under load
pulls are not the server's to win: with redirects on, RGW serves
both (the same presigned GET); with redirects off skopeo is the bottleneck (1.1 s of its own CPU per 300 MB pulled:
digest and disk writes) while both servers stream 650–1000 MB/s to curl, so the 1.2x pull target is out of reach
of any server on this machine. Parallel ranged S3 GETs for streamed pulls were tried and were slower (490–650 vs
880 MiB/s for one stream); READ_CHUNK 1/4/16 MiB made no difference beyond noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.registry.pg import Postgres, start_postgres  # noqa: E402
from tests.registry.refregistry import RefRegistry, free_port  # noqa: E402
from tests.registry.rgw import Rgw, start_rgw  # noqa: E402
from tests.registry.server.conftest import Server, start_server  # noqa: E402

from polyarch.content.images import ImageStore  # noqa: E402
from polyarch.content.store import ContentStore  # noqa: E402
from polyarch.oci.spec import ContainerConfig, Descriptor, ImageConfig, MediaType  # noqa: E402

ACCEPT = ", ".join([MediaType.OCI_INDEX, MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST])
BUCKET = "bench"
REF = "bench/big:1"


def make_image(root: Path, layers: int, layer_size: int) -> int:
    """A content store at ``root`` (also an OCI layout) with ``bench:1``: ``layers`` layers of incompressible
    bytes. Returns the layers' total size."""
    store = ContentStore(root)
    descs = []
    for _ in range(layers):
        with store.writer() as w:
            left = layer_size
            while left:
                n = min(left, 8 << 20)
                w.write(os.urandom(n))
                left -= n
            digest, size = w.commit()
        descs.append(Descriptor(MediaType.OCI_LAYER, digest, size))
    config = ImageConfig("amd64", "linux", diff_ids=tuple(d.digest for d in descs), config=ContainerConfig())
    images = ImageStore(store)
    images.set_name("bench:1", images.put_image(config, descs))
    return sum(d.size for d in descs)


def s3_client(rgw: Rgw) -> Any:
    import boto3
    import botocore.config

    return boto3.client("s3", endpoint_url=rgw.endpoint, aws_access_key_id=rgw.access_key,
                        aws_secret_access_key=rgw.secret_key, region_name="us-east-1",
                        config=botocore.config.Config(s3={"addressing_style": "path"}))


def empty_prefix(rgw: Rgw, prefix: str) -> None:
    """Delete every object and multipart upload under ``prefix``, then let RGW's gc free the space now."""
    s3 = s3_client(rgw)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=BUCKET, Prefix=prefix):
        for up in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=BUCKET, Key=up["Key"], UploadId=up["UploadId"])
    subprocess.run(["radosgw-admin", "-c", str(rgw.conf), "-n", "client.rgw", "gc", "process", "--include-all"],
                   capture_output=True, timeout=300, check=False)


class DockerRegistry:
    """docker-registry on the RGW bucket under ``/<root>``."""

    def __init__(self, work: Path, rgw: Rgw, root: str, *, redirect: bool) -> None:
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = work / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            "storage:\n  s3:\n"
            f"    region: us-east-1\n    regionendpoint: {rgw.endpoint}\n    bucket: {BUCKET}\n"
            f"    accesskey: {rgw.access_key}\n    secretkey: {rgw.secret_key}\n"
            f"    secure: false\n    v4auth: true\n    rootdirectory: /{root}\n"
            "  cache:\n    blobdescriptor: inmemory\n  delete:\n    enabled: true\n"
            f"  redirect:\n    disable: {'false' if redirect else 'true'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: bench-secret\n")
        log = open(work / "registry.log", "ab")
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # the AWS SDK in it panics on one
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
        log.close()
        self.ref = RefRegistry(f"127.0.0.1:{port}", work, proc)
        self.host = self.ref.host
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(work / 'registry.log').read_text()[:1200]}")
            try:
                httpx.get(f"{self.ref.url}/v2/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.ref.stop()
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        self.ref.stop()


class Polyarch:
    """``polyarch registry serve`` with the s3 driver on the RGW bucket under ``<root>``; PostgreSQL when
    ``database`` is given, else SQLite under ``work``."""

    def __init__(self, work: Path, rgw: Rgw, root: str, *, redirect: bool, database: str | None,
                 replicas: int = 1) -> None:
        work.mkdir(parents=True, exist_ok=True)
        config = work / f"registry-{'on' if redirect else 'off'}.yaml"
        config.write_text(
            "storage:\n  s3:\n"
            f"    regionendpoint: {rgw.endpoint}\n    bucket: {BUCKET}\n    rootdirectory: {root}\n"
            f"    accesskey: {rgw.access_key}\n    secretkey: {rgw.secret_key}\n    secure: false\n"
            "    forcepathstyle: true\n"
            f"  redirect:\n    disable: {'false' if redirect else 'true'}\n"
            + (f"database: {database}\n" if database else ""))
        self.servers: list[Server] = []
        try:
            for i in range(replicas):
                self.servers.append(start_server(work / f"r{i}" / "store", "--config", str(config)))
        except BaseException:
            self.stop()
            raise
        self.host = self.servers[0].host

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


def skopeo(*args: str) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(["skopeo", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)} failed: {res.stderr[-1500:]}")
    return time.perf_counter() - t0


def manifest_rate(hosts: list[str], seconds: float, clients: int) -> float:
    """Manifest GETs/s of ``clients`` concurrent keep-alive clients, split evenly over ``hosts``: ApacheBench
    (``ab``, a C client: the server is measured, not the client), else httpx threads."""
    if shutil.which("ab") is not None:
        return _ab_rate(hosts, seconds, clients)
    return _httpx_rate(hosts, seconds, clients)


def _ab_rate(hosts: list[str], seconds: float, clients: int) -> float:
    repo, tag = REF.split(":")
    procs = [subprocess.Popen(["ab", "-k", "-q", "-c", str(max(clients // len(hosts), 1)), "-t", f"{seconds:g}",
                               "-n", "100000000", "-H", f"Accept: {ACCEPT}",
                               f"http://{host}/v2/{repo}/manifests/{tag}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for host in hosts]
    total = 0.0
    for host, proc in zip(hosts, procs, strict=True):
        out, err = proc.communicate()
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        failed = int(fields.get("Failed requests", "1").split()[0]) + int(fields.get("Non-2xx responses", "0"))
        if proc.returncode != 0 or failed or "Requests per second" not in fields:
            raise RuntimeError(f"ab against {host}: {failed} failed requests {err[-500:]}")
        total += float(fields["Requests per second"].split()[0])
    return total


def _httpx_rate(hosts: list[str], seconds: float, clients: int) -> float:
    repo, tag = REF.split(":")
    stop = time.monotonic() + seconds
    counts = [0] * clients
    errors = [0] * clients

    def worker(i: int) -> None:
        with httpx.Client(headers={"Accept": ACCEPT}, timeout=30) as c:
            url = f"http://{hosts[i % len(hosts)]}/v2/{repo}/manifests/{tag}"
            while time.monotonic() < stop:
                if c.get(url).status_code == 200:
                    counts[i] += 1
                else:
                    errors[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if sum(errors):
        raise RuntimeError(f"{sum(errors)} failed manifest GETs against {hosts}")
    return sum(counts) / elapsed


def blob_get_rate(host: str) -> float:
    """MB/s of the image's layer blobs streamed by the server (redirects off) to curl, which discards them: the
    server's sending rate without skopeo's hashing and disk writes."""
    repo, tag = REF.split(":")
    manifest = httpx.get(f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}, timeout=30).json()
    total = 0
    t0 = time.perf_counter()
    for layer in manifest["layers"]:
        res = subprocess.run(["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}",
                              f"http://{host}/v2/{repo}/blobs/{layer['digest']}"], capture_output=True, text=True)
        if res.returncode != 0 or int(res.stdout) != layer["size"]:
            raise RuntimeError(f"curl of {layer['digest']} from {host} failed: {res.returncode} {res.stdout}")
        total += layer["size"]
    return total / 1e6 / (time.perf_counter() - t0)


@dataclass
class Env:
    work: Path
    rgw: Rgw
    pg: Postgres
    layout: Path
    size_mb: float
    seconds: float
    clients: int


def _starter(name: str, env: Env, root: str, database: str | None) -> Callable[[bool], Any]:
    wd = env.work / root

    def start(redirect: bool) -> Any:
        if name == "docker-registry":
            return DockerRegistry(wd, env.rgw, root, redirect=redirect)
        return Polyarch(wd, env.rgw, root, redirect=redirect, database=database)

    return start


def one_round(env: Env, name: str, rnd: int) -> dict[str, float]:
    root = f"{name}-{rnd}"
    database = env.pg.database() if name == "polyarch-pg" else None
    start = _starter(name, env, root, database)
    out: dict[str, float] = {}
    pulled = env.work / "pulled"
    try:
        server = start(True)
        try:
            host = server.host
            t = skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{env.layout}:bench:1",
                       f"docker://{host}/{REF}")
            out["push"] = env.size_mb / t
            t = skopeo("copy", "--src-tls-verify=false", f"docker://{host}/{REF}", f"dir:{pulled}")
            out["pull-redirect"] = env.size_mb / t
            shutil.rmtree(pulled, ignore_errors=True)
            out["manifest"] = manifest_rate([host], env.seconds, env.clients)
        finally:
            server.stop()
        server = start(False)
        try:
            t = skopeo("copy", "--src-tls-verify=false", f"docker://{server.host}/{REF}", f"dir:{pulled}")
            out["pull-stream"] = env.size_mb / t
            shutil.rmtree(pulled, ignore_errors=True)
            out["get-stream"] = blob_get_rate(server.host)
        finally:
            server.stop()
    finally:
        shutil.rmtree(pulled, ignore_errors=True)
        empty_prefix(env.rgw, root)
    return out


def replicas(env: Env, rounds: int) -> dict[int, float]:
    """Manifest GETs/s through one and two polyarch replicas on the same bucket and PostgreSQL."""
    root = "polyarch-replicas"
    poly = Polyarch(env.work / root, env.rgw, root, redirect=True, database=env.pg.database(), replicas=2)
    rates: dict[int, list[float]] = {1: [], 2: []}
    try:
        skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{env.layout}:bench:1",
               f"docker://{poly.host}/{REF}")
        hosts = [s.host for s in poly.servers]
        for _ in range(rounds):
            for n in (1, 2):
                rates[n].append(manifest_rate(hosts[:n], env.seconds, env.clients))
        print(f"replicas: one {rates[1]}, two {rates[2]}", flush=True)
    finally:
        poly.stop()
        empty_prefix(env.rgw, root)
    return {n: statistics.median(v) for n, v in rates.items()}


def run(layer_mb: int, layers: int, rounds: int, seconds: float, clients: int, keep: bool = False) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-registry-s3-"))
    pg = start_postgres()
    rgw: Rgw | None = None
    try:
        size = make_image(work / "layout", layers, layer_mb << 20)
        rgw = start_rgw(work / "rgw")
        s3_client(rgw).create_bucket(Bucket=BUCKET)
        env = Env(work, rgw, pg, work / "layout", size / 1e6, seconds, clients)
        print(f"image: {layers} layers, {size / 1e6:.0f} MB; load {os.getloadavg()}", flush=True)
        names = ("docker-registry", "polyarch-pg", "polyarch-sqlite")
        results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        for rnd in range(rounds):  # alternate the order: the machine is shared
            for name in (names if rnd % 2 == 0 else tuple(reversed(names))):
                try:
                    r = one_round(env, name, rnd)
                except RuntimeError as exc:
                    raise RuntimeError(f"{name}, round {rnd + 1}: {exc}") from exc
                results[name].append(r)
                print(f"round {rnd + 1} {name:16} " + "  ".join(f"{k} {v:7.1f}" for k, v in r.items())
                      + f"   load {os.getloadavg()[0]:.2f}", flush=True)
        med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in results.items()}
        for name, m in med.items():
            print(f"median {name:16} push {m['push']:6.1f} MB/s  pull(redirect) {m['pull-redirect']:6.1f} MB/s  "
                  f"pull(stream) {m['pull-stream']:6.1f} MB/s  blob GET(curl) {m['get-stream']:6.1f} MB/s  "
                  f"manifest GET {m['manifest']:6.0f}/s ({clients} clients)")
        d = med["docker-registry"]
        for name in names[1:]:
            p = med[name]
            print(f"ratio {name}/docker-registry: push {p['push'] / d['push']:.2f}x  "
                  f"pull(redirect) {p['pull-redirect'] / d['pull-redirect']:.2f}x  "
                  f"pull(stream) {p['pull-stream'] / d['pull-stream']:.2f}x  "
                  f"blob GET(curl) {p['get-stream'] / d['get-stream']:.2f}x  "
                  f"manifest GET {p['manifest'] / d['manifest']:.2f}x   (targets 1.2x, 1.2x, 1.2x, -, 1.0x)")
        rep = replicas(env, rounds)
        print(f"polyarch-pg replicas: one {rep[1]:.0f}/s, two {rep[2]:.0f}/s, two/one {rep[2] / rep[1]:.2f}x   "
              f"load {os.getloadavg()[0]:.2f}")
        print(json.dumps({"median": med, "replicas": rep}))
    finally:
        if rgw is not None:
            rgw.stop()
        pg.destroy()
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer-mb", type=int, default=200, help="MiB per layer (3 x 200 MiB = 629 MB)")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs) at the end")
    args = ap.parse_args()
    for tool in ("skopeo", "docker-registry", "radosgw"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    run(args.layer_mb, args.layers, args.rounds, args.seconds, args.clients, args.keep)


if __name__ == "__main__":
    main()
