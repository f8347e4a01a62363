#!/usr/bin/env python3
"""Benchmark ``polyarch verify`` on a 3-platform image with about 500 MB of (uncompressed) layers.

    python bench/bench_verify.py [--size-mb 500] [--cache DIR] [--keep]

The image is generated once (cached in DIR, default ~/.cache/polyarch-bench/verify): per platform the
busybox-static rootfs of Debian for that architecture, a layer of real ELF binaries (copies of busybox, each made
distinct) and a layer of filler files (text-like data, 4 KiB to 4 MiB). ARM binaries are the worst case for
verify: they are read to their end to find the build attributes.

Printed: the wall time and peak RSS (ru_maxrss of the child) of ``polyarch verify``, with all platforms in
parallel (default) and with one worker, beside the peers measured on the same layer blobs in the same run:
``gzip -dc | wc -c`` over every layer (one after the other) and Python's own streaming decompression
(``content.compression.decompressed``, isal) of every layer. Target: verify within a small factor of plain
decompression, peak memory under 200 MB.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from polyarch import platform as plat  # noqa: E402
from polyarch.content.compression import LayerWriter, decompressed  # noqa: E402
from polyarch.content.images import ImageStore  # noqa: E402
from polyarch.content.store import ContentStore  # noqa: E402
from polyarch.oci.spec import ImageConfig  # noqa: E402

PLATFORMS = {"linux/amd64": "amd64", "linux/arm64": "arm64", "linux/arm/v7": "armhf"}
NAME = "bench/verify:1"
VERSION = "2"
WORDS = (b"the quick brown fox jumps over lazy dog lorem ipsum dolor sit amet consectetur adipiscing elit sed do "
         b"eiusmod tempor incididunt ut labore et dolore magna aliqua config value true false null 0x7f 1024").split()


def busybox_tars(cache: Path) -> dict[str, Path]:
    out = cache / "busybox"
    if not all((out / f"rootfs-{a}.tar").exists() for a in PLATFORMS.values()):
        subprocess.run([sys.executable, str(REPO / "scripts" / "busybox_rootfs.py"), "--out", str(out),
                        *PLATFORMS.values()], check=True, stdout=subprocess.DEVNULL)
    return {p: out / f"rootfs-{a}.tar" for p, a in PLATFORMS.items()}


def filler(rng: random.Random, size: int) -> bytes:
    chunk = b" ".join(rng.choice(WORDS) for _ in range(4096)) + b"\n"
    reps = size // len(chunk) + 1
    parts = [chunk[rng.randrange(64):] for _ in range(reps)]  # shifted, so it is not one long repeat
    return b"".join(parts)[:size]


def add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def layer(store: ContentStore, build) -> tuple[object, object]:  # type: ignore[no-untyped-def]
    w = LayerWriter(store, "gzip")
    with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    result = w.close_layer()
    return result.descriptor, result.diff_id


def generate(root: Path, tars: dict[str, Path], size_mb: int) -> None:
    store = ContentStore(root)
    images = ImageStore(store)
    per_platform = size_mb * (1 << 20) // len(PLATFORMS)
    manifests = []
    for p, tar_path in tars.items():
        rng = random.Random(p)
        with tarfile.open(tar_path) as t:
            member = t.extractfile("bin/busybox")
            assert member is not None
            busybox = member.read()
        base = tar_path.read_bytes()
        elf_budget = per_platform * 55 // 100
        fill_budget = per_platform - elf_budget - len(base)

        def elves(tar: tarfile.TarFile, busybox: bytes = busybox, budget: int = elf_budget) -> None:
            n = 0
            while n * len(busybox) < budget:
                # a distinct binary: a few bytes of .data changed (same ELF headers and attributes)
                data = bytearray(busybox)
                data[len(data) // 2:len(data) // 2 + 8] = n.to_bytes(8, "little")
                add(tar, f"usr/lib/app/bin{n:04d}", bytes(data), 0o755)
                n += 1

        def files(tar: tarfile.TarFile, rng: random.Random = rng, budget: int = fill_budget) -> None:
            total = i = 0
            while total < budget:
                size = min(budget - total, int(rng.choice([4, 16, 64, 256, 1024, 4096]) * 1024))
                add(tar, f"usr/share/data/{i // 100:03d}/f{i:05d}.txt", filler(rng, size))
                total += size
                i += 1

        descs, diff_ids = [], []
        for build in (lambda tar, base=base: _copy_tar(tar, base), elves, files):
            d, diff = layer(store, build)
            descs.append(d)
            diff_ids.append(diff)
        pp = plat.parse(p)
        config = ImageConfig(architecture=pp.architecture, os=pp.os, variant=pp.variant, diff_ids=tuple(diff_ids))
        manifests.append(images.put_image(config, descs).with_platform(pp))
    images.set_name(NAME, images.put_index(manifests))


def _copy_tar(tar: tarfile.TarFile, data: bytes) -> None:
    with tarfile.open(fileobj=io.BytesIO(data)) as src:
        for m in src:
            tar.addfile(m, src.extractfile(m) if m.isreg() else None)


def layer_paths(root: Path) -> tuple[list[Path], int, int]:
    images = ImageStore(ContentStore(root, create=False))
    paths, compressed, plain = [], 0, 0
    for img in images.images(images.lookup(NAME)):
        for lay in img.manifest.layers:
            paths.append(images.store.blob_path(lay.digest))
            compressed += lay.size
    for p in paths:
        with open(p, "rb") as f, decompressed(f) as r:
            while chunk := r.read(1 << 20):
                plain += len(chunk)
    return paths, compressed, plain


# Peak RSS is read from the child's own /proc/self/status (VmHWM) at exit: ru_maxrss of a child forked from this
# process would include the copy of this process it starts as.
HWM = ("import atexit, sys\n"
       "def _hwm():\n"
       "    for line in open('/proc/self/status'):\n"
       "        if line.startswith('VmHWM'):\n"
       "            sys.stderr.write('VMHWM ' + line.split()[1] + '\\n')\n"
       "atexit.register(_hwm)\n")


def python_argv(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", HWM + code, *args]


def run_child(argv: list[str], env: dict[str, str]) -> tuple[float, float | None]:
    """(seconds, peak RSS MiB or None) of a child process; fails on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({proc.returncode}): {proc.stderr[-500:]}")
    hwm = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("VMHWM ")]
    return elapsed, (int(hwm[-1]) / 1024 if hwm else None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "polyarch-bench" / "verify")
    ap.add_argument("--rounds", type=int, default=2, help="best of N for each measurement")
    args = ap.parse_args()
    root = args.cache / f"store-{args.size_mb}mb-v{VERSION}"
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        t = time.perf_counter()
        generate(root, busybox_tars(args.cache), args.size_mb)
        (root / ".complete").write_text("ok\n")
        print(f"generated {root} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    paths, compressed, plain = layer_paths(root)
    print(f"image: 3 platforms, {len(paths)} layers, {compressed / 1e6:.0f} MB gzip, {plain / 1e6:.0f} MB "
          "uncompressed")
    env = {**os.environ, "POLYARCH_ROOT": str(root), "PYTHONPATH": str(REPO / "src")}

    def best(fn):  # type: ignore[no-untyped-def]
        return min((fn() for _ in range(args.rounds)), key=lambda r: r[0])

    gzip_cmd = "for f in " + " ".join(map(str, paths)) + "; do gzip -dc \"$f\"; done | wc -c"
    gz = best(lambda: run_child(["sh", "-c", gzip_cmd], env))
    pydec = best(lambda: run_child(python_argv(
        "from polyarch.content.compression import decompressed\n"
        "for p in sys.argv[1:]:\n"
        "    with open(p, 'rb') as f, decompressed(f) as r:\n"
        "        while r.read(1 << 20): pass\n", *map(str, paths)), env))
    verify = python_argv("import runpy\nsys.argv = ['polyarch', 'verify', sys.argv[1]]\n"
                         "runpy.run_module('polyarch', run_name='__main__')\n", NAME)
    par = best(lambda: run_child(verify, env))
    ser = best(lambda: run_child(verify, {**env, "POLYARCH_VERIFY_JOBS": "1"}))
    rows = [("gzip -dc | wc -c (all layers, serial)", gz), ("python decompress (isal, serial)", pydec),
            ("polyarch verify (platforms in parallel)", par), ("polyarch verify (one worker)", ser)]
    print(f"{'':42} {'seconds':>8} {'MB/s':>7} {'peak RSS MiB':>13} {'vs gzip -dc':>12} {'vs isal':>8}")
    for label, (secs, rss) in rows:
        mem = f"{rss:13.0f}" if rss is not None else f"{'-':>13}"
        print(f"{label:42} {secs:8.2f} {plain / 1e6 / secs:7.0f} {mem} {secs / gz[0]:11.2f}x "
              f"{secs / pydec[0]:7.2f}x")
    peak = max(r[1] or 0 for r in (par, ser))
    print(f"peak RSS of verify: {peak:.0f} MiB (target < 200): {'ok' if peak < 200 else 'OVER'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
