"""Benchmark: polyarch's embedded registry vs Debian's docker-registry (distribution 2.8.2), same machine,
same client.

1. large-blob push and pull throughput with skopeo (one image with one ~500 MB layer, ``--preserve-digests``);
2. manifest GETs per second with 16 concurrent clients (a Python httpx thread pool, one client per thread).

Both registries run on loopback ports with fresh temp storage. Prints MB/s, requests/s and the ratios
polyarch / docker-registry (targets: >= 1.0 for throughput, >= 0.5 for manifest GETs).

    PYTHONPATH=src python bench/bench_registry_server.py [--size-mb 500] [--seconds 10] [--clients 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.registry.refregistry import free_port, start_registry  # noqa: E402

from polyarch.content.images import ImageStore  # noqa: E402
from polyarch.content.store import ContentStore  # noqa: E402
from polyarch.oci.spec import ContainerConfig, Descriptor, ImageConfig, MediaType  # noqa: E402

ACCEPT = ", ".join([MediaType.OCI_INDEX, MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST])


def make_source(root: Path, size: int) -> None:
    """An OCI layout with ``bench:1``: one layer of ``size`` incompressible bytes."""
    store = ContentStore(root)
    with store.writer() as w:
        left = size
        while left:
            n = min(left, 8 << 20)
            w.write(os.urandom(n))
            left -= n
        digest, n = w.commit()
    layer = Descriptor(MediaType.OCI_LAYER, digest, n)
    config = ImageConfig("amd64", "linux", diff_ids=(digest,), config=ContainerConfig())
    images = ImageStore(store)
    images.set_name("bench:1", images.put_image(config, [layer]))


class Polyarch:
    def __init__(self, workdir: Path) -> None:
        self.root = workdir / "store"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        env = {**os.environ, "POLYARCH_ROOT": str(self.root), "PYTHONPATH": str(REPO / "src")}
        self.log = open(workdir / "polyarch.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "polyarch", "registry", "serve", "--addr", self.host],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://{self.host}/v2/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("polyarch registry did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def skopeo(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["skopeo", *args], check=True, capture_output=True)
    return time.perf_counter() - t0


def manifest_rate(host: str, repo: str, seconds: float, clients: int) -> float:
    url = f"http://{host}/v2/{repo}/manifests/1"
    stop = time.monotonic() + seconds
    counts = [0] * clients
    errors = [0] * clients

    def worker(i: int) -> None:
        with httpx.Client(headers={"Accept": ACCEPT}, timeout=10) as c:
            while time.monotonic() < stop:
                r = c.get(url)
                if r.status_code == 200:
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
        raise RuntimeError(f"{sum(errors)} failed manifest GETs against {host}")
    return sum(counts) / elapsed


def run(size_mb: int, seconds: float, clients: int, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    try:
        src = work / "src"
        print(f"making a {size_mb} MB layer …", flush=True)
        make_source(src, size_mb << 20)
        results: dict[str, dict[str, float]] = {}
        order = ("docker-registry", "polyarch")
        for rnd in range(rounds):  # alternate the servers; keep each one's best figure (the machine is shared)
            for name in order if rnd % 2 == 0 else tuple(reversed(order)):
                wd = work / f"{name}-{rnd}"
                wd.mkdir()
                server = start_registry(wd / "ref") if name == "docker-registry" else Polyarch(wd)
                try:
                    host = server.host
                    push = skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{src}:bench:1",
                                  f"docker://{host}/bench/big:1")
                    pull = skopeo("copy", "--preserve-digests", "--src-tls-verify=false",
                                  f"docker://{host}/bench/big:1", f"oci:{wd / 'pulled'}:x")
                    shutil.rmtree(wd / "pulled", ignore_errors=True)
                    rate = manifest_rate(host, "bench/big", seconds, clients)
                finally:
                    server.stop()
                    shutil.rmtree(wd, ignore_errors=True)
                print(f"round {rnd + 1} {name:16} push {size_mb / push:8.1f} MB/s   pull {size_mb / pull:8.1f} MB/s   "
                      f"manifest GET {rate:8.0f} req/s ({clients} clients)", flush=True)
                best = results.setdefault(name, {"push": 0.0, "pull": 0.0, "manifest": 0.0})
                best["push"] = max(best["push"], size_mb / push)
                best["pull"] = max(best["pull"], size_mb / pull)
                best["manifest"] = max(best["manifest"], rate)
        for name, r in results.items():
            print(f"best {name:16} push {r['push']:8.1f} MB/s   pull {r['pull']:8.1f} MB/s   "
                  f"manifest GET {r['manifest']:8.0f} req/s")
        p, d = results["polyarch"], results["docker-registry"]
        print(f"ratio polyarch/docker-registry: push {p['push'] / d['push']:.2f}x (target >= 1.0)   "
              f"pull {p['pull'] / d['pull']:.2f}x (target >= 1.0)   "
              f"manifest GET {p['manifest'] / d['manifest']:.2f}x (target >= 0.5)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for tool in ("skopeo", "docker-registry"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    run(args.size_mb, args.seconds, args.clients, args.rounds)


if __name__ == "__main__":
    main()
