#!/usr/bin/env python3
"""Cost of ``--sbom --provenance=mode=max`` on a cold ``polyarch build`` (no build cache; base images in the store).

    python bench/bench_attest.py --store STORE [--runs 5] [--image base/golang:1.19] [--platforms linux/amd64]

Each run copies STORE to a fresh root (so the build cache is empty), builds a 2-instruction app FROM ``--image``
(a Debian-like dpkg status + a Python METADATA copied in) with ``--load``, once plain and once with attestations,
alternating; prints the medians and the added fraction. The SBOM reads every layer of the final image, so the
cost grows with the base's size: busybox (3 MB) is the small case, Debian's Go toolchain (150 MB compressed,
with Go binaries whose build info is read) the large one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATUS = "".join(f"Package: pkg{i}\nStatus: install ok installed\nVersion: 1.{i}-1\nArchitecture: amd64\n\n"
                 for i in range(200))


def one(store: Path, ctx: Path, image_platforms: str, attest: bool, work: Path) -> float:
    root = work / f"root-{time.monotonic_ns()}"
    shutil.copytree(store, root, ignore=shutil.ignore_patterns(".complete", "ingest"), symlinks=True)
    (root / "ingest").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "polyarch", "build", "--platform", image_platforms, "-t", "app:1", "--load",
           "--progress", "quiet", str(ctx)]
    if attest:
        cmd[4:4] = ["--sbom", "--provenance=mode=max"]
    env = {**os.environ, "POLYARCH_ROOT": str(root), "SOURCE_DATE_EPOCH": "1700000000"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    took = time.perf_counter() - start
    shutil.rmtree(root, ignore_errors=True)
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--image", default="base/busybox:1")
    ap.add_argument("--platforms", default="linux/amd64,linux/arm64")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ctx = work / "ctx"
        ctx.mkdir()
        (ctx / "status").write_text(STATUS)
        (ctx / "METADATA").write_text("Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n")
        (ctx / "Dockerfile").write_text(f"FROM {args.image}\nCOPY status /var/lib/dpkg/status\n"
                                        "COPY METADATA /usr/lib/python3/dist-packages/r-2.31.0.dist-info/METADATA\n")
        plain, attested = [], []
        for _ in range(args.runs):
            plain.append(one(args.store, ctx, args.platforms, False, work))
            attested.append(one(args.store, ctx, args.platforms, True, work))
    p, a = statistics.median(plain), statistics.median(attested)
    print(f"{args.image} ({args.platforms}), cold build, median of {args.runs}: plain {p:.2f} s, "
          f"--sbom --provenance=mode=max {a:.2f} s, +{(a - p) / p * 100:.0f}% ({a - p:+.2f} s)")


if __name__ == "__main__":
    main()
