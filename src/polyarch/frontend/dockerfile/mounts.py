"""``RUN --mount=…`` values: CSV ``key=value`` fields → a typed ``Mount``, with BuildKit's defaults.

Types and their options (BuildKit's ``runmount.go`` semantics):

* ``bind`` (default type): target, source, from, rw/readonly (read-only by default);
* ``cache``: target, id (default: the target), sharing shared|private|locked, from, source, mode, uid, gid,
  ro (read-write by default);
* ``tmpfs``: target, size;
* ``secret``: id, target (default ``/run/secrets/<id>``), env, required, mode (0400), uid, gid;
* ``ssh``: id (default ``default``), target (default ``/run/buildkit/ssh_agent.N``), required, mode (0600), uid, gid.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from polyarch.errors import ParseError

__all__ = ["MOUNT_TYPES", "Mount", "parse_mount", "parse_size"]

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_KEYS = {
    "type", "target", "dst", "destination", "source", "src", "from", "readonly", "ro", "rw", "readwrite",
    "id", "sharing", "mode", "uid", "gid", "required", "env", "size",
}
_ALLOWED = {
    "bind": {"target", "source", "from", "readonly"},
    "cache": {"target", "source", "from", "readonly", "id", "sharing", "mode", "uid", "gid"},
    "tmpfs": {"target", "size"},
    "secret": {"target", "id", "env", "required", "mode", "uid", "gid"},
    "ssh": {"target", "id", "required", "mode", "uid", "gid"},
}


@dataclass(frozen=True, slots=True)
class Mount:
    type: str
    target: str = ""
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

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"type": self.type}
        for key in ("target", "source", "from_", "id", "sharing", "env"):
            value = getattr(self, key)
            if value:
                out[key.rstrip("_")] = value
        out["readonly"] = self.readonly
        for key in ("mode", "uid", "gid"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.required:
            out["required"] = True
        if self.size:
            out["size"] = self.size
        return out


def parse_size(text: str) -> int:
    """``64m``, ``1g``, ``512k``, ``1024`` (binary units, like go-units RAMInBytes) → bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?", text.strip().lower())
    if not m:
        raise ParseError(f"invalid size {text!r}")
    factor = 1024 ** "_kmgtp".index(m.group(2) or "_")
    return int(float(m.group(1)) * factor)


def _bool(key: str, value: str | None) -> bool:
    if value is None:
        return True
    try:
        return _BOOL[value.lower()]
    except KeyError:
        raise ParseError(f"invalid value for {key}: {value!r} (want true or false)") from None


def _int(key: str, value: str, base: int = 10) -> int:
    try:
        return int(value, base)
    except ValueError:
        raise ParseError(f"invalid value for {key}: {value!r}") from None


def parse_mount(spec: str, *, ssh_index: int = 0) -> Mount:
    """Parse the value of one ``--mount`` flag.

    :raises ParseError: (without a span) unknown type or key, bad value, missing target.
    """
    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise ParseError(f"invalid mount {spec!r}") from None
    values: dict[str, str | None] = {}
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if key not in _KEYS:
            raise ParseError(f"unexpected key {key!r} in {field!r}")
        canon = {"dst": "target", "destination": "target", "src": "source", "ro": "readonly",
                 "readwrite": "rw"}.get(key, key)
        if canon == "rw":
            values["readonly"] = "false" if _bool("rw", value if eq else None) else "true"
            continue
        values[canon] = value if eq else None
    kind = (values.pop("type", None) or "bind").lower()
    if kind not in MOUNT_TYPES:
        raise ParseError(f"unsupported mount type {kind!r}")
    extra = sorted(set(values) - _ALLOWED[kind])
    if extra:
        raise ParseError(f"unexpected key {extra[0]!r} for a {kind} mount")
    for key, given in values.items():
        if given is None and key not in ("readonly", "required"):
            raise ParseError(f"mount option {key} needs a value")
    target = values.get("target") or ""
    mount_id = values.get("id") or ""
    if kind == "secret":
        if not mount_id and target:
            mount_id = target.rstrip("/").rsplit("/", 1)[-1]
        if not mount_id:
            raise ParseError("secret mount needs an id or a target")
        if not target and not values.get("env"):
            target = f"/run/secrets/{mount_id}"
    elif kind == "ssh":
        mount_id = mount_id or "default"
        target = target or f"/run/buildkit/ssh_agent.{ssh_index}"
    elif not target:
        raise ParseError(f"{kind} mount needs a target")
    elif kind == "cache":
        mount_id = mount_id or target
    default_ro = kind in ("bind", "secret", "ssh")
    readonly = _bool("readonly", values["readonly"]) if "readonly" in values else default_ro
    sharing = (values.get("sharing") or ("shared" if kind == "cache" else "")).lower()
    if sharing and sharing not in ("shared", "private", "locked"):
        raise ParseError(f"unsupported sharing value {sharing!r} (want shared, private or locked)")
    mode = values.get("mode")
    default_mode = {"secret": 0o400, "ssh": 0o600, "cache": 0o755}.get(kind)
    return Mount(
        type=kind,
        target=target,
        source=values.get("source") or "",
        from_=values.get("from") or "",
        readonly=readonly,
        id=mount_id,
        sharing=sharing,
        mode=_int("mode", mode, 8) if mode else default_mode,
        uid=_int("uid", values["uid"] or "") if values.get("uid") else (0 if kind in ("secret", "ssh", "cache") else None),
        gid=_int("gid", values["gid"] or "") if values.get("gid") else (0 if kind in ("secret", "ssh", "cache") else None),
        required=_bool("required", values["required"]) if "required" in values else False,
        env=values.get("env") or "",
        size=parse_size(values["size"] or "") if values.get("size") else 0,
    )
