"""Shared plumbing of the build benchmarks: commands, a loopback ``polyarch registry serve`` holding the base
images every builder pulls, and a private Docker engine (Debian's docker.io) whose BuildKit is the peer."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["DOCKER", "Dockerd", "LocalRegistry", "free_port", "sh", "wait_for"]

DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def sh(cmd: Sequence[str], *, env: dict[str, str] | None = None, check: bool = True, cwd: Path | None = None,
       timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        raise RuntimeError(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start in {seconds:.0f} s")


class LocalRegistry:
    """``polyarch registry serve`` over a copy of the store ``base`` (``prepare(root)`` may add images first)."""

    def __init__(self, work: Path, base: Path, prepare: Callable[[Path], None] | None = None) -> None:
        self.root = work / "registry"
        shutil.copytree(base, self.root, ignore=shutil.ignore_patterns(".complete", "buildcache.db*", "snapshots"))
        if prepare is not None:
            prepare(self.root)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "polyarch", "--root", str(self.root), "registry",
                                      "serve", "--addr", self.addr], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(up, "polyarch registry serve")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class Dockerd:
    """A private dockerd (``--iptables=false --bridge=none``, its own socket and data root under ``work``)."""

    def __init__(self, work: Path) -> None:
        dockerd = shutil.which("dockerd")
        if dockerd is None or (not Path(DOCKER).exists() and shutil.which(DOCKER) is None):
            raise RuntimeError("dockerd or the docker client is not installed (Debian's docker.io)")
        self.base = work / "dockerd"
        self.base.mkdir()
        self.sock = self.base / "docker.sock"
        self.log = open(self.base / "log", "wb")
        self.proc = subprocess.Popen([dockerd, "--iptables=false", "--bridge=none", "--host",
                                      f"unix://{self.sock}", "--data-root", str(self.base / "data"),
                                      "--exec-root", str(self.base / "exec"), "--pidfile", str(self.base / "pid"),
                                      "--insecure-registry", "127.0.0.0/8"], stdout=self.log, stderr=self.log)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(self.base / 'log').read_text()[-2000:]}")
            return self.sock.exists() and self.docker("version", check=False).returncode == 0

        wait_for(up, "dockerd")

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh([DOCKER, "-H", f"unix://{self.sock}", *args], check=check)

    def fresh(self) -> None:
        """Forget every image and the build cache: the next build is cold."""
        self.docker("builder", "prune", "-af")
        self.docker("image", "prune", "-af")
        images = self.docker("images", "-aq").stdout.split()
        if images:
            self.docker("rmi", "-f", *images)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        subprocess.run(["umount", "-R", str(self.base / "exec")], capture_output=True)
        subprocess.run(["umount", "-R", str(self.base / "data")], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
