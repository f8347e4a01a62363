"""Start Debian's ``docker-registry`` (distribution 2.8.2) on a free port (loopback unless told otherwise), for tests
and benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["RefRegistry", "free_port", "start_registry"]


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


@dataclass
class RefRegistry:
    host: str  # ADDRESS:PORT (127.0.0.1 unless another address was asked for)
    root: Path
    proc: subprocess.Popen[bytes]
    user: str = ""
    password: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_registry(workdir: Path, *, user: str = "", password: str = "", address: str = "127.0.0.1") -> RefRegistry:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(address)
    auth = ""
    if user:
        htpasswd = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, check=True).stdout
        (workdir / "htpasswd").write_bytes(htpasswd)
        auth = f"auth:\n  htpasswd:\n    realm: polyarch-test\n    path: {workdir / 'htpasswd'}\n"
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}:{port}\n  secret: polyarch-test-secret\n"
        + auth
    )
    log = open(workdir / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    reg = RefRegistry(f"{address}:{port}", workdir, proc, user, password)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(workdir / 'registry.log').read_text()[-500:]}")
        try:
            httpx.get(f"{reg.url}/v2/", timeout=1)
            return reg
        except httpx.HTTPError:
            time.sleep(0.05)
    reg.stop()
    raise RuntimeError("docker-registry did not start within 15 s")
