"""``RUN --mount=…`` values: CSV ``key[=value]`` fields → a typed ``Mount``, with BuildKit's rules and defaults.

Two passes, as BuildKit does them:

* at parse time (``check_mount``) only the CSV syntax and the ``from`` option are checked: ``from`` cannot use a
  variable (a ``$`` anywhere but last), "define alias stage instead";
* at plan time (``parse_mount``) every ``key=value`` field's value is expanded on its own (``expand``), then the
  fields are applied in order and validated: ``type=$T`` is a bind, cache, tmpfs, secret or ssh mount once ``T``
  is known. ``required`` and ``size`` are checked against the type given *before* them.

Types (default ``bind``) and their defaults: ``bind``, ``secret`` and ``ssh`` are read-only, ``cache`` and
``tmpfs`` read-write; ``mode``/``uid``/``gid`` only for ``cache``, ``secret`` and ``ssh``; ``sharing`` only for
``cache`` (default ``shared``); ``size`` only for ``tmpfs``; ``required`` only for ``secret`` and ``ssh``.
A cache's id defaults to its target as written (cleaned); a secret's id is ``source`` or ``id`` or the base name
of the target, its target ``/run/secrets/<id>`` unless it is an ``env`` secret; an ssh mount's id is
``default`` and its target ``/run/buildkit/ssh_agent.N``. ``target`` is kept as written: an empty or relative
target is resolved against the working directory by the RUN handler (``resolve_target``).
"""

from __future__ import annotations

import csv
import difflib
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

from polyarch.errors import ParseError

__all__ = ["MOUNT_TYPES", "Mount", "check_mount", "mount_fields", "parse_mount", "parse_size", "resolve_target"]

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_GO_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
            "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_KEYS = ("type", "from", "source", "target", "readonly", "id", "sharing", "required", "size", "mode", "uid", "gid",
         "src", "dst", "destination", "ro", "rw", "readwrite", "env")
_FILE_INFO = frozenset({"cache", "secret", "ssh"})


@dataclass(frozen=True, slots=True)
class Mount:
    type: str
    target: str = ""  # as written (may be empty or relative: see ``resolve_target``)
    source: str = ""
    from_: str = ""
    readonly: bool = False
    id: str = ""
    sharing: str = ""
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    env: str = ""
    size: int = 0


