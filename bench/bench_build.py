#!/usr/bin/env python3
"""Build benchmark: ``polyarch build`` beside BuildKit (Docker's engine) and buildah, same machine, same run.

    python bench/bench_build.py [--runs 1] [--workdir DIR] [--only copy,cross,qemu] [--peers docker,buildah]

Every builder builds linux/amd64 and linux/arm64 from the same Dockerfiles, whose FROM lines name one local
registry (``polyarch registry serve`` on 127.0.0.1, plain http) serving ``base/busybox:1`` (amd64, arm64, arm/v7;
the test suite's base, ``~/.cache/polyarch-tests/base-store``) and ``base/golang:1.19`` (amd64, made from
Debian's golang-1.19 packages by examples/go-app/make_base.py). A cold build starts with no base image and no
build cache (every builder pulls the bases from that registry); a rebuild runs the same build again unchanged.

Peers:
- **BuildKit**: the one embedded in Debian's docker.io engine (dockerd 20.10, started here on a private socket
  with ``--iptables=false --bridge=none --insecure-registry 127.0.0.0/8``), driven as the issue does:
  ``DOCKER_BUILDKIT=1 docker build --platform P`` once per platform, run concurrently. Cold: ``docker builder
  prune -af`` and ``docker image prune -af`` first.
- **buildah** (Debian's 1.28): ``buildah bud --layers --jobs 2 --platform linux/amd64,linux/arm64 --manifest``,
  ``--tls-verify=false``; cold: a fresh ``--root``.

Workloads:
- ``copy``: examples/shell-app (WORKDIR + 2 COPY + config) on the multi-platform base;
- ``cross``: examples/go-app (a ``$BUILDPLATFORM`` builder stage, Go cross-compiling for each target, then the
  binary copied onto busybox and run once per platform: under QEMU for arm64);
- ``qemu``: a CPU-bound busybox awk RUN (several seconds under QEMU for arm64; there is no Python base for arm64
  here: no Docker Hub, and mmdebstrap for arm64 would need the network and minutes);
- ``diff`` (not in the default ``--only``): one native RUN (linux/amd64 only) writing ~300 MB in 30150 files: the
  step's layer (overlay upper dir -> layer -> store) in each builder; the rebuild is the cache hit.
- ``app`` (issue 22): a COPY-only app (200 files of 1-8 KB + 20 MiB incompressible; ``FROM
  --platform=$TARGETPLATFORM``, WORKDIR + 2 COPY) on ``base/pybase:1``, a generated 2-platform base of ~80 MB
  compressed per platform (busybox + a Python-library-like tree; made once per run with ``polyarch import``).
  Also printed in the same run: the pull-only limit (``polyarch pull --all-platforms`` of the base into an empty
  store, run just before each cold build: paired on a shared machine; median of ``--runs``), the cold build's
  ratio to it, the push of the built image to the registry the
  base came from (a new repository each time: the base's blobs can be mounted), and ``polyarch --help``;
  and the CPU seconds (user + system) of the pull-only runs and cold builds, polyarch's own and the loopback
  registry's (from ``/proc``): on a machine of N cores their sum / N is the least wall time the work allows.

Prints seconds (median of ``--runs``), the ratio polyarch / best peer, and polyarch's peak RSS (``ru_maxrss`` of
the ``polyarch build`` process tree, from ``wait4``). Needs root, runc, qemu binfmt handlers with the F flag
(``polyarch binfmt --install all``), dockerd and buildah (a missing peer is reported and skipped).
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
CACHE = Path(os.environ.get("POLYARCH_TEST_CACHE", Path.home() / ".cache" / "polyarch-tests"))
BASE = CACHE / "base-store"
PLATFORMS = ("linux/amd64", "linux/arm64")
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
QEMU_DOCKERFILE = """FROM {reg}/base/busybox:1
COPY job.awk /job.awk
RUN awk -f /job.awk > /result && cat /result
CMD ["cat", "/result"]
"""
QEMU_JOB = "BEGIN { s = 0; for (i = 0; i < {n}; i++) s = (s + i * i) % 1000003; print s }\n"
# One RUN that writes ~300 MB (150 random 1 MiB files + 30000 files of 5 KiB): what the step's layer costs
# (overlay upper dir -> layer tar -> image store) in each builder; linux/amd64 only, so that no QEMU is timed.
DIFF_DOCKERFILE = """FROM {reg}/base/busybox:1
RUN mkdir -p /out/big && i=0 && while [ $i -lt 150 ]; do head -c 1048576 /dev/urandom > /out/big/b$i; \\
    i=$((i+1)); done && i=0 && while [ $i -lt 300 ]; do mkdir -p /out/small/$i; i=$((i+1)); done && \\
    i=0 && while [ $i -lt 30000 ]; do printf '%05000d' $i > /out/small/$((i % 300))/f$i.txt; i=$((i+1)); done
