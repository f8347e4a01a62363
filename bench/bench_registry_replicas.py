"""Benchmark: one vs two ``polyarch registry serve`` replicas on the same S3 bucket (a throwaway Ceph RGW) and the
same PostgreSQL (a throwaway cluster), manifest GETs per second with 16 concurrent clients (httpx, one client per
thread, spread round-robin over the replicas). Prints requests/s and the ratio two / one.

    PYTHONPATH=src python bench/bench_registry_replicas.py [--seconds 10] [--clients 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.registry.pg import start_postgres  # noqa: E402
from tests.registry.rgw import start_rgw  # noqa: E402
from tests.registry.server.conftest import Server, sha256, start_server  # noqa: E402

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push_image(url: str) -> None:
    layer = b"x" * 4096
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(cfg),
                                      "size": len(cfg)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": sha256(layer), "size": len(layer)}]}).encode()
    with httpx.Client(base_url=url, timeout=60) as c:
        for blob in (layer, cfg):
            assert c.post(f"/v2/bench/app/blobs/uploads/?digest={sha256(blob)}", content=blob).status_code == 201
        assert c.put("/v2/bench/app/manifests/v1", content=manifest,
                     headers={"Content-Type": MANIFEST}).status_code == 201


def manifest_rate(urls: list[str], seconds: float, clients: int) -> float:
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        with httpx.Client(base_url=urls[i % len(urls)], timeout=30) as c:
            while time.monotonic() < stop:
                r = c.get("/v2/bench/app/manifests/v1", headers={"Accept": MANIFEST})
                assert r.status_code == 200
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def run(seconds: float, clients: int, rounds: int) -> None:
    import boto3
    import botocore.config

    work = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    pg = start_postgres()
    rgw = start_rgw(work / "rgw")
    servers: list[Server] = []
    try:
        boto3.client("s3", endpoint_url=rgw.endpoint, aws_access_key_id=rgw.access_key,
                     aws_secret_access_key=rgw.secret_key, region_name="us-east-1",
                     config=botocore.config.Config(s3={"addressing_style": "path"})).create_bucket(Bucket="bench")
        config = work / "registry.yaml"
        config.write_text(f"storage:\n  s3:\n    regionendpoint: {rgw.endpoint}\n    bucket: bench\n"
                          f"    accesskey: {rgw.access_key}\n    secretkey: {rgw.secret_key}\n    secure: false\n"
                          f"    forcepathstyle: true\ndatabase: {pg.database()}\n")
        servers = [start_server(work / f"r{i}" / "store", "--config", str(config)) for i in range(2)]
        push_image(servers[0].url)
        urls = [s.url for s in servers]
        best = {1: 0.0, 2: 0.0}
        for rnd in range(rounds):
            for n in (1, 2):
                rate = manifest_rate(urls[:n], seconds, clients)
                best[n] = max(best[n], rate)
                print(f"round {rnd + 1} replicas {n}: {rate:8.0f} manifest GETs/s ({clients} clients)")
        print(f"best one replica {best[1]:.0f}/s, two replicas {best[2]:.0f}/s, ratio {best[2] / best[1]:.2f}")
    finally:
        for s in servers:
            s.stop()
        rgw.stop()
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    run(args.seconds, args.clients, args.rounds)


if __name__ == "__main__":
    main()
