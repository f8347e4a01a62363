#!/usr/bin/env python3
"""Content-store ingest and import throughput, against openssl and tar measured in the same run.

    python3 bench/bench_ingest.py [--size-mib 1024]

1. Ingest of a SIZE file into the store (hash + write + fsync + rename), MB/s, beside `openssl dgst -sha256` of the
   same file (the hashing limit of this machine) and `cp` + `sync` (the write limit). Target: >= 0.8x openssl.
   Then a pull's shape: 8 blobs of SIZE/8 (layers) + 16 small ones (configs, manifests), one flush each vs one
   batch (``ContentStore.batch``: one syncfs), with `cp` + `sync` of the same files as the write limit.
2. `polyarch import` of a rootfs tar (half random, half compressible), gzip via isal, gzip via zlib (stdlib), zstd,
   beside `tar -c | gzip -1`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from polyarch.content.store import ContentStore


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def drop_caches() -> None:
    subprocess.run(["sync"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    args = ap.parse_args()
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="pa-bench-", dir="/var/tmp"))
    try:
        blob = work / "blob.bin"
        with open(blob, "wb") as f:
            chunk = os.urandom(16 << 20)
            for _ in range(size // len(chunk)):
                f.write(chunk)
        mb = size / 1e6
        # warm the page cache so every contender reads from memory
        subprocess.run(["cat", str(blob)], stdout=subprocess.DEVNULL)
        t_ssl = timed(lambda: subprocess.run(["openssl", "dgst", "-sha256", str(blob)], check=True,
                                             stdout=subprocess.DEVNULL))
        drop_caches()
        t_cp = timed(lambda: (shutil.copyfile(blob, work / "copy.bin"), subprocess.run(["sync"])))
        (work / "copy.bin").unlink()
        drop_caches()
        store = ContentStore(work / "store")

        def ingest() -> None:
            with open(blob, "rb") as f:
                store.ingest(f)

        t_ing = timed(ingest)
        print(f"ingest {args.size_mib} MiB")
        print(f"  openssl dgst -sha256   {mb / t_ssl:8.0f} MB/s")
        print(f"  cp + sync              {mb / t_cp:8.0f} MB/s")
        print(f"  polyarch ingest        {mb / t_ing:8.0f} MB/s   ratio vs openssl {t_ssl / t_ing:.2f}x, "
              f"vs cp+sync {t_cp / t_ing:.2f}x")

        # a pull's shape: several layers and small documents, one flush each vs one batch
        parts = [os.urandom(1 << 20) * (size // 8 >> 20) for _ in range(2)]
        blobs = [parts[i % 2] + i.to_bytes(4, "big") for i in range(8)] + \
            [os.urandom(4096) + i.to_bytes(4, "big") for i in range(16)]
        total = sum(map(len, blobs)) / 1e6

        def each(batched: bool) -> None:
            s = ContentStore(work / f"store-{'b' if batched else 'e'}")
            if batched:
                with s.batch() as b:
                    for data in blobs:
                        s.write(data, batch=b)
            else:
                for data in blobs:
                    s.write(data)

        def cp_sync() -> None:
            out = work / "cp"
            out.mkdir()
            for i, data in enumerate(blobs):
                (out / str(i)).write_bytes(data)
            subprocess.run(["sync"])

        drop_caches()
        t_cps = timed(cp_sync)
        drop_caches()
        t_each = timed(lambda: each(False))
        drop_caches()
        t_batch = timed(lambda: each(True))
        print(f"{len(blobs)} blobs, {total:.0f} MB (a pull's shape)")
        print(f"  write + sync           {total / t_cps:8.0f} MB/s")
        print(f"  one flush per blob     {total / t_each:8.0f} MB/s")
        print(f"  one batch (syncfs)     {total / t_batch:8.0f} MB/s   {t_each / t_batch:.2f}x the per-blob flushes")

        # import: a rootfs-like tar, half random (incompressible) and half text-like
        rootfs = work / "rootfs"
        rootfs.mkdir()
        half = size // 4
        (rootfs / "random.bin").write_bytes(os.urandom(half))
        (rootfs / "text.txt").write_bytes((b"polyarch builds multi-arch images; " * 1000 + b"\n") * (half // 35001))
        tarball = work / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        tar_mb = tarball.stat().st_size / 1e6
        t_tar = timed(lambda: subprocess.run(f"tar -C {rootfs} -cf - . | gzip -1 > {work / 'x.tgz'}", shell=True,
                                             check=True))
        print(f"import of a {tar_mb:.0f} MB rootfs tar")
        print(f"  tar -c | gzip -1       {tar_mb / t_tar:8.0f} MB/s")
        for label, extra_env, comp in (("gzip (isal)", {}, "gzip"), ("gzip (zlib)", {"POLYARCH_GZIP": "zlib"}, "gzip"),
                                       ("zstd", {}, "zstd")):
            root = work / f"store-{comp}-{len(extra_env)}"
            env = {**os.environ, **extra_env, "POLYARCH_ROOT": str(root)}
            t = timed(lambda env=env, comp=comp: subprocess.run(
                [sys.executable, "-m", "polyarch", "import", "--platform", f"linux/amd64={tarball}", "-t", "b:1",
                 "--compression", comp], env=env, check=True, capture_output=True))
            print(f"  polyarch import {label:12s}{tar_mb / t:6.0f} MB/s   ratio vs tar|gzip -1 {t_tar / t:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