"""
TARGETS = {"copy": "cold <= 0.3x", "cross": "<= 0.9x", "qemu": "<= 1.0x", "diff": "-", "app": "<= 0.2x",
           "rebuild": "<= 1.0x"}
APP_DOCKERFILE = """FROM --platform=$TARGETPLATFORM {reg}/base/pybase:1
WORKDIR /srv/w1
COPY app/ ./app/
COPY data.bin ./
CMD ["/bin/sh"]
"""
APP_PLATFORMS = ("linux/amd64", "linux/arm64")
PYBASE_MB = 80  # compressed size of each platform's base (one layer)


def _pybase_tar(busybox: Path, out: Path, seed: int) -> None:
    """busybox's rootfs plus a ``usr/lib/python3.11``-like tree: ~half incompressible, ~half text."""
    import io
    import random
    import tarfile

    rnd = random.Random(seed)
    words = [("".join(rnd.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rnd.randint(2, 12)))).encode()
             for _ in range(3000)]
    pool = b" ".join(rnd.choice(words) + (b"\n" if rnd.random() < 0.1 else b"") for _ in range(400_000))
    with tarfile.open(busybox) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        budget = PYBASE_MB << 20  # compressed bytes to reach, roughly
        n = 0
        while budget > 0:
            d = f"usr/lib/python3.11/site-packages/pkg{n // 50}"
            if n % 50 == 0:
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                dst.addfile(ti)
            size = rnd.randint(2_000, 120_000)
            if n % 3 == 0:
                data = rnd.randbytes(size)
                budget -= size
            else:
                off = rnd.randint(0, len(pool) - size)
                data = pool[off:off + size]
                budget -= size // 2
            ti = tarfile.TarInfo(f"{d}/mod{n}.py" if n % 3 else f"{d}/_native{n}.so")
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            dst.addfile(ti, io.BytesIO(data))
            n += 1


def _pybase(root: Path) -> None:
    work = root.parent / "pybase"
    work.mkdir(exist_ok=True)
    args = []
    for i, (platform, arch) in enumerate((("linux/amd64", "amd64"), ("linux/arm64", "arm64"))):
        tar = work / f"rootfs-{arch}.tar"
        _pybase_tar(CACHE / "busybox" / f"rootfs-{arch}.tar", tar, seed=i)
        args += ["--platform", f"{platform}={tar}"]
    sh([sys.executable, "-m", "polyarch", "--root", str(root), "import", "-t", "base/pybase:1", *args],
       env={**os.environ, **EPOCH})
    shutil.rmtree(work)


def platforms_for(workload: str) -> tuple[str, ...]:
    if workload == "app":
        return APP_PLATFORMS
    return ("linux/amd64",) if workload == "diff" else PLATFORMS


LAST_CPU = [0.0]  # CPU seconds (user + system) of the last ``timed_rss`` command's process tree


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) the process ``pid`` has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_rss(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of ``cmd`` (its CPU seconds go to ``LAST_CPU``); raises on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"failed: {' '.join(cmd)}\n{out[-4000:].decode(errors='replace')}")
    return elapsed, usage.ru_maxrss


def _go_bases(root: Path) -> None:
    sh([sys.executable, str(REPO / "examples" / "go-app" / "make_base.py"), "--root", str(root),
        "--debs", str(CACHE / "go-debs")])
    # buildah 1.28 ignores FROM --platform=$BUILDPLATFORM and looks for an arm64 entry in the one-platform
    # index: every builder gets the Go builder image as a plain (amd64) manifest instead, which all three
    # run on the build machine
    from polyarch.content.images import ImageStore
    from polyarch.content.store import ContentStore

    images = ImageStore(ContentStore(root))
    images.set_name("base/golang-amd64:1.19", images.images(images.lookup("base/golang:1.19"))[0].descriptor)


def Registry(work: Path, only: Sequence[str] = ("copy", "cross", "qemu")) -> LocalRegistry:
    """The bases (busybox ×3, the Go builder when ``cross`` runs, the Python-like base when ``app`` runs) on a
    loopback ``polyarch registry serve``."""
    def prepare(root: Path) -> None:
        if "cross" in only:
            _go_bases(root)
        if "app" in only:
            _pybase(root)

    return LocalRegistry(work, BASE, prepare)


