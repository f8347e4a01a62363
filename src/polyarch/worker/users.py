"""``USER`` resolution inside a rootfs: names through the rootfs's /etc/passwd and /etc/group (never the host's).

API::

    resolve_user(rootfs, "app[:group]" | "1000[:1000]" | "") -> ResolvedUser(uid, gid, additional_gids, home)

Files are read through rooted resolution (a symlinked /etc/passwd cannot point at the host's) and bounded in
size. Numeric ids need no entry; a numeric uid with an entry takes that entry's primary gid and home.
Additional groups are the groups of /etc/group that list the user name (as Docker does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from polyarch.errors import BuildError

from .securepath import secure_join

__all__ = ["ResolvedUser", "read_db", "resolve_user"]

_MAX_DB = 16 << 20


@dataclass(frozen=True, slots=True)
class ResolvedUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"
    name: str = ""


def read_db(rootfs: str | os.PathLike[str], path: str) -> list[list[str]]:
    """Colon-separated records of a file in the rootfs; [] when it does not exist."""
    host = secure_join(rootfs, path)
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise BuildError(f"cannot read {path} in the rootfs: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        data = f.read(_MAX_DB + 1)
    if len(data) > _MAX_DB:
        raise BuildError(f"{path} in the rootfs is larger than {_MAX_DB} bytes")
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.split(":"))
    return out


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 11 and int(text) < 2**32 - 1 else None


def resolve_user(rootfs: str | os.PathLike[str], user: str) -> ResolvedUser:
    """Resolve ``user[:group]`` in the rootfs.

    :raises BuildError: unknown user or group name, or an invalid id.
    """
    name, _, group = (user or "0").partition(":")
    passwd = read_db(rootfs, "/etc/passwd")
    entry = None
    uid = _int(name)
    for rec in passwd:
        if len(rec) < 7:
            continue
        if (uid is None and rec[0] == name) or (uid is not None and _int(rec[2]) == uid):
            entry = rec
            break
    if uid is None:
        if entry is None:
            raise BuildError(f"unable to find user {name}: no matching entries in passwd file")
        uid = _int(entry[2])
        if uid is None:
            raise BuildError(f"invalid uid {entry[2]!r} for user {name} in /etc/passwd")
    gid = _int(entry[3]) if entry is not None else 0
    home = entry[5] if entry is not None and entry[5] else "/"
    username = entry[0] if entry is not None else ""
    groups = read_db(rootfs, "/etc/group")
    if group:
        g = _int(group)
        if g is None:
            for rec in groups:
                if len(rec) >= 3 and rec[0] == group:
                    g = _int(rec[2])
                    break
            if g is None:
                raise BuildError(f"unable to find group {group}: no matching entries in group file")
        gid = g
    extra: list[int] = []
    if username and not group:
        for rec in groups:
            if len(rec) >= 4 and username in rec[3].split(","):
                g = _int(rec[2])
                if g is not None and g != gid and g not in extra:
                    extra.append(g)
    return ResolvedUser(uid, gid if gid is not None else 0, tuple(extra), home, username)
