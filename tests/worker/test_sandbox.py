"""The RUN sandbox through real runc: own network namespace without the host's loopback, no_new_privs,
Docker's seccomp policy (natively and under QEMU), masked and read-only /proc and /sys paths, insecure mode."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyarch.worker.seccomp import profile
from tests.worker.conftest import have_runc, is_root
from tests.worker.test_runc import Env, emulators  # noqa: F401  (fixture)

pytestmark = [pytest.mark.root, pytest.mark.skipif(not is_root() or not have_runc(), reason="needs root and runc")]

STATUS = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '"


@pytest.fixture
def env(store_root: Path) -> Env:
    return Env(store_root)


def _host_address() -> str:
    """A non-loopback IPv4 address of this host (CI machines and VMs have one)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                         check=True).stdout
    addrs = [line.split()[3].split("/")[0] for line in out.splitlines()]
    assert addrs, "the host has no global IPv4 address"
    return addrs[0]


@contextlib.contextmanager
def listener(address: str) -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on ``address``; yields (port, what each accepted connection sent)."""
    srv = socket.socket()
    srv.bind((address, 0))
    srv.listen(8)
    srv.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    got.append(conn.recv(100))
                    conn.sendall(b"pong\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield srv.getsockname()[1], got
    finally:
        stop.set()
        thread.join()
        srv.close()


@pytest.mark.parametrize("helper", ["slirp4netns", "pasta"])
def test_default_network_is_own_namespace_without_host_loopback(env: Env, helper: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYARCH_NET_HELPER", helper)
    host = _host_address()
    with listener("127.0.0.1") as (lport, lgot), listener(host) as (hport, hgot):
        script = (f"for a in 127.0.0.1 10.0.2.2 {host}; do echo ping | timeout 5 nc -w 2 $a {lport} >/dev/null "
                  f"2>&1 && echo loopback-open-$a || echo loopback-closed-$a; done; "
                  f"(echo ping | timeout 5 nc -w 2 {host} {hport}) 2>/dev/null; "
                  "ip route | grep default | cut -d' ' -f1-5; grep nameserver /etc/resolv.conf; "
                  "awk -F: 'NR>2 {gsub(/ /, \"\", $1); print $1}' /proc/net/dev | sort | tr '\\n' ' '")
        lines, _ = env.run("linux/amd64", script, commit=False)
    assert lines[:3] == ["loopback-closed-127.0.0.1", "loopback-closed-10.0.2.2", f"loopback-closed-{host}"]
    assert lgot == []  # nothing of the step ever reached the host's loopback listener
    assert lines[3] == "pong" and b"ping\n" in hgot  # outbound connections work
    assert lines[-3:-1] == ["default via 10.0.2.2 dev tap0", "nameserver 10.0.2.3"]
    assert lines[-1].split() == ["lo", "tap0"]


def test_network_none_and_host(env: Env) -> None:
    lines, _ = env.run("linux/amd64", "ls /sys/class/net; ip route | wc -l", network="none", commit=False)
    assert lines == ["lo", "0"]
    host_ifaces = sorted(p.name for p in Path("/sys/class/net").iterdir())
    lines, _ = env.run("linux/amd64", "ls /sys/class/net", network="host", commit=False)
    assert sorted(lines) == host_ifaces


@pytest.mark.binfmt
@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_no_new_privs_and_seccomp(env: Env, emulators: None, platform: str) -> None:  # noqa: F811
    script = (f"{STATUS}; unshare -U true 2>&1 || echo unshare-failed; "
              "uname -m; wget -q -O /dev/null http://10.0.2.3/ 2>/dev/null; echo still-running")
    lines, _ = env.run(platform, script, commit=False)
    assert lines[:2] == ["NoNewPrivs: 1", "Seccomp: 2"]
    assert "Operation not permitted" in lines[2] and lines[3] == "unshare-failed"
    assert lines[4] == ("x86_64" if platform == "linux/amd64" else "aarch64")
    assert lines[-1] == "still-running"


def test_masked_and_readonly_paths(env: Env) -> None:
    script = ("wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
              "(echo x > /proc/sys/kernel/hostname) 2>/dev/null && echo proc-sys-writable || echo proc-sys-ro; "
              "touch /sys/x 2>/dev/null && echo sys-writable || echo sys-ro")
    lines, _ = env.run("linux/amd64", script, commit=False)
    assert lines == ["0", "0", "proc-sys-ro", "sys-ro"]


def test_insecure_lifts_the_sandbox(env: Env) -> None:
    lines, _ = env.run("linux/amd64", f"{STATUS}; unshare -U true && echo unshare-ok", security="insecure",
                       commit=False)
    assert lines == ["NoNewPrivs: 0", "Seccomp: 0", "unshare-ok"]


def test_profile_is_dockers_policy() -> None:
    amd64 = profile("x86_64", caps=["CAP_CHOWN", "CAP_SYS_CHROOT"])
    allowed = set(amd64["syscalls"][0]["names"])
    assert amd64["defaultAction"] == "SCMP_ACT_ERRNO" and amd64["defaultErrnoRet"] == 1
    assert amd64["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert {"read", "execve", "clone" not in allowed, "arch_prctl", "chroot"} - {True} <= allowed
    assert not allowed & {"unshare", "mount", "setns", "keyctl", "add_key", "bpf", "reboot", "kexec_load",
                          "init_module", "open_by_handle_at", "clone"}
    arm64 = profile("aarch64")
    names = set(arm64["syscalls"][0]["names"])
    assert "arch_prctl" not in names and "cacheflush" in names and "chroot" not in names
    assert arm64["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    admin = set(profile("x86_64", caps=["CAP_SYS_ADMIN"])["syscalls"][0]["names"])
    assert {"mount", "unshare", "setns", "clone"} <= admin