class Polyarch:
    name = "polyarch"

    def __init__(self, work: Path) -> None:
        self.root = work / "pstore"
        # as installed by pip: with bytecode. A PYTHONDONTWRITEBYTECODE in the environment would make every run
        # compile ~250 modules from source (~0.2 s); the bytecode goes to a cache of our own, not the source tree
        self.bytecode = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(work / "pycache")}
        self.rss = 0
        self.workload = ""
        self.rss_by: dict[str, int] = {}  # workload -> peak RSS (KiB)
        self.pull_ref = ""  # set for ``app``: each cold build is paired with a pull-only run just before it
        self.pulls: list[float] = []
        self.server_pid = 0  # the registry's process: its CPU during a pull-only run or a cold build is counted
        self.cpu: dict[str, list[tuple[float, float]]] = {}  # "pull" / "cold" -> [(own CPU s, registry CPU s)]
        self.cold = False  # the next build starts from an empty store

    def fresh(self) -> None:
        if self.root.exists():
            subprocess.run(["umount", "-R", str(self.root / "snapshots")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        self.cold = True

    def build(self, ctx: Path, dockerfile: Path, platforms: Sequence[str] = PLATFORMS) -> float:
        server = _cpu_of(self.server_pid)
        elapsed, rss = timed_rss([sys.executable, "-m", "polyarch", "--root", str(self.root), "build", str(ctx),
                                  "-f", str(dockerfile), "--platform", ",".join(platforms), "-t", "bench:1",
                                  "--load", "--progress", "plain"], {**EPOCH, **self.bytecode})
        self.rss = max(self.rss, rss)
        self.rss_by[self.workload] = max(self.rss_by.get(self.workload, 0), rss)
        if self.pull_ref and self.cold:
            self.cpu.setdefault("cold", []).append((LAST_CPU[0], _cpu_of(self.server_pid) - server))
        self.cold = False
        return elapsed

    def pull_limit(self, ref: str) -> float:
        """``polyarch pull --all-platforms REF`` into an empty store (the cold build's limit)."""
        root = self.root.parent / "pullstore"
        shutil.rmtree(root, ignore_errors=True)
        try:
            server = _cpu_of(self.server_pid)
            elapsed = timed_rss([sys.executable, "-m", "polyarch", "--root", str(root), "pull", "--all-platforms",
                                 "-q", ref], self.bytecode)[0]
            self.cpu.setdefault("pull", []).append((LAST_CPU[0], _cpu_of(self.server_pid) - server))
            return elapsed
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def push(self, dest: str) -> float:
        return timed_rss([sys.executable, "-m", "polyarch", "--root", str(self.root), "push", "-q", "bench:1",
                          dest], self.bytecode)[0]

    def help(self) -> float:
        return timed_rss([sys.executable, "-m", "polyarch", "--help"], self.bytecode)[0]

    def close(self) -> None:
        self.fresh()


class Buildah:
    name = "buildah"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.driver = "overlay"
        if shutil.which("buildah") is None:
            raise RuntimeError("buildah is not installed")

    def cmd(self) -> list[str]:
        return ["buildah", "--root", str(self.work / "broot"), "--runroot", str(self.work / "brun"),
                "--storage-driver", self.driver]

    def fresh(self) -> None:
        for d in ("broot", "brun", "btmp"):
            if (self.work / d).exists():
                subprocess.run(["umount", "-R", str(self.work / d)], capture_output=True)
                shutil.rmtree(self.work / d, ignore_errors=True)

    def build(self, ctx: Path, dockerfile: Path, platforms: Sequence[str] = PLATFORMS) -> float:
        # TMPDIR: buildah keeps RUN --mount=type=cache dirs in $TMPDIR/buildah-cache, outside --root
        tmp = self.work / "btmp"
        tmp.mkdir(exist_ok=True)
        return timed_rss([*self.cmd(), "bud", "-q", "--layers", "--jobs", "2", "--tls-verify=false",
                          "--platform", ",".join(platforms), "--manifest", "bench:1", "-f", str(dockerfile),
                          str(ctx)], {**EPOCH, "TMPDIR": str(tmp)})[0]

    def close(self) -> None:
        self.fresh()


class BuildKit(Dockerd):
    """BuildKit embedded in a private dockerd (Debian's docker.io); one ``docker build`` per platform, at once."""

    name = "buildkit"

    def build(self, ctx: Path, dockerfile: Path, platforms: Sequence[str] = PLATFORMS) -> float:
        def one(platform: str) -> float:
            tag = "bench:" + platform.replace("/", "-")
            # --network host: RUN's default network is a bridge, which --bridge=none leaves out (polyarch's
            # default RUN network is the host's too)
            return timed_rss([DOCKER, "-H", f"unix://{self.sock}", "build", "--network", "host", "--platform",
                              platform, "-t", tag,
                              "-f", str(dockerfile), str(ctx)], {"DOCKER_BUILDKIT": "1", **EPOCH})[0]

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(len(platforms)) as pool:
            list(pool.map(one, platforms))
        return time.perf_counter() - start


Tool = Polyarch | Buildah | BuildKit


def workloads(work: Path, reg: str, qemu_n: int) -> dict[str, tuple[Path, Path]]:
    """name → (context, Dockerfile) with every FROM naming the local registry."""
    out = {}
    for name, example in (("copy", "shell-app"), ("cross", "go-app")):
        ctx = work / name
        shutil.copytree(REPO / "examples" / example, ctx)
        text = (ctx / "Dockerfile").read_text().replace("FROM base/", f"FROM {reg}/base/") \
            .replace("FROM --platform=$BUILDPLATFORM base/golang:1.19",
                     f"FROM --platform=$BUILDPLATFORM {reg}/base/golang-amd64:1.19")
        (ctx / "Dockerfile").write_text(text)
        out[name] = (ctx, ctx / "Dockerfile")
    ctx = work / "qemu"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(QEMU_DOCKERFILE.format(reg=reg))
    (ctx / "job.awk").write_text(QEMU_JOB.replace("{n}", str(qemu_n)))
    out["qemu"] = (ctx, ctx / "Dockerfile")
    ctx = work / "diff"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DIFF_DOCKERFILE.format(reg=reg))
    out["diff"] = (ctx, ctx / "Dockerfile")
    ctx = work / "app"
    (ctx / "app").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(APP_DOCKERFILE.format(reg=reg))
    rnd = __import__("random").Random(22)
    for i in range(200):
        sub = ctx / "app" / f"m{i % 10}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}.py").write_bytes(bytes(rnd.choice(b"abcdefgh =()\n") for _ in range(rnd.randint(1024, 8192))))
    (ctx / "data.bin").write_bytes(os.urandom(20 << 20))
    out["app"] = (ctx, ctx / "Dockerfile")
    return out


