#!/usr/bin/env python3
"""Cost of ``--sbom --provenance=mode=max`` on a cold ``polyarch build``: the same build with and without
attestations, alternating in one run, medians.

    python bench/bench_attest.py [--runs 5]                      # the app workload (issue 22; needs root)
    python bench/bench_attest.py --store STORE [--runs 5] [--image base/golang:1.19] [--platforms linux/amd64]

**app** (the default; issue 19's target: at most +15%): bench/bench_build.py's ``app`` workload — ``FROM
--platform=$TARGETPLATFORM base/pybase:1`` (2 platforms, ~80 MB compressed each, on a loopback ``polyarch
registry serve``), WORKDIR + COPY of 200 files + COPY of 20 MiB, ``--load``. Every build starts from an empty
store (the base is pulled), like bench_build's cold build. Also printed: the no-change rebuild with and without
attestations (the SBOM of a rebuild reads the per-layer results the first build kept, no layer again).

**--store**: the older small/large base case. Each run copies STORE (base images already in it, so nothing is
pulled) to a fresh root and builds a 2-instruction app FROM ``--image`` (a dpkg status + a Python METADATA copied
in); the SBOM then reads every base layer from the store once (busybox: 3 MB; Debian's Go toolchain: 150 MB).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

STATUS = "".join(f"Package: pkg{i}\nStatus: install ok installed\nVersion: 1.{i}-1\nArchitecture: amd64\n\n"
                 for i in range(200))
ATTEST = ["--sbom", "--provenance=mode=max"]


def one(store: Path, ctx: Path, image_platforms: str, attest: bool, work: Path) -> float:
    root = work / f"root-{time.monotonic_ns()}"
    shutil.copytree(store, root, ignore=shutil.ignore_patterns(".complete", "ingest"), symlinks=True)
    (root / "ingest").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "polyarch", "build", "--platform", image_platforms, "-t", "app:1", "--load",
           "--progress", "quiet", str(ctx)]
    if attest:
        cmd[4:4] = ATTEST
    env = {**os.environ, "POLYARCH_ROOT": str(root), "SOURCE_DATE_EPOCH": "1700000000"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    took = time.perf_counter() - start
    shutil.rmtree(root, ignore_errors=True)
    return took


def store_case(args: argparse.Namespace) -> None:
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


def timed_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of the process and its children, from ``wait4``) of ``cmd``:
    on a shared machine the CPU time is the steadier figure."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **env})
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"failed: {' '.join(cmd)}\n{err[-4000:].decode(errors='replace')}")
    return elapsed, usage.ru_utime + usage.ru_stime


def app_case(args: argparse.Namespace) -> None:
    from bench_build import APP_PLATFORMS, BASE, Polyarch, Registry, workloads

    if not BASE.is_dir():
        sys.exit(f"no base store at {BASE}: run the test suite once (tests/conftest.py makes it)")
    if os.geteuid() != 0:
        sys.exit("needs root (as bench/bench_build.py)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-attest-"))
    registry = Registry(work, ["app"])
    tool = Polyarch(work)

    def build(ctx: Path, dockerfile: Path, attest: bool) -> tuple[float, float]:
        cmd = [sys.executable, "-m", "polyarch", "--root", str(tool.root), "build", str(ctx), "-f", str(dockerfile),
               "--platform", ",".join(APP_PLATFORMS), "-t", "bench:1", "--load", "--progress", "plain"]
        return timed_cpu(cmd + (ATTEST if attest else []), {"SOURCE_DATE_EPOCH": "1700000000", **tool.bytecode})

    try:
        ctx, dockerfile = workloads(work, registry.addr, 1)["app"]
        tool.fresh()
        build(ctx, dockerfile, True)  # untimed: bytecode written, page cache warm
        times: dict[tuple[bool, str], list[tuple[float, float]]] = {}
        for i in range(args.runs):
            for attest in ((False, True) if i % 2 == 0 else (True, False)):  # alternating order
                tool.fresh()
                times.setdefault((attest, "cold"), []).append(build(ctx, dockerfile, attest))
                times.setdefault((attest, "rebuild"), []).append(build(ctx, dockerfile, attest))
                print(f"  run {i} attest={attest}: cold {times[(attest, 'cold')][-1]}, "
                      f"rebuild {times[(attest, 'rebuild')][-1]} (wall, cpu s)", file=sys.stderr, flush=True)
    finally:
        tool.close()
        registry.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"app ({', '.join(APP_PLATFORMS)}; base pulled from a loopback registry), median of {args.runs}, "
          f"load average {os.getloadavg()[0]:.2f}:")
    for phase in ("cold", "rebuild"):
        for i, what in enumerate(("wall", "cpu")):
            p = statistics.median(t[i] for t in times[(False, phase)])
            a = statistics.median(t[i] for t in times[(True, phase)])
            print(f"  {phase:<8} {what:<5} plain {p:.2f} s, {' '.join(ATTEST)} {a:.2f} s, "
                  f"{(a - p) / p * 100:+.0f}% ({a - p:+.2f} s)" + ("  (target <= +15%)" if phase == "cold" else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--store", type=Path, default=None, help="the --store case instead of the app workload")
    ap.add_argument("--image", default="base/busybox:1")
    ap.add_argument("--platforms", default="linux/amd64,linux/arm64")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if args.store is not None:
        store_case(args)
    else:
        app_case(args)


if __name__ == "__main__":
    main()
