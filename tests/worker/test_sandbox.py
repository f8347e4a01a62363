"""The RUN sandbox through real runc: own network namespace without the host's loopback, no_new_privs,
Docker's seccomp policy (natively and under QEMU), masked and read-only /proc and /sys paths, insecure mode."""

from __future__ import annotations

import contextlib
import ctypes
import os
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

CLONE_NEWNET = 0x40000000
STATUS = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '"


@pytest.fixture
def env(store_root: Path) -> Env:
    return Env(store_root)


@pytest.fixture
def test_host() -> Iterator[tuple[str, int]]:
    """A test host of our own: a network namespace joined to this one by a veth pair (10.203.0.1 here,
    10.203.0.2 there). Yields (its address, an fd of its namespace). Outbound traffic of a step goes there and
    nowhere else: this machine's own addresses are not targets."""
    ns, here = f"pa-th-{os.getpid()}", f"pa-th{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["ip", "link", "add", here, "type", "veth", "peer", "name", "eth0", "netns", ns],
                    ["ip", "addr", "add", "10.203.0.1/30", "dev", here], ["ip", "link", "set", here, "up"],
                    ["ip", "-n", ns, "addr", "add", "10.203.0.2/30", "dev", "eth0"],
                    ["ip", "-n", ns, "link", "set", "eth0", "up"], ["ip", "-n", ns, "link", "set", "lo", "up"]):
            subprocess.run(cmd, check=True)
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield "10.203.0.2", fd
        finally:
            os.close(fd)
    finally:
        subprocess.run(["ip", "link", "del", here], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _socket_in(netns_fd: int | None) -> socket.socket:
    """A TCP socket made in the network namespace ``netns_fd`` (None: this one). setns(2) moves only the calling
    thread, so it is made in a thread of its own; a socket stays in the namespace it was made in."""
    if netns_fd is None:
        return socket.socket()
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            if ctypes.CDLL(None, use_errno=True).setns(netns_fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            made.append(socket.socket())
        except BaseException as exc:
            made.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


@contextlib.contextmanager
def listener(address: str, netns_fd: int | None = None) -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on ``address`` (in namespace ``netns_fd``); yields (port, what each accepted connection
    sent)."""
    srv = _socket_in(netns_fd)
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
                                                                 test_host: tuple[str, int]) -> None:
    from polyarch.worker.runc import Runner, RuntimeOptions

    env.runner = Runner(env.root, RuntimeOptions(net_helper=helper))  # what POLYARCH_NET_HELPER makes the CLI pass
    remote, remote_ns = test_host
    with listener("127.0.0.1") as (lport, lgot), listener(remote, remote_ns) as (hport, hgot):
        script = (f"for a in 127.0.0.1 10.0.2.2 10.203.0.1; do echo ping | timeout 5 nc -w 2 $a {lport} "
                  f">/dev/null 2>&1 && echo loopback-open-$a || echo loopback-closed-$a; done; "
                  f"(echo ping | timeout 5 nc -w 2 {remote} {hport}) 2>/dev/null; "
                  "ip route | grep default | cut -d' ' -f1-5; grep nameserver /etc/resolv.conf; "
                  "awk -F: 'NR>2 {gsub(/ /, \"\", $1); print $1}' /proc/net/dev | sort | tr '\\n' ' '")
        lines, _ = env.run("linux/amd64", script, commit=False)
    assert lines[:3] == ["loopback-closed-127.0.0.1", "loopback-closed-10.0.2.2", "loopback-closed-10.203.0.1"]
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
