"""The network of a RUN step: its own namespace with user-mode outbound networking, an empty one, or the host's.

API (for worker.runc)::

    with StepNetwork("default"|"none"|"host", workdir) as net:   # workdir: the step's bundle
        net.namespace      # OCI namespace entry, or None for the host's
        net.resolv_conf    # text of the container's /etc/resolv.conf
    helper_name(forced="") -> "slirp4netns" | "pasta" | None   # what "default" would use (``forced`` names one)

``default`` (BuildKit's rootless default): a fresh network namespace, made in a short-lived thread
(``unshare(CLONE_NEWNET)``; the namespace is held by a file descriptor, no mount, nothing to clean up), joined
by slirp4netns (``--disable-host-loopback``: the host's 127.0.0.1 is not reachable from the step; its own
sandbox and seccomp filter on, since it parses the step's packets as root) or, when slirp4netns is missing, pasta
(``--no-map-gw`` and no port forwarding into or out of the namespace; it keeps uid 0 with its capabilities
dropped, since as nobody it could not join the namespace, and opens it through a bind mount in the bundle). The step
sees a tap device, 10.0.2.100/24, a default route and the user-mode resolver 10.0.2.3. The helper exits when
the step ends or when the builder dies (slirp4netns: ``--exit-fd``; pasta: parent-death signal).
``none``: a namespace runc creates, with only the loopback device up. ``host``: the host's namespace and
resolv.conf (needs the ``network.host`` entitlement; checked by the caller).

Rootless mode (``worker.userns``): the same, run by uid 0 of the user's namespace; the step's network namespace
belongs to that user namespace, so slirp4netns and pasta (uid 0 there too) join it without privileges on the
host. They open ``/dev/net/tun``, which a normal user must be able to open (Debian's default mode 0666): when it
cannot, the error says so and names the fix.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from polyarch.errors import BuildError

__all__ = ["StepNetwork", "helper_name"]

CLONE_NEWNET = 0x40000000
RESOLVER = "10.0.2.3"
_HELPERS = ("slirp4netns", "pasta")
_READY_TIMEOUT = 10.0


def helper_name(forced: str = "") -> str | None:
    """The user-mode network helper ``default`` uses: ``forced`` (the CLI's ``POLYARCH_NET_HELPER``) when it is
    installed, else the first installed of slirp4netns and pasta."""
    forced = forced.strip()
    for name in (forced,) if forced else _HELPERS:
        if shutil.which(name):
            return name
    return None


def _new_netns() -> int:
    """An O_RDONLY descriptor of a new network namespace (made by a thread that exits right after)."""
    out: dict[str, int] = {}

    def make() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            out["errno"] = ctypes.get_errno()
            return
        out["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    thread = threading.Thread(target=make, name="polyarch-netns")
    thread.start()
    thread.join()
    if "fd" not in out:
        raise BuildError(f"cannot create a network namespace: {os.strerror(out.get('errno', 0))}")
    return out["fd"]


def _host_resolv() -> list[str]:
    try:
        return Path("/etc/resolv.conf").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


class StepNetwork:
    """One step's network (see the module doc); a context manager."""

    def __init__(self, mode: str, workdir: Path, *, helper: str = "") -> None:
        self.mode = mode
        self.workdir = workdir
        self.forced_helper = helper  # see helper_name
        self._bound: Path | None = None
        self.namespace: dict[str, Any] | None = None
        self.resolv_conf = "\n".join(_host_resolv()) + "\n"
        self._fd: int | None = None
        self._helper: subprocess.Popen[bytes] | None = None
        self._exit_w: int | None = None

    def __enter__(self) -> StepNetwork:
        if self.mode == "none":
            self.namespace = {"type": "network"}
        elif self.mode == "default":
            try:
                self._user_mode()
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _user_mode(self) -> None:
        name = helper_name(self.forced_helper)
        if name is None:
            raise BuildError("no user-mode network helper for RUN (slirp4netns or pasta) is installed",
                             hint="apt-get install slirp4netns, or build with --network none")
        self._fd = _new_netns()
        path = f"/proc/{os.getpid()}/fd/{self._fd}"
        self.namespace = {"type": "network", "path": path}
        keep = [line for line in _host_resolv() if line.split()[:1] in (["search"], ["options"], ["domain"])]
        self.resolv_conf = "\n".join([*keep, f"nameserver {RESOLVER}"]) + "\n"
        if name == "slirp4netns":
            self._slirp(path)
        else:
            self._pasta(path)

    def _slirp(self, path: str) -> None:
        ready_r, ready_w = os.pipe()
        exit_r, self._exit_w = os.pipe()
        try:
            self._helper = subprocess.Popen(
                ["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox",
                 "--enable-seccomp", "--netns-type=path",
                 f"--ready-fd={ready_w}", f"--exit-fd={exit_r}", path, "tap0"],
                pass_fds=(ready_w, exit_r), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True)
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
            os.close(exit_r)
        try:
            ready = _read_with_timeout(ready_r)
        finally:
            os.close(ready_r)
        if ready != b"1":
            raise BuildError(f"slirp4netns did not start: {self._helper_error()}", hint=_tun_hint())

    def _pasta(self, path: str) -> None:
        from . import linux

        # pasta, started as root, would switch to nobody and then could not join the namespace: it keeps uid 0
        # (--runas 0) with its capabilities dropped, and opens the namespace through this bind mount
        bound = self.workdir / "netns"
        bound.touch(mode=0o444)
        linux.mount(path, bound, "", flags=linux.MS_BIND)
        self._bound = bound
        # -f: stays our child; the default TCP/UDP forwarding ("auto") would map the host's loopback ports
        # into the namespace, so every direction is "none"; --no-map-gw: the gateway is not the host
        self._helper = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", "pasta", "-f", "--quiet", "--runas", "0", "--config-net", "--no-map-gw",
             "-t", "none", "-u", "none", "-T", "none", "-U", "none", "--dns-forward", RESOLVER,
             "--address", "10.0.2.100", "--netmask", "24", "--gateway", "10.0.2.2", "--ns-ifname", "tap0",
             "--mtu", "65520", "--netns", os.fspath(bound)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_for_device(self._fd, "tap0", self._helper)

    def _helper_error(self) -> str:
        if self._helper is None:
            return ""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self._helper.kill()
            _, err = self._helper.communicate(timeout=5)
            lines = (err or b"").decode("utf-8", "replace").strip().splitlines()
            return lines[-1] if lines else "no output"
        return "no output"

    def close(self) -> None:
        if self._exit_w is not None:
            os.close(self._exit_w)
            self._exit_w = None
        if self._helper is not None:
            helper, self._helper = self._helper, None
            with contextlib.suppress(OSError):
                helper.kill()
            if helper.stderr is not None:
                helper.stderr.close()
            # its exit waits for the kernel to tear the tap device down (~30 ms): reaped off the step's path
            threading.Thread(target=helper.wait, name="polyarch-netreap", daemon=True).start()
        try:
            if self._bound is not None:
                from . import linux

                bound, self._bound = self._bound, None
                linux.umount(bound, detach=True)
                bound.unlink()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _tun_hint() -> str | None:
    """The fix when /dev/net/tun is closed to this process (a normal user's, in rootless mode)."""
    if os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return None
    return "/dev/net/tun is not open to this user: sudo chmod 0666 /dev/net/tun, or build with --network none"


def _read_with_timeout(fd: int) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], _READY_TIMEOUT)
    return os.read(fd, 1) if ready else b""


def _wait_for_device(netns_fd: int | None, name: str, helper: subprocess.Popen[bytes]) -> None:
    """Poll (from a thread that joins the namespace) until ``name`` has a route; pasta has no ready signal."""
    import time

    deadline = time.monotonic() + _READY_TIMEOUT
    result: dict[str, bool] = {}

    def look() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(netns_fd, CLONE_NEWNET) != 0:
            return
        while time.monotonic() < deadline and helper.poll() is None:
            try:
                routes = Path("/proc/thread-self/net/route").read_text()
            except OSError:
                routes = ""
            if any(line.split("\t", 1)[0] == name for line in routes.splitlines()[1:]):
                result["up"] = True
                return
            time.sleep(0.002)

    thread = threading.Thread(target=look, name="polyarch-netwait")
    thread.start()
    thread.join()
    if not result:
        err = b""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            helper.kill()
            _, err = helper.communicate(timeout=5)
        raise BuildError("pasta did not start: " + (err.decode("utf-8", "replace").strip() or "no output"),
                         hint=_tun_hint())
