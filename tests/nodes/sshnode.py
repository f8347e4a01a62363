"""A real OpenSSH server on loopback for the remote-node tests (Debian's openssh-server, run by the test).

``SshNode.start(tmp, node_root)`` makes a host key and a user key, an ``authorized_keys`` whose entry puts this
interpreter's bin directory on ``PATH`` (so the remote command ``polyarch … node serve --stdio`` is this checkout),
an sshd config (loopback only, keys only, no PAM) and a client config (``-F``) with known_hosts checking on;
``sshd -D`` runs until ``stop``. ``ssh_env`` is the environment a client ``polyarch`` needs (``POLYARCH_SSH``, and
``XDG_RUNTIME_DIR``: a short private directory of this server where the clients' shared ssh master connections
live, so no test uses the user's; ``stop`` ends those masters). A second key may carry a forced command (an
impostor node) with ``add_key``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SshNode:
    def __init__(self, base: Path, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.base = base
        self.port = port
        self.proc = proc
        self.runtime = Path(tempfile.mkdtemp(prefix="pa-rt-"))  # short: unix socket paths are limited

    @property
    def control_dir(self) -> Path:
        """Where polyarch keeps the ssh master sockets of clients given ``ssh_env`` (cli/environment.py)."""
        return self.runtime / "polyarch" / "ssh"

    def masters(self) -> list[Path]:
        d = self.control_dir
        return sorted(p for p in d.iterdir() if p.is_socket()) if d.is_dir() else []

    @classmethod
    def start(cls, base: Path) -> SshNode:
        if not Path(SSHD).exists() or shutil.which("ssh") is None:
            raise RuntimeError("openssh-server and openssh-client are needed (apt-get install openssh-server)")
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o700)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for key in ("host_key", "id"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / key)], check=True)
        (base / "authorized_keys").write_text("")
        port = _free_port()
        (base / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\n"
            f"AuthorizedKeysFile {base / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\n"
            f"PermitUserEnvironment yes\nPidFile {base / 'sshd.pid'}\nLogLevel ERROR\n")
        host_pub = (base / "host_key.pub").read_text().split()
        (base / "known_hosts").write_text(f"polynode {host_pub[0]} {host_pub[1]}\n")
        (base / "ssh_config").write_text(
            f"Host polynode\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  HostKeyAlias polynode\n"
            f"  IdentityFile {base / 'id'}\n  IdentitiesOnly yes\n  UserKnownHostsFile {base / 'known_hosts'}\n"
            "  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n"
            f"Host deadnode\n  HostName 127.0.0.1\n  Port {_free_port()}\n  User root\n")
        node = cls(base, port, subprocess.Popen([SSHD, "-D", "-e", "-f", str(base / "sshd_config")],
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        node.add_key(base / "id.pub")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return node
            except OSError:
                if node.proc.poll() is not None:
                    raise RuntimeError("sshd exited: " + node.proc.stderr.read().decode()) from None  # type: ignore[union-attr]
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def add_key(self, pub: Path, *, command: str = "") -> None:
        path = Path(sys.executable).parent
        opts = [f'environment="PATH={path}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"',
                'environment="PYTHONDONTWRITEBYTECODE=1"', "no-pty", "no-port-forwarding", "no-agent-forwarding"]
        if command:
            opts.append(f'command="{command}"')
        with open(self.base / "authorized_keys", "a") as f:
            f.write(",".join(opts) + " " + pub.read_text().strip() + "\n")

    def ssh_env(self, identity: Path | None = None) -> dict[str, str]:
        extra = f" -o IdentityFile={identity}" if identity else ""
        return {"POLYARCH_SSH": f"ssh -F {self.base / 'ssh_config'} -o BatchMode=yes -o ConnectTimeout=5{extra}",
                "XDG_RUNTIME_DIR": str(self.runtime)}

    def stop(self) -> None:
        for sock in self.masters():  # the ssh master connections clients left (ControlPersist)
            subprocess.run(["ssh", "-F", str(self.base / "ssh_config"), "-o", f"ControlPath={sock}", "-O", "exit",
                            "polynode"], capture_output=True, check=False, timeout=10)
        shutil.rmtree(self.runtime, ignore_errors=True)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