def parse_size(text: str) -> int:
    """``64m``, ``1g``, ``512k``, ``1024`` (binary units, like go-units RAMInBytes) → bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?", text.strip().lower())
    if not m:
        raise ParseError(f"invalid size {text!r}")
    factor = 1024 ** "_kmgtp".index(m.group(2) or "_")
    return int(float(m.group(1)) * factor)


def mount_fields(spec: str) -> list[str]:
    """The CSV fields of one ``--mount`` value. :raises ParseError: malformed CSV."""
    try:
        return next(csv.reader([spec], strict=True))
    except (csv.Error, StopIteration):
        raise ParseError(f"failed to parse csv mounts: {spec!r}") from None


def check_mount(spec: str) -> None:
    """The parse-time check: CSV syntax, and no variable in ``from``.

    :raises ParseError: (without a span)."""
    for field in mount_fields(spec):
        key, eq, value = field.partition("=")
        if eq and key.lower() == "from" and "$" in value[:-1]:
            raise ParseError("'from' doesn't support variable expansion, define alias stage instead")


def _go_bool(key: str, value: str) -> bool:
    try:
        return _GO_BOOL[value]
    except KeyError:
        raise ParseError(f"invalid value for {key}: {value}") from None


def _uint(key: str, value: str, base: int) -> int:
    try:
        number = int(value, base)
    except ValueError:
        number = -1
    if not 0 <= number < 2**32 or not value.isalnum():
        raise ParseError(f"invalid value {value} for {key}")
    return number


def parse_mount(spec: str, expand: Callable[[str], str] | None = None, *, ssh_index: int = 0) -> Mount:
    """Parse one ``--mount`` value, expanding each option's value with ``expand`` first.

    :raises ParseError: (without a span) unknown type or key, bad value, a key the type does not take.
    """
    kind, values, readonly, required = "bind", {}, None, False  # type: tuple[str, dict[str, str], bool | None, bool]
    for field in mount_fields(spec):
        key, eq, value = field.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                readonly = True
            elif key in ("readwrite", "rw"):
                readonly = False
            elif key == "required" and kind in ("secret", "ssh"):
                required = True
            elif key == "required":
                raise ParseError(f"unexpected key '{key}' for mount type '{kind}'")
            else:
                raise ParseError(f"invalid field '{field}' must be a key=value pair")
            continue
        if expand is not None:
            value = expand(value)
        if key == "type":
            if value.lower() not in MOUNT_TYPES:
                close = difflib.get_close_matches(value.lower(), MOUNT_TYPES, n=1)
                raise ParseError(f'unsupported mount type "{value}"'
                                 + (f", did you mean {close[0]}?" if close else f" (want one of {', '.join(MOUNT_TYPES)})"))
            kind = value.lower()
        elif key in ("readonly", "ro"):
            readonly = _go_bool(key, value)
        elif key in ("readwrite", "rw"):
            readonly = not _go_bool(key, value)
        elif key == "required" or key == "size":
            if kind not in (("secret", "ssh") if key == "required" else ("tmpfs",)):
                raise ParseError(f"unexpected key '{key}' for mount type '{kind}'")
            if key == "required":
                required = _go_bool(key, value)
            else:
                values["size"] = value
        elif key in _KEYS:
            canon = {"src": "source", "dst": "target", "destination": "target"}.get(key, key)
            values[canon] = value
        else:
            close = difflib.get_close_matches(key, _KEYS, n=1)
            raise ParseError(f"unexpected key '{key}' in '{field}'" + (f", did you mean {close[0]}?" if close else ""))
    return _build(kind, values, readonly, required, ssh_index)


def _build(kind: str, values: dict[str, str], readonly: bool | None, required: bool, ssh_index: int) -> Mount:
    if kind not in _FILE_INFO:
        for key in ("mode", "uid", "gid"):
            if key in values:
                raise ParseError(f"{key} not allowed for {kind!r} type mounts")
    mode = _uint("mode", values["mode"], 8) if "mode" in values else None
    uid = _uint("uid", values["uid"], 10) if "uid" in values else None
    gid = _uint("gid", values["gid"], 10) if "gid" in values else None
    sharing = values.get("sharing", "").lower()
    if "sharing" in values and sharing not in ("shared", "private", "locked"):
        raise ParseError(f"unsupported sharing value {values['sharing']!r} (want shared, private or locked)")
    target, source, mount_id = values.get("target", ""), values.get("source", ""), values.get("id", "")
    if kind == "secret":
        if values.get("from"):
            raise ParseError("secret mount should not have a from")
        if sharing:
            raise ParseError("secret mount should not define sharing")
        if not source and not target and not mount_id:
            raise ParseError("invalid secret mount. one of source, target required")
        if source and mount_id:
            raise ParseError("both source and id can't be set")
        mount_id = source or mount_id or posixpath.basename(target)
        source = ""
        if not target and "env" not in values:
            target = "/run/secrets/" + posixpath.basename(mount_id)
    elif sharing and kind != "cache":
        raise ParseError(f"invalid cache sharing set for {kind} mount")
    elif kind == "ssh":
        if source:
            raise ParseError("ssh does not support source")
        mount_id = mount_id or "default"
        target = target or f"/run/buildkit/ssh_agent.{ssh_index}"
    elif kind == "cache":
        mount_id = mount_id or posixpath.normpath(target or ".")
    default_mode = {"secret": 0o400, "ssh": 0o600, "cache": 0o755}.get(kind)
    zero = 0 if kind in _FILE_INFO else None
    return Mount(type=kind, target=target, source=source, from_=values.get("from", "") if kind != "tmpfs" else "",
                 readonly=readonly if readonly is not None else kind in ("bind", "secret", "ssh"),
                 id=mount_id, sharing=sharing or ("shared" if kind == "cache" else ""),
                 mode=default_mode if mode is None else mode, uid=zero if uid is None else uid,
                 gid=zero if gid is None else gid, required=required, env=values.get("env", ""),
                 size=parse_size(values["size"]) if values.get("size") else 0)


def resolve_target(target: str, workdir: str) -> str:
    """Where a mount goes: an absolute target as written, else the target relative to the working directory (an
    empty target *is* the working directory), as BuildKit resolves it.

    :raises ParseError: the result is ``/``."""
    if not posixpath.isabs(posixpath.normpath(target or ".")):
        target = posixpath.normpath(posixpath.join("/", workdir or "/", target))
    if target == "/":
        raise ParseError('invalid mount target "/"')
    return target
