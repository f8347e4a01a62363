"""Hosts asked over a real ssh round trip, to an sshd of our own on loopback (Debian's openssh-server)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from polyarch import platform as plat
from polyarch.content.images import ImageStore

from .images import put_index, tiny

Run = Callable[..., "subprocess.CompletedProcess[str]"]

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """An sshd on 127.0.0.1 accepting a fresh key for the current user: (ssh://target, env with POLYARCH_SSH)."""
    if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")) or not shutil.which("ssh-keygen"):
        pytest.skip("openssh-server is not installed")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n"
        f"PidFile {d / 'sshd.pid'}\nPermitRootLogin prohibit-password\n")
    os.makedirs("/run/sshd", exist_ok=True)
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.skip(f"sshd did not start: {proc.stderr.read().decode()[-300:]}")  # type: ignore[union-attr]
                time.sleep(0.1)
        ssh = (f"ssh -i {d / 'client'} -o BatchMode=yes -o StrictHostKeyChecking=no "
               f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
        user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        yield f"ssh://{user}@127.0.0.1:{port}", {"POLYARCH_SSH": ssh}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_host_asked_over_ssh(sshd: tuple[str, dict[str, str]], images: ImageStore, tmp_path: Path,
                             run_cli: Run) -> None:
    target, env = sshd
    put_index(images, "app/web:1", [tiny(images, p) for p in ("linux/amd64", "linux/arm64")])
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(f"hosts:\n  here: {target}\n  gone: ssh://nobody@127.0.0.1:{_free_port()}\n")
    proc = run_cli("audit", "--hosts", str(hosts), "--image", "app/web:1", "--format", "json",
                   "--ssh-timeout", "20", root=images.store.root, env=env, check=False)
    doc = json.loads(proc.stdout)
    here, gone = doc["hosts"]
    assert here["platform"] == str(plat.host()) and here["source"] == target
    assert doc["images"][0]["hosts"]["here"]["status"] == "native"
    assert gone["platform"] is None and "failed" in gone["error"]
    assert doc["images"][0]["hosts"]["gone"] == {"status": "unknown"}
    assert proc.returncode == 1

