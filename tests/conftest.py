"""Shared fixtures: multi-platform busybox base images made from Debian packages, and a CLI runner.

The rootfs tarballs and a store holding ``base/busybox:1`` (linux/amd64, linux/arm64, linux/arm/v7) are built
once and cached in ``$POLYARCH_TEST_CACHE`` (default ``~/.cache/polyarch-tests``) between runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("POLYARCH_TEST_CACHE", Path.home() / ".cache" / "polyarch-tests"))
PLATFORM_DEBARCH = {"linux/amd64": "amd64", "linux/arm64": "arm64", "linux/arm/v7": "armhf"}
BASE_NAME = "base/busybox:1"


def run_cli(*args: str, root: Path | str | None = None, check: bool = True, input: bytes | None = None,
            env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m polyarch ARGS`` as a user would; returns the completed process (text mode)."""
    full_env = {**os.environ, **(env or {})}
    if root is not None:
        full_env["POLYARCH_ROOT"] = str(root)
    proc = subprocess.run([sys.executable, "-m", "polyarch", *args], capture_output=True, env=full_env,
                          input=input.decode() if input is not None else None, text=True, timeout=timeout,
                          cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"polyarch {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(name="run_cli")
def run_cli_fixture() -> object:
    """The ``run_cli`` function, as a fixture."""
    return run_cli


@pytest.fixture(scope="session")
def busybox_tars() -> dict[str, Path]:
    """platform → rootfs tar built from Debian's busybox-static for that architecture."""
    out = CACHE / "busybox"
    debarches = list(PLATFORM_DEBARCH.values())
    if not all((out / f"rootfs-{a}.tar").exists() for a in debarches):
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "busybox_rootfs.py"), "--out", str(out),
                               *debarches], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot make busybox rootfs from Debian packages: {proc.stderr.strip()[-300:]}")
    return {p: out / f"rootfs-{a}.tar" for p, a in PLATFORM_DEBARCH.items()}


@pytest.fixture(scope="session")
def base_root(busybox_tars: dict[str, Path]) -> Path:
    """A store root holding base/busybox:1 (three platforms). Treat it as read-only."""
    root = CACHE / "base-store"
    marker = root / ".complete"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        args = ["import", "-t", BASE_NAME]
        for p, tar in busybox_tars.items():
            args += ["--platform", f"{p}={tar}"]
        run_cli(*args, root=root, env={"SOURCE_DATE_EPOCH": "1700000000"})
        marker.write_text("ok\n")
    return root


@pytest.fixture
def store_root(base_root: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh writable store root pre-populated with base/busybox:1."""
    root = tmp_path / "store"
    shutil.copytree(base_root, root, ignore=shutil.ignore_patterns(".complete", "ingest"))
    (root / "ingest").mkdir(exist_ok=True)
    yield root


@pytest.fixture
def empty_root(tmp_path: Path) -> Path:
    return tmp_path / "empty-store"


@pytest.fixture
def local_address() -> Iterator[str]:
    """A non-loopback address of this machine, on a veth pair made for the test (loopback registries get plain
    http without asking, so insecure-registry tests need another address). Name and address depend on the pid:
    two sessions may run such tests at once."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed")
    n = os.getpid()
    name, address = f"pa-ins{n % 100000}", f"10.204.{n % 250 + 1}.1"
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", name], check=True)
        for dev in (name, name + "p"):
            subprocess.run(["ip", "link", "set", dev, "up"], check=True)
        yield address
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_opens(port: int, proc: subprocess.Popen, timeout: float) -> bool:  # type: ignore[type-arg]
    """Whether something accepts connections on loopback ``port`` within ``timeout`` seconds, while ``proc``
    (the server being started) is still running."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)


@contextmanager
def serve_registry(root: Path, *extra: str) -> Iterator[str]:
    """``polyarch registry serve`` (the embedded registry: referrers API) with its own store at ``root`` on a free
    loopback port; yields ``host:port``, and stops it on exit. ``extra``: more ``registry serve`` arguments."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = (root.parent / f"{root.name}-serve.log").open("wb")  # a file, not a pipe nobody drains
    proc = subprocess.Popen([sys.executable, "-m", "polyarch", "--root", str(root), "registry", "serve",
                             "--addr", f"127.0.0.1:{port}", *extra], stdout=subprocess.DEVNULL, stderr=log)
    try:
        if not port_opens(port, proc, 20):
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail(f"registry did not start: {log.name}: {Path(log.name).read_text(errors='replace')}")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
