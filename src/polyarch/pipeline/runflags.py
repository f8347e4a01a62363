"""buildx's RUN-environment flags → an ``ops.RunOptions`` (pure parsing; one ``UsageError`` per bad value).

* ``--add-host HOST:IP`` or ``HOST=IP`` (an IPv6 address may be bracketed, ``HOST=IP1,IP2`` gives one line per
  address): lines polyarch writes into the step's ``/etc/hosts``. ``host-gateway`` is refused: RUN steps reach the
  host through slirp4netns or pasta, there is no bridge gateway to name.
* ``--ulimit NAME=SOFT[:HARD]`` (docker's names: ``nofile``, ``nproc``, ``core``…; ``-1`` = unlimited; a missing
  HARD equals SOFT; soft ≤ hard): the step's OCI rlimits. A name given twice: the last wins.
* ``--shm-size SIZE`` (``64m``, ``1g``, bytes; ``0`` = the default 64 MiB): the size of the /dev/shm tmpfs.
* ``--cgroup-parent PATH`` (cgroupfs path components ``[A-Za-z0-9_.@-]``, no ``.``/``..``): the parent of the
  step's cgroup (OCI ``cgroupsPath``). systemd's ``slice:prefix:name`` form is refused (runc runs with cgroupfs),
  and so is the flag in rootless mode (``check_rootless``: an unprivileged user cannot create cgroups).
* ``--no-cache-filter STAGE`` (comma-separated or repeated): the stages whose steps ignore the build cache.

Every option reaches every RUN of the build as part of its ``Exec`` vertex, so it takes part in the step's
cache key (BuildKit: extra hosts, ulimits, the /dev/shm mount and the cgroup parent are fields of the ExecOp).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from polyarch import ops
from polyarch.errors import UsageError

from .gcpolicy import parse_size

__all__ = ["ULIMITS", "check_rootless", "parse_add_hosts", "parse_cgroup_parent", "parse_no_cache_filter", "parse_shm_size",
           "parse_ulimits", "run_options"]

# docker's ulimit names (go-units) → the OCI rlimit type is "RLIMIT_" + the name in capitals
ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack")
_HOST = re.compile(r"[A-Za-z0-9_.-]{1,253}")
_CGROUP_PART = re.compile(r"[A-Za-z0-9_.@-]{1,255}")
_UNLIMITED = -1


def _items(values: Iterable[str]) -> list[str]:
    return [v for v in values if v != ""]


def parse_add_hosts(values: Iterable[str], *, what: str = "--add-host") -> tuple[tuple[str, str], ...]:
    """``HOST:IP`` / ``HOST=IP[,IP…]`` values → (host, ip) pairs, in order.

    :raises UsageError: no separator, an empty or odd host name, an address that is not an IP, ``host-gateway``."""
    out: list[tuple[str, str]] = []
    for value in _items(values):
        host, sep, ips = value.partition("=")
        if not sep:
            host, sep, ips = value.partition(":")
        if not sep or not host or not ips:
            raise UsageError(f"invalid {what} {value!r}: expected HOST:IP or HOST=IP")
        if not _HOST.fullmatch(host):
            raise UsageError(f"invalid {what} {value!r}: {host!r} is not a host name")
        for ip in ips.split(","):
            if ip == "host-gateway":
                raise UsageError(f"invalid {what} {value!r}: host-gateway is not supported",
                                 hint="RUN steps reach the host through slirp4netns or pasta, not a bridge gateway; "
                                      "give the address itself")
            bare = ip[1:-1] if len(ip) > 2 and ip[0] == "[" and ip[-1] == "]" else ip
            try:
                address = ipaddress.ip_address(bare)
            except ValueError:
                raise UsageError(f"invalid {what} {value!r}: {ip!r} is not an IP address") from None
            out.append((host, str(address)))
    return tuple(out)


def _limit(text: str, value: str, what: str) -> int:
    try:
        n = int(text, 10)
    except ValueError:
        raise UsageError(f"invalid {what} {value!r}: {text!r} is not a number",
                         hint="use NAME=SOFT[:HARD] with whole numbers (-1: unlimited)") from None
    if n < _UNLIMITED or n > 2**63 - 1:
        raise UsageError(f"invalid {what} {value!r}: {text} is out of range", hint="-1 (unlimited) or 0…2^63-1")
    return n


def parse_ulimits(values: Iterable[str], *, what: str = "--ulimit") -> tuple[tuple[str, int, int], ...]:
    """``NAME=SOFT[:HARD]`` values → (name, soft, hard), one per name (the last given wins), sorted by name.

    :raises UsageError: an unknown name, a value that is not a whole number ≥ -1, soft above hard."""
    found: dict[str, tuple[str, int, int]] = {}
    for value in _items(values):
        name, eq, limits = value.partition("=")
        if not eq or not name or not limits:
            raise UsageError(f"invalid {what} {value!r}: expected NAME=SOFT[:HARD]")
        if name not in ULIMITS:
            raise UsageError(f"invalid {what} {value!r}: unknown limit {name!r}", hint="use one of " + ", ".join(ULIMITS))
        parts = limits.split(":")
        if len(parts) > 2:
            raise UsageError(f"invalid {what} {value!r}: at most two values, SOFT[:HARD]")
        soft = _limit(parts[0], value, what)
        hard = _limit(parts[1], value, what) if len(parts) == 2 else soft
        if hard != _UNLIMITED and (soft == _UNLIMITED or soft > hard):
            raise UsageError(f"invalid {what} {value!r}: the soft limit is above the hard limit")
        found[name] = (name, soft, hard)
    return tuple(found[k] for k in sorted(found))


def parse_shm_size(value: str | None, *, what: str = "--shm-size") -> int:
    """``64m``, ``1g``, ``1048576`` → bytes; empty or None → 0 (the default size).

    :raises UsageError: not a size."""
    if value is None or str(value).strip() == "":
        return 0
    return parse_size(str(value).strip(), what=what)


def parse_cgroup_parent(value: str | None, *, what: str = "--cgroup-parent") -> str:
    """A cgroupfs path (``build``, ``/polyarch/builds``) → its canonical form ``/a/b``; empty → "".

    :raises UsageError: systemd's ``slice:prefix:name`` form, an empty, ``.``/``..`` or odd component."""
    if not value:
        return ""
    if ":" in value:
        raise UsageError(f"invalid {what} {value!r}: systemd's slice:prefix:name form is not supported",
                         hint="polyarch runs runc with the cgroupfs driver: give a path such as /polyarch/builds")
    parts = value.strip("/").split("/")
    for part in parts:
        if part in (".", "..") or not _CGROUP_PART.fullmatch(part):
            raise UsageError(f"invalid {what} {value!r}: {part!r} is not a cgroup name",
                             hint="path components of letters, digits and _ . @ -")
    return "/" + "/".join(parts)


def parse_no_cache_filter(values: Iterable[str]) -> tuple[str, ...]:
    """Stage names (comma-separated or repeated), as given; matched without regard to case."""
    out: list[str] = []
    for value in values:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return tuple(dict.fromkeys(out))


def run_options(*, add_hosts: Iterable[str] = (), ulimits: Iterable[str] = (), shm_size: str | None = None,
                cgroup_parent: str | None = None) -> ops.RunOptions:
    """The four flags at once.

    :raises UsageError: the first bad value, naming its flag."""
    return ops.RunOptions(extra_hosts=parse_add_hosts(add_hosts), ulimits=parse_ulimits(ulimits),
                          shm_size=parse_shm_size(shm_size), cgroup_parent=parse_cgroup_parent(cgroup_parent))


def check_rootless(options: ops.RunOptions, *, rootless: bool) -> None:
    """:raises UsageError: ``--cgroup-parent`` in rootless mode (an unprivileged user cannot create cgroups)."""
    if rootless and options.cgroup_parent:
        raise UsageError("--cgroup-parent needs polyarch to run as root: a rootless build cannot create cgroups",
                         hint="run as root, or leave --cgroup-parent out")
