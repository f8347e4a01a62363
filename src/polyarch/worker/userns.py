"""Rootless mode: a normal user's polyarch process moves itself into a user namespace of its own.

API (for the CLI, which decides when; nothing else calls it)::

    plan = rootless_plan()          # -> UsernsPlan: who, which subordinate ranges; raises BuildError with the fix
    enter(plan)                     # this process is now uid/gid 0 of a fresh user + mount namespace
    in_user_namespace() -> bool     # the process already is in a user namespace other than the host's
    missing() -> list[Missing]      # what rootless mode lacks on this host, each with the command that fixes it

Design (the simplest that keeps every other module unchanged): the polyarch process itself calls
``unshare(CLONE_NEWUSER)`` once, before any thread exists (the kernel refuses it to a threaded process; ``enter``
checks ``/proc/self/task`` first). A small ``sh`` child, started before the unshare and still outside the namespace,
waits for a byte on a pipe and then runs ``newuidmap``/``newgidmap`` (Debian's ``uidmap``, setuid root) on the
parent's pid: uid 0 → the user's own uid, uids 1..N → the user's ``/etc/subuid`` range (the same for groups). The
process then becomes 0:0 of that namespace, with every capability *inside* it, unshares a mount namespace (mounts
private, so nothing it mounts is ever seen outside and every mount vanishes when the build's processes end)
and carries on as if it were root: snapshots are mounted with overlayfs (Linux ≥ 5.11 allows it in a user
namespace; ``userxattr`` is added so overlayfs keeps its whiteout/opaque marks in ``user.overlay.*``, see
``worker.overlay``; fuse-overlayfs where the kernel refuses, else the copying snapshotter), layers are extracted
with their owners (mapped into the subordinate range on disk; a uid beyond the range cannot be represented), runc
runs inside the namespace (it notices the namespace and manages no cgroups it was not delegated; for
``--network=host`` ``worker.runc`` binds /sys instead of mounting a sysfs the namespace does not own),
and each RUN's network is slirp4netns or pasta in a network namespace the user namespace owns. No second polyarch
process, no re-exec, no daemon: ``os.geteuid()`` is the one test of "may mount" everywhere below.

What is read before the unshare stays the user's (the CLI computes store, configuration and credentials paths
first): the store is ``~/.local/share/polyarch``, files it writes belong to the user on disk, files of other uids
in a layer belong to the user's subordinate uids (``rm`` of a rootless store therefore goes through ``polyarch
prune``, or ``podman unshare``-style tools). The runtime's state stays under the store (``<store>/runc-state``,
reaped by ``worker.reap`` like root's), not ``$XDG_RUNTIME_DIR``: runc is uid 0 of the namespace here, not in its
own ``--rootless`` mode (where that directory matters), and its state lives and dies with the store it belongs to.

QEMU emulation needs nothing more once the binfmt handlers carry the F flag (the interpreter is opened at
registration, so it runs in any namespace); registering them is the one step root does (``polyarch binfmt``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from polyarch.errors import BuildError

__all__ = ["IdRange", "Missing", "UsernsPlan", "enter", "in_user_namespace", "missing", "rootless_plan",
           "subordinate_range"]

CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
MS_REC = 16384
MS_PRIVATE = 1 << 18
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
MIN_RANGE = 65536  # uids 0..65535 inside: every uid an image's /etc/passwd ordinarily names


@dataclass(frozen=True, slots=True)
class IdRange:
    """``count`` ids from ``start`` (a line of /etc/subuid or /etc/subgid)."""

    start: int
    count: int


@dataclass(frozen=True, slots=True)
class UsernsPlan:
    """Who enters the namespace and which host ids its ids 0..N map to."""

    user: str
    uid: int
    gid: int
    uids: IdRange
    gids: IdRange


@dataclass(frozen=True, slots=True)
class Missing:
    """Something rootless mode needs that this host lacks, and the command that fixes it."""

    what: str
    fix: str


def _fix_ranges(user: str) -> str:
    return f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"


def subordinate_range(path: Path, user: str, uid: int) -> IdRange | None:
    """The largest range ``path`` (/etc/subuid or /etc/subgid) gives ``user`` (by name or by number)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    best: IdRange | None = None
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        try:
            found = IdRange(int(parts[1]), int(parts[2]))
        except ValueError:
            continue
        if found.count > 0 and (best is None or found.count > best.count):
            best = found
    return best


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def missing(uid: int | None = None) -> list[Missing]:
    """What rootless mode lacks for ``uid`` (default: this process's user): subordinate ranges, the setuid
    ``newuidmap``/``newgidmap`` helpers, user namespaces allowed by the kernel."""
    uid = os.getuid() if uid is None else uid
    user = _user_name(uid)
    out: list[Missing] = []
    for path in (SUBUID, SUBGID):
        found = subordinate_range(path, user, uid)
        if found is None:
            out.append(Missing(f"no subordinate range for {user} in {path}", _fix_ranges(user)))
        elif found.count < MIN_RANGE:
            out.append(Missing(f"{path} gives {user} only {found.count} ids (needs {MIN_RANGE})", _fix_ranges(user)))
    for tool in ("newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            out.append(Missing(f"{tool} is not installed", "sudo apt-get install uidmap"))
    with contextlib.suppress(OSError, ValueError):
        if int(Path("/proc/sys/user/max_user_namespaces").read_text()) == 0:
            out.append(Missing("user namespaces are disabled (user.max_user_namespaces=0)",
                               "sudo sysctl -w user.max_user_namespaces=15000"))
    with contextlib.suppress(OSError, ValueError):
        if int(Path("/proc/sys/kernel/unprivileged_userns_clone").read_text()) == 0:
            out.append(Missing("unprivileged user namespaces are disabled",
                               "sudo sysctl -w kernel.unprivileged_userns_clone=1"))
    return out


def rootless_plan() -> UsernsPlan:
    """The namespace this process's user would enter.

    :raises BuildError: something rootless mode needs is missing (the first thing, with its fix as the hint).
    """
    uid, gid = os.getuid(), os.getgid()
    user = _user_name(uid)
    lacking = missing(uid)
    if lacking:
        raise BuildError(f"rootless mode: {lacking[0].what}", hint=lacking[0].fix)
    uids = subordinate_range(SUBUID, user, uid)
    gids = subordinate_range(SUBGID, user, uid)
    assert uids is not None and gids is not None
    return UsernsPlan(user, uid, gid, uids, gids)


def in_user_namespace() -> bool:
    """Is this process in a user namespace other than the initial one (its uid_map is not the identity)?"""
    try:
        lines = Path("/proc/self/uid_map").read_text().split("\n")
    except OSError:
        return False
    rows = [line.split() for line in lines if line.strip()]
    return rows != [["0", "0", "4294967295"]]


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _unshare(flags: int, what: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise BuildError(f"rootless mode: cannot create a {what} namespace: {os.strerror(err)}",
                         hint="check `polyarch doctor`")


_MAPPER = ('read -r _ && newuidmap "$1" 0 "$2" 1 1 "$3" "$4" && newgidmap "$1" 0 "$5" 1 1 "$6" "$7"')


def enter(plan: UsernsPlan) -> None:
    """Move this (single-threaded) process into a new user namespace mapped by ``plan``, become 0:0 there, and
    into a private mount namespace (see the module doc).

    :raises BuildError: the process has threads, the kernel refused, or the id helpers failed (their message).
    """
    if _threads() > 1:
        raise BuildError("rootless mode: cannot enter a user namespace from a process with threads")
    count_u = plan.uids.count
    count_g = plan.gids.count
    args = [str(os.getpid()), str(plan.uid), str(plan.uids.start), str(count_u), str(plan.gid),
            str(plan.gids.start), str(count_g)]
    mapper = subprocess.Popen(["sh", "-c", _MAPPER, "polyarch-idmap", *args], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert mapper.stdin is not None
    try:
        _unshare(CLONE_NEWUSER, "user")
    except BaseException:
        mapper.kill()
        mapper.wait()
        raise
    _, err = mapper.communicate(b"go\n", timeout=60)
    if mapper.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        raise BuildError("rootless mode: newuidmap/newgidmap failed: " + (lines[-1] if lines else "no output"),
                         hint=_fix_ranges(plan.user))
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    with contextlib.suppress(OSError):
        os.setgroups([])
    _unshare(CLONE_NEWNS, "mount")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise BuildError(f"rootless mode: cannot make mounts private: {os.strerror(ctypes.get_errno())}")
