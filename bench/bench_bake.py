#!/usr/bin/env python3
"""Bake benchmark: ``polyarch bake`` of two targets × two platforms beside BuildKit, same machine, same run.

    python bench/bench_bake.py [--runs 1] [--workdir DIR] [--no-buildkit]

Workload (tests/bake/fixture.py): target ``app`` (a shell app copied onto base/busybox:1) and target ``tool``
(a ``$BUILDPLATFORM`` builder stage "compiling" with busybox sh for ``$TARGETARCH``, copied onto the base), both
starting from the same ``base`` stage (a RUN), for linux/amd64 and linux/arm64 (arm64 RUNs under QEMU).
Every FROM names one local registry (``polyarch registry serve`` on 127.0.0.1, plain http) that serves the test
suite's ``base/busybox:1`` (``~/.cache/polyarch-tests/base-store``).

- **polyarch**: ``polyarch bake --load`` (one process, one solve: the shared stage runs once per platform).
- **BuildKit**: embedded in Debian's docker.io engine (dockerd 20.10 on a private socket, ``--iptables=false
  --bridge=none --insecure-registry 127.0.0.0/8``), ``DOCKER_BUILDKIT=1 docker build --platform P -f
  Dockerfile.T --network host`` (polyarch RUNs use the host network too; the daemon has no bridge) for the 4 (target, platform) pairs, all at once (one daemon, so BuildKit can share work too).

Cold: no base image and no build cache (polyarch: a fresh store; BuildKit: ``builder prune -af`` and removing
every image). No-change: the same bake again. Prints seconds (median of ``--runs``) and polyarch / BuildKit.
Targets: cold <= 0.8x, no-change <= 1.0x. Needs root, runc, qemu-aarch64 in binfmt_misc with the F flag.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _peers import DOCKER, Dockerd, LocalRegistry, sh

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CACHE = Path(os.environ.get("POLYARCH_TEST_CACHE", Path.home() / ".cache" / "polyarch-tests"))
BASE = CACHE / "base-store"
PLATFORMS = ("linux/amd64", "linux/arm64")
TARGETS = ("app", "tool")
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def timed(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    sh(cmd, env=env, cwd=cwd)
    return time.perf_counter() - start


def Registry(work: Path) -> LocalRegistry:
    return LocalRegistry(work, BASE)


def project(work: Path, reg: str) -> Path:
    from tests.bake.fixture import write_project

    root = write_project(work / "project")
    for name in ("Dockerfile.app", "Dockerfile.tool"):
        path = root / name
        path.write_text(path.read_text().replace("base/busybox:1", f"{reg}/base/busybox:1"))
    return root


class Polyarch:
    name = "polyarch"

    def __init__(self, work: Path, proj: Path) -> None:
        self.root = work / "pstore"
        self.proj = proj

    def fresh(self) -> None:
        if self.root.exists():
            subprocess.run(["umount", "-R", str(self.root / "snapshots")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def bake(self) -> float:
        return timed([sys.executable, "-m", "polyarch", "--root", str(self.root), "bake", "--load",
                      "--progress", "plain"], env=EPOCH, cwd=self.proj)

    def close(self) -> None:
        self.fresh()


class BuildKit(Dockerd):
    name = "buildkit"

    def __init__(self, work: Path, proj: Path) -> None:
        super().__init__(work)
        self.proj = proj

    def bake(self) -> float:
        def one(pair: tuple[str, str]) -> None:
            target, platform = pair
            tag = f"bake-{target}:{platform.replace('/', '-')}"
            sh([DOCKER, "-H", f"unix://{self.sock}", "build", "--network", "host", "--platform", platform, "-t", tag,
                "-f", str(self.proj / f"Dockerfile.{target}"), str(self.proj)], env={"DOCKER_BUILDKIT": "1", **EPOCH})

        pairs = [(t, p) for t in TARGETS for p in PLATFORMS]
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(len(pairs)) as pool:
            list(pool.map(one, pairs))
        return time.perf_counter() - start


def measure(tool: Polyarch | BuildKit, runs: int) -> tuple[float, float]:
    cold, warm = [], []
    for _ in range(runs):
        tool.fresh()
        cold.append(tool.bake())
        warm.append(tool.bake())
    return statistics.median(cold), statistics.median(warm)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--no-buildkit", action="store_true")
    args = ap.parse_args()
    if not BASE.is_dir():
        sys.exit(f"no base store at {BASE}: run the test suite once (tests/conftest.py makes it)")
    if os.geteuid() != 0:
        sys.exit("needs root (runc, overlayfs, dockerd)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-bake-"))
    registry = Registry(work)
    proj = project(work, registry.addr)
    tools: list[Polyarch | BuildKit] = [Polyarch(work, proj)]
    missing: list[str] = []
    if not args.no_buildkit:
        try:
            tools.append(BuildKit(work, proj))
        except (RuntimeError, OSError) as exc:
            missing.append(f"buildkit: {exc}")
    results: dict[str, tuple[float, float]] = {}
    try:
        for tool in tools:
            try:
                results[tool.name] = measure(tool, args.runs)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                missing.append(f"{tool.name}: {str(exc)[:300]} … {str(exc)[-1500:]}")
    finally:
        for tool in tools:
            tool.close()
        registry.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nbake: 2 targets x {', '.join(PLATFORMS)} on {os.cpu_count()} cores; median of {args.runs} run(s); "
          "seconds; ratio = polyarch / buildkit")
    print(f"{'phase':<10}{'polyarch':>10}{'buildkit':>10}{'ratio':>8}  target")
    for i, (phase, target) in enumerate((("cold", "<= 0.8x"), ("no-change", "<= 1.0x"))):
        p = results.get("polyarch", (None, None))[i]
        b = results.get("buildkit", (None, None))[i]
        ratio = f"{p / b:.2f}" if p is not None and b else "-"
        print(f"{phase:<10}{(f'{p:.2f}' if p is not None else '-'):>10}{(f'{b:.2f}' if b is not None else '-'):>10}"
              f"{ratio:>8}  {target}")
    for line in missing:
        print(f"not measured: {line}")


if __name__ == "__main__":
    main()