def measure(tool: Tool, ctx: Path, dockerfile: Path, runs: int, platforms: Sequence[str] = PLATFORMS
            ) -> tuple[float, float]:
    cold, warm = [], []
    for _ in range(runs):
        if isinstance(tool, Polyarch) and tool.pull_ref:
            tool.pulls.append(tool.pull_limit(tool.pull_ref))
        tool.fresh()
        cold.append(tool.build(ctx, dockerfile, platforms))
        warm.append(tool.build(ctx, dockerfile, platforms))
    return statistics.median(cold), statistics.median(warm)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--only", default="copy,cross,qemu")
    ap.add_argument("--peers", default="buildkit,buildah")
    ap.add_argument("--qemu-iterations", type=int, default=1_000_000,
                    help="awk loop length of the qemu workload")
    args = ap.parse_args()
    if not BASE.is_dir():
        sys.exit(f"no base store at {BASE}: run the test suite once (tests/conftest.py makes it)")
    if os.geteuid() != 0:
        sys.exit("needs root (runc, overlayfs, dockerd)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-build-"))
    registry = Registry(work, args.only.split(","))
    tools: list[Tool] = [Polyarch(work)]
    tools[0].server_pid = registry.proc.pid  # type: ignore[union-attr]
    missing: list[str] = []
    for peer, cls in (("buildkit", BuildKit), ("buildah", Buildah)):
        if peer in args.peers.split(","):
            try:
                tools.append(cls(work))  # type: ignore[abstract]
            except (RuntimeError, OSError) as exc:
                missing.append(f"{peer}: {exc}")
    try:
        loads = workloads(work, registry.addr, args.qemu_iterations)
        warm = tools[0]  # one untimed polyarch build first: bytecode written, page cache warm
        warm.fresh()  # type: ignore[union-attr]
        first = "app" if "app" in args.only.split(",") else "copy"
        warm.build(*loads[first], platforms_for(first))  # type: ignore[union-attr]
        warm.rss_by.clear()  # type: ignore[union-attr]
        warm.cpu.clear()  # type: ignore[union-attr]
        results: dict[str, dict[str, tuple[float, float]]] = {}
        for name in args.only.split(","):
            ctx, dockerfile = loads[name]
            tools[0].workload = name  # type: ignore[union-attr]
            tools[0].pull_ref = f"{registry.addr}/base/pybase:1" if name == "app" else ""  # type: ignore[union-attr]
            for tool in tools:
                try:
                    results.setdefault(name, {})[tool.name] = measure(tool, ctx, dockerfile, args.runs,
                                                                      platforms_for(name))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    missing.append(f"{tool.name} on {name}: {str(exc)[-1500:]}")
                print(f"  {name:<6} {tool.name:<9} {results.get(name, {}).get(tool.name)}", file=sys.stderr,
                      flush=True)
        report(results, [t.name for t in tools], args.runs, tools[0].rss_by)  # type: ignore[union-attr]
        if "app" in results and "polyarch" in results["app"]:
            app_limits(tools[0], registry.addr, results["app"], args.runs, loads["app"])  # type: ignore[arg-type]
        for line in missing:
            print(f"not measured: {line}")
    finally:
        for tool in tools:
            tool.close()
        registry.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, dict[str, tuple[float, float]]], names: list[str], runs: int,
           rss_kib: dict[str, int]) -> None:
    peers = [n for n in names if n != "polyarch"]
    print(f"\n{' + '.join(PLATFORMS)} (diff: linux/amd64 only) on {os.cpu_count()} cores; median of {runs} "
          f"run(s); seconds; ratio = polyarch / best peer; load average now {_load()}")
    head = f"{'workload':<16}" + "".join(f"{n:>10}" for n in names) + f"{'ratio':>8}  target"
    print(head)
    for name, by_tool in results.items():
        for i, phase in enumerate(("cold", "rebuild")):
            row = f"{name + ' ' + phase:<16}"
            for n in names:
                row += f"{by_tool[n][i]:>10.2f}" if n in by_tool else f"{'-':>10}"
            best = min((by_tool[p][i] for p in peers if p in by_tool), default=None)
            ratio = by_tool["polyarch"][i] / best if best and "polyarch" in by_tool else None
            target = TARGETS["rebuild"] if phase == "rebuild" else TARGETS[name]
            if name == "copy" and phase == "cold":
                target = "<= 0.3x"
            row += f"{(f'{ratio:.2f}' if ratio is not None else '-'):>8}  {target}"
            print(row)
    print("polyarch peak RSS (ru_maxrss from wait4: the largest process of the build's tree, RUN processes "
          "included): " + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in rss_kib.items()))


