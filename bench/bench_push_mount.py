"""Push after a build ``FROM`` a pulled base: blobs mounted across repositories vs uploaded again.

For each mode, on a fresh Debian docker-registry (loopback): a generated 2-platform base (random, incompressible
layers; ``--base-mb`` in all, default 160) is pushed to ``HOST/bench/base:1``; ``polyarch build --platform
linux/amd64,linux/arm64 -t app:1`` runs on a fresh store with ``FROM HOST/bench/base:1`` and one COPY (the build
pulls the base); then ``polyarch push app:1 HOST/bench/app:1`` runs as its own process and is timed.

- ``before``: the store's blob-origin records (``blobsources.db``) are removed first, which is what polyarch did
  before it kept them: a new process knew nothing of the base's repository, so every blob was uploaded.
- ``after``: as a user runs it: the push mounts the base's blobs from ``bench/base``.

Prints the push report (``N uploaded, M mounted``) and the push time (median of ``--repeat``).

    python bench/bench_push_mount.py [--base-mb 160] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.registry.imagegen import make_test_image  # noqa: E402
from tests.registry.refregistry import start_registry  # noqa: E402

from polyarch.content.origins import DB_NAME  # noqa: E402

PLATFORMS = ("linux/amd64", "linux/arm64")


def polyarch(root: Path, *args: str) -> str:
    env = {**os.environ, "POLYARCH_ROOT": str(root), "SOURCE_DATE_EPOCH": "1700000000"}
    proc = subprocess.run([sys.executable, "-m", "polyarch", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"polyarch {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def one(work: Path, mode: str, base_mb: int) -> tuple[float, str]:
    reg = start_registry(work / "registry")
    try:
        seed = work / "seed"
        per = base_mb * (1 << 20) // 7  # a shared layer and three per platform: 7 layers
        make_test_image(seed, "base/big:1", platforms=PLATFORMS, layer_sizes=(per, per, per, per), seed=5)
        polyarch(seed, "push", "base/big:1", f"{reg.host}/bench/base:1")
        ctx = work / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {reg.host}/bench/base:1\nCOPY app.sh /app/\n")
        (ctx / "app.sh").write_text("echo hi\n")
        store = work / "store"
        polyarch(store, "build", str(ctx), "--progress", "quiet", "--platform", ",".join(PLATFORMS), "-t", "app:1",
                 "--load")
        if mode == "before":
            (store / DB_NAME).unlink()
        start = time.perf_counter()
        out = polyarch(store, "push", "app:1", f"{reg.host}/bench/app:1")
        elapsed = time.perf_counter() - start
        report = next(line for line in out.splitlines() if ": pushed (" in line).split("(", 1)[1].rstrip(")")
        return elapsed, report
    finally:
        reg.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-mb", type=int, default=160)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for mode in ("before", "after"):
        times, reports = [], set()
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="bench-mount-") as tmp:
                elapsed, report = one(Path(tmp), mode, args.base_mb)
            times.append(elapsed)
            reports.add(report)
        print(f"{mode:6}  push {statistics.median(times):6.2f}s  ({'; '.join(sorted(reports))})"
              f"  runs: {', '.join(f'{t:.2f}' for t in times)}")


if __name__ == "__main__":
    main()
