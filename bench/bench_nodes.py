#!/usr/bin/env python3
"""Builder-node benchmark: cold build and no-change rebuild over ssh nodes (issue 17's "under 1 s with two nodes").

    python bench/bench_nodes.py [--runs 5] [--workdir DIR]

A real OpenSSH server on loopback (tests/nodes/sshnode.py: a key made here, known_hosts checking on) plays every
ssh node; each node has a store of its own (``--node-flags "--root DIR"``). Builders, measured in the same run and
alternated round by round:

- ``local``: the implicit ``default`` builder (no ssh), linux/amd64 + linux/arm64 (arm64 through QEMU here);
- ``local+ssh``: this host (amd64) + ``pi5``, an ssh node declared linux/arm64 (the issue's two-node build);
- ``ssh+ssh``: two ssh nodes, ``amd`` (linux/amd64) and ``arm`` (linux/arm64): nothing is built on this host.

Workload: a small Dockerfile on the test suite's multi-platform busybox base (``$POLYARCH_TEST_CACHE/base-store``,
made by the test suite), ``COPY`` + one ``RUN`` per platform. Each builder's first build is the cold one (the
node's cache empty, the base in its store); then ``--runs`` rounds of no-change rebuilds, each builder with ssh
connection sharing on (the default: the ssh master a build starts stays ``ControlPersist`` seconds, so the next
build skips the ssh handshake) and off (``POLYARCH_SSH`` given ``-o ControlPath=none``: options given first win),
alternated. Printed: medians, the load average and the bytes each node's connection carried (the build's report).
polyarch's bytecode is compiled first (``compileall``, as ``pip install`` does): the test server's nodes run with
``PYTHONDONTWRITEBYTECODE=1`` and would otherwise compile every module only they import on every start.
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
sys.path.insert(0, str(REPO))
from tests.nodes.sshnode import SshNode  # noqa: E402

CACHE = Path(os.environ.get("POLYARCH_TEST_CACHE", Path.home() / ".cache" / "polyarch-tests"))
BASE = CACHE / "base-store"
DOCKERFILE = """FROM base/busybox:1
COPY a.txt /a.txt
RUN uname -m > /arch && cat /a.txt
"""
PLATFORMS = "linux/amd64,linux/arm64"


def _store(dest: Path) -> Path:
    shutil.copytree(BASE, dest, ignore=shutil.ignore_patterns(".complete", "ingest"))
    (dest / "ingest").mkdir(exist_ok=True)
    return dest


class Bench:
    def __init__(self, work: Path, sshd: SshNode) -> None:
        self.work = work
        self.client = _store(work / "client")
        self.ctx = work / "ctx"
        self.ctx.mkdir()
        (self.ctx / "a.txt").write_text("hello\n")
        (self.ctx / "Dockerfile").write_text(DOCKERFILE)
        ssh = sshd.ssh_env()["POLYARCH_SSH"]
        self.no_mux = ssh.replace("ssh ", "ssh -o ControlPath=none ", 1)
        self.env = {**os.environ, **sshd.ssh_env(), "POLYARCH_CONFIG_DIR": str(work / "config"),
                    "POLYARCH_ROOT": str(self.client)}
        self.env.pop("POLYARCH_BUILDER", None)

    def cli(self, *args: str, mux: bool = True) -> subprocess.CompletedProcess[str]:
        env = self.env if mux else {**self.env, "POLYARCH_SSH": self.no_mux}
        proc = subprocess.run([sys.executable, "-m", "polyarch", *args], env=env, capture_output=True,
                              text=True, timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"polyarch {' '.join(args)}: {proc.stderr}")
        return proc

    def node(self, builder: str, name: str, platform: str, *, append: bool) -> None:
        root = _store(self.work / f"node-{name}")
        self.cli("builder", "create", *(["--append"] if append else []), "--name", builder, "--node", name,
                 "--platform", platform, "--node-flags", f"--root {root}", "ssh://polynode")

    def setup(self) -> None:
        self.cli("builder", "create", "--name", "two", "--node", "here", "local")
        self.node("two", "pi5", "linux/arm64", append=True)
        self.node("sshonly", "amd", "linux/amd64", append=False)
        self.node("sshonly", "arm", "linux/arm64", append=True)

    def build(self, builder: str, mux: bool = True) -> tuple[float, str]:
        args = ["build", "--builder", builder, "--platform", PLATFORMS, "--progress", "plain", "-t", "b:1",
                "--load", str(self.ctx)]
        t0 = time.perf_counter()
        proc = self.cli(*args, mux=mux)
        wall = time.perf_counter() - t0
        sent = "; ".join(x.split("node ", 1)[1] for x in proc.stderr.splitlines() if "bytes sent" in x)
        return wall, sent


BUILDERS = {"local": "default", "local+ssh": "two", "ssh+ssh": "sshonly"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    opts = ap.parse_args()
    if not (BASE / ".complete").exists():
        raise SystemExit(f"{BASE} is missing: run the test suite once (tests/conftest.py makes it)")
    import compileall

    import polyarch

    compileall.compile_dir(Path(polyarch.__file__).parent, quiet=1)
    work = Path(tempfile.mkdtemp(prefix="bench-nodes-", dir=opts.workdir))
    sshd = SshNode.start(work / "sshd")
    bench = Bench(work, sshd)
    try:
        bench.setup()
        cold: dict[str, float] = {}
        sent: dict[str, str] = {}
        for label, name in BUILDERS.items():
            cold[label], sent[label] = bench.build(name)
        variants = [(label, mux) for label in BUILDERS for mux in ((True,) if label == "local" else (True, False))]
        rebuild: dict[tuple[str, bool], list[float]] = {v: [] for v in variants}
        for _ in range(opts.runs):
            for label, mux in variants:
                wall, s = bench.build(BUILDERS[label], mux)
                rebuild[(label, mux)].append(wall)
                sent[label + " rebuild"] = s
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"# load average after: {load}; runs: {opts.runs}; {os.cpu_count()} cpus")
        print(f"{'builder':<10} {'cold s':>7} {'ssh sharing':>12} {'rebuild s (median)':>19}  rebuilds")
        for label, mux in variants:
            runs = " ".join(f"{x:.2f}" for x in rebuild[(label, mux)])
            share = "-" if label == "local" else ("on" if mux else "off")
            print(f"{label:<10} {cold[label]:>7.2f} {share:>12} {statistics.median(rebuild[(label, mux)]):>19.2f}"
                  f"  {runs}")
        for label, s in sent.items():
            if s:
                print(f"  bytes over ssh, {label}: {s}")
    finally:
        for name in ("two", "sshonly"):  # the ssh masters the builds left
            subprocess.run([sys.executable, "-m", "polyarch", "builder", "stop", name], env=bench.env,
                           capture_output=True, check=False)
        sshd.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