def _load() -> str:
    """The load average (1, 5, 15 min) as ``uptime`` prints it: the machine may be shared."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def app_limits(tool: Polyarch, reg: str, by_tool: dict[str, tuple[float, float]], runs: int,
               load: tuple[Path, Path]) -> None:
    """The app workload against its limits, measured now: pull-only, push, ``--help``."""
    pulls = tool.pulls or [tool.pull_limit(f"{reg}/base/pybase:1") for _ in range(runs)]
    pushes = []
    for i in range(runs):
        tool.fresh()
        tool.build(*load, APP_PLATFORMS)
        pushes.append(tool.push(f"{reg}/bench/app-{os.getpid()}-{i}:1"))
    helps = sorted(tool.help() for _ in range(5))
    pull, cold, rebuild = statistics.median(pulls), by_tool["polyarch"][0], by_tool["polyarch"][1]
    print(f"app: pull-only limit {pull:.2f} s; cold build {cold:.2f} s = {cold / pull:.2f}x the pull "
          f"(target <= 1.3x); no-change rebuild {rebuild:.2f} s (target < 0.3 s)")
    for what, label in (("pull", "pull-only"), ("cold", "cold build")):
        if tool.cpu.get(what):
            own = statistics.median(c for c, _ in tool.cpu[what])
            server = statistics.median(s for _, s in tool.cpu[what])
            cores = os.cpu_count() or 1
            print(f"app {label}: {own:.2f} CPU-s in polyarch + {server:.2f} CPU-s in the registry (medians): "
                  f"{(own + server) / cores:.2f} s of wall time at the least on {cores} cores")
    if "buildkit" in by_tool:
        bk = by_tool["buildkit"]
        print(f"app vs BuildKit: cold {cold / bk[0]:.2f}x (target <= 0.2x), rebuild {rebuild / bk[1]:.2f}x; "
              f"the pull-only limit alone is {pull / bk[0]:.2f}x BuildKit's cold build")
    print(f"app push to the base's registry (new repository): {statistics.median(pushes):.2f} s (target <= 0.3 s); "
          f"polyarch --help {helps[2]:.3f} s (median of 5; target < 0.15 s); load average {_load()}")


if __name__ == "__main__":
    main()
