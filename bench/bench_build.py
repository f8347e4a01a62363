#!/usr/bin/env python3
"""Build benchmark: ``polyarch build`` beside ``buildah bud`` on the same Dockerfiles, same machine, same run.

    python bench/bench_build.py [--runs 3] [--workdir DIR]

Workloads (base: the three-platform busybox image the tests make, ``~/.cache/polyarch-tests/base-store``):

- ``copy``: examples/shell-app (WORKDIR + 2 COPY + config), linux/amd64: a cold build (empty build cache) and a
  no-change rebuild; peer: buildah bud --layers (overlay storage when it works here, else vfs);
- ``run``: the same app plus ``RUN`` steps (native amd64), cold and rebuild, vs buildah; and the same for
  linux/arm64, emulated through qemu-user-static (binfmt) on an x86 host;
- ``copy x3``: the copy app for linux/amd64,linux/arm64,linux/arm/v7 with polyarch alone (buildah needs a local
  manifest list per base; polyarch's shared COPY layers are the point here), cold and rebuild.

Prints the median wall time of ``--runs`` runs (each a fresh process, as a user runs it) and polyarch/buildah.
Needs root, runc and buildah.
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

REPO = Path(__file__).resolve().parent.parent
BASE = Path(os.environ.get("POLYARCH_TEST_CACHE", Path.home() / ".cache" / "polyarch-tests")) / "base-store"
APP = REPO / "examples" / "shell-app"
RUN_DOCKERFILE = (APP / "Dockerfile").read_text().replace(
    "ENV APP_HOME", "RUN mkdir -p /var/lib/app && echo ready > /var/lib/app/state\nRUN sh /app/cmd-info.sh\nENV APP_HOME")


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


class Polyarch:
    def __init__(self, work: Path) -> None:
        self.work = work

    def fresh(self) -> None:
        root = self.work / "pstore"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(BASE, root, ignore=shutil.ignore_patterns(".complete", "buildcache.db*", "snapshots"))

    def build(self, ctx: Path, dockerfile: Path, platforms: str) -> float:
        return timed([sys.executable, "-m", "polyarch", "--root", str(self.work / "pstore"), "build", str(ctx),
                      "-f", str(dockerfile), "--platform", platforms, "-t", "bench:1", "--load", "--progress",
                      "quiet"], {"SOURCE_DATE_EPOCH": "1700000000"})


class Buildah:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.driver = "overlay"
        self.platform = "linux/amd64"

    def cmd(self) -> list[str]:
        return ["buildah", "--root", str(self.work / "broot"), "--runroot", str(self.work / "brun"),
                "--storage-driver", self.driver]

    def fresh(self) -> None:
        for d in ("broot", "brun"):
            if (self.work / d).exists():
                subprocess.run(["umount", "-R", str(self.work / d)], capture_output=True)
                shutil.rmtree(self.work / d, ignore_errors=True)
        layout = self.work / "layout"
        shutil.rmtree(layout, ignore_errors=True)
        shutil.copytree(BASE, layout, ignore=shutil.ignore_patterns(".complete", "buildcache.db*", "snapshots"))
        proc = subprocess.run([*self.cmd(), "pull", "-q", "--platform", self.platform,
                               f"oci:{layout}:base/busybox:1"], capture_output=True, text=True)
        if proc.returncode != 0 and self.driver == "overlay":
            self.driver = "vfs"
            return self.fresh()
        if proc.returncode != 0:
            sys.exit(f"buildah pull failed: {proc.stderr}")
        image = proc.stdout.strip().splitlines()[-1]
        subprocess.run([*self.cmd(), "tag", image, "localhost/base/busybox:1"], check=True, capture_output=True)

    def build(self, ctx: Path, dockerfile: Path, platforms: str) -> float:
        return timed([*self.cmd(), "bud", "-q", "--layers", "--platform", platforms, "-t", "bench:1", "-f",
                      str(dockerfile), str(ctx)], {"SOURCE_DATE_EPOCH": "1700000000"})


def measure(tool: Polyarch | Buildah, ctx: Path, dockerfile: Path, platforms: str, runs: int) -> tuple[float, float]:
    if isinstance(tool, Buildah):
        tool.platform = platforms
    cold, warm = [], []
    for _ in range(runs):
        tool.fresh()
        cold.append(tool.build(ctx, dockerfile, platforms))
        warm.append(tool.build(ctx, dockerfile, platforms))
    return statistics.median(cold), statistics.median(warm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if not BASE.is_dir():
        sys.exit(f"no base store at {BASE}: run the test suite once (tests/conftest.py makes it)")
    if shutil.which("buildah") is None:
        sys.exit("buildah is not installed")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-build-"))
    run_df = work / "Dockerfile.run"
    run_df.write_text(RUN_DOCKERFILE)
    rows = []
    pa, bh = Polyarch(work), Buildah(work)
    for tool in (pa, bh):  # warm-up: page cache, bytecode, runtime binaries
        tool.fresh()
        tool.build(APP, run_df, "linux/amd64")
    for name, dockerfile in (("copy", APP / "Dockerfile"), ("run", run_df)):
        p = measure(pa, APP, dockerfile, "linux/amd64", args.runs)
        b = measure(bh, APP, dockerfile, "linux/amd64", args.runs)
        rows.append((f"{name} cold", p[0], b[0]))
        rows.append((f"{name} rebuild", p[1], b[1]))
    p = measure(pa, APP, run_df, "linux/arm64", args.runs)
    b = measure(bh, APP, run_df, "linux/arm64", args.runs)
    rows.append(("run arm64 (qemu)", p[0], b[0]))
    rows.append(("  rebuild", p[1], b[1]))
    p3 = measure(pa, APP, APP / "Dockerfile", "linux/amd64,linux/arm64,linux/arm/v7", args.runs)
    rows.append(("copy x3 cold", p3[0], None))
    rows.append(("copy x3 rebuild", p3[1], None))
    print(f"buildah storage driver: {bh.driver}; median of {args.runs} runs, seconds")
    print(f"{'workload':<18}{'polyarch':>10}{'buildah':>10}{'ratio':>8}")
    for label, p_s, b_s in rows:
        ratio = f"{p_s / b_s:.2f}" if b_s else "-"
        print(f"{label:<18}{p_s:>10.3f}{(f'{b_s:.3f}' if b_s else '-'):>10}{ratio:>8}")
    if not args.workdir:
        subprocess.run(["umount", "-R", str(work / "broot")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
