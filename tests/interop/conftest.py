"""A private Docker Engine (Debian's docker.io, 20.10) as an independent client: started on a socket of our own
with --iptables=false --bridge=none, data under a temp dir, stopped at the end of the session."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class Docker:
    def __init__(self, sock: Path) -> None:
        self.host = f"unix://{sock}"
        self.binary = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"

    def __call__(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, "-H", self.host, *args], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr}")
        return proc


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        pytest.skip("Debian's docker.io (dockerd) is not installed, or not root")
    base = Path(tempfile.mkdtemp(prefix="pa-dockerd-"))
    sock = base / "docker.sock"
    log = open(base / "log", "wb")
    proc = subprocess.Popen([dockerd, "--iptables=false", "--bridge=none", "--host", f"unix://{sock}",
                             "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
                             "--pidfile", str(base / "pid"), "--insecure-registry", "127.0.0.0/8"],
                            stdout=log, stderr=log)
    client = Docker(sock)
    deadline = time.time() + 60
    while time.time() < deadline:
        if sock.exists() and client("version", check=False).returncode == 0:
            break
        if proc.poll() is not None:
            pytest.fail(f"dockerd exited: {(base / 'log').read_text()[-2000:]}")
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("dockerd did not start in 60 s")
    try:
        yield client
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        subprocess.run(["umount", "-R", str(base / "exec")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
