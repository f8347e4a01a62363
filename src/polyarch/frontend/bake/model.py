"""Resolved bake values: ``Target`` and ``Group`` (frozen), and a ``Definition`` with buildx's ``--print`` shape.

Attribute names are buildx's (``cache-from``, ``no-cache``…) in ``ATTRIBUTES``; ``Target.from_attrs`` checks the
types once, so the CLI and the build see only strings, tuples and sorted mappings. ``args`` keep ``None``
(null: the Dockerfile's default) until ``build_args`` drops them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .functions import FuncError, to_str, type_name

__all__ = ["ATTRIBUTES", "DROP_EMPTY", "LIST_ATTRS", "MAP_ATTRS", "Definition", "Group", "Target", "merge_attest"]

# buildx attribute name -> kind; the order is the --print order
ATTRIBUTES: dict[str, str] = {
    "description": "str", "context": "str", "contexts": "map", "dockerfile": "str", "dockerfile-inline": "str",
    "args": "map", "annotations": "list", "attest": "list", "labels": "map", "tags": "list",
    "cache-from": "list", "cache-to": "list", "target": "str", "secret": "list", "ssh": "list",
    "platforms": "list", "output": "list", "pull": "bool", "no-cache": "bool", "no-cache-filter": "list",
    "network": "str", "shm-size": "str", "ulimits": "list", "call": "str", "entitlements": "list",
    "extra-hosts": "map",
}
LIST_ATTRS = frozenset(k for k, v in ATTRIBUTES.items() if v == "list")
MAP_ATTRS = frozenset(k for k, v in ATTRIBUTES.items() if v == "map")
# buildx drops empty entries of these (they parse as typed entries) and removes duplicates from these
DROP_EMPTY = frozenset({"output", "cache-from", "cache-to", "secret", "ssh", "attest"})
_DEDUPE = frozenset({"annotations", "tags", "platforms", "no-cache-filter", "ulimits", "entitlements", "secret",
                     "ssh", "cache-from", "cache-to", "output"})
ALIASES = {"platform": "platforms", "outputs": "output", "secrets": "secret", "tag": "tags", "label": "labels",
           "annotation": "annotations", "arg": "args"}


def _csv(item: Mapping[str, Any], name: str = "") -> str:
    """The object form (``output = [{ type = "image", push = true }]``) as buildx's CSV string form; an ``ssh``
    object ``{ id = "default", paths = ["~/.ssh/key"] }`` as ``default=~/.ssh/key`` (paths joined by ``,``)."""
    if name == "ssh" and set(item) <= {"id", "paths"}:
        paths = item.get("paths") or []
        if not isinstance(paths, list):
            raise FuncError(f"ssh paths must be a list, got {type_name(paths)}")
        sid = to_str(item.get("id") or "default")
        return f"{sid}={','.join(to_str(p) for p in paths)}" if paths else sid
    return ",".join(f"{k}={to_str(v)}" for k, v in item.items() if v is not None)


def _attest_type(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("type", ""))
    return next((f[5:] for f in str(entry).split(",") if f.startswith("type=")), "")


def merge_attest(current: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
    """buildx's attestation merge: an entry (CSV string or object) replaces the earlier one of the same
    ``type`` (in its place)."""
    out: list[Any] = []
    for entry in (*current, *new):
        kind = _attest_type(entry)
        at = next((i for i, e in enumerate(out) if _attest_type(e) == kind), None)
        if at is None:
            out.append(entry)
        else:
            out[at] = entry
    return tuple(out)


def _normalized(key: str, values: tuple[str, ...]) -> tuple[str, ...]:
    if key in DROP_EMPTY:
        values = tuple(v for v in values if v)
    if key == "attest":
        return merge_attest((), values)
    return tuple(dict.fromkeys(values)) if key in _DEDUPE else values


def _coerce(name: str, kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "str":
        return to_str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "1", "false", "0"):
            return value in ("true", "1")
        raise FuncError(f"{name} must be a bool, got {type_name(value)}")
    if kind == "list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise FuncError(f"{name} must be a list of strings, got {type_name(value)}")
        try:
            items = _normalized(name, tuple(_csv(v, name) if isinstance(v, dict) else to_str(v)
                                            for v in value if v is not None))
            return None if value and not items and name in DROP_EMPTY else items
        except FuncError as exc:
            raise FuncError(f"{name}: {exc}") from None
    if not isinstance(value, dict):
        raise FuncError(f"{name} must be a map, got {type_name(value)}")
    out: dict[str, Any] = {}
    for k, v in value.items():
        try:
            out[str(k)] = None if v is None else to_str(v)
        except FuncError as exc:
            raise FuncError(f"{name}.{k}: {exc}") from None
    return out


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    attrs: Mapping[str, Any] = field(default_factory=dict)  # buildx attribute name -> coerced value

    @staticmethod
    def from_attrs(name: str, raw: Mapping[str, Any]) -> Target:
        """:raises FuncError: an attribute of the wrong type (message names it)."""
        out: dict[str, Any] = {}
        for key, value in raw.items():
            kind = ATTRIBUTES.get(key)
            if kind is None:
                continue
            coerced = _coerce(key, kind, value)
            if coerced is not None:
                out[key] = coerced
        return Target(name, out)

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    @property
    def context(self) -> str:
        return str(self.attrs.get("context") or ".")

    @property
    def dockerfile(self) -> str:
        return str(self.attrs.get("dockerfile") or "Dockerfile")

    def build_args(self) -> dict[str, str]:
        return {k: v for k, v in self.attrs.get("args", {}).items() if v is not None}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        attrs = dict(self.attrs)
        attrs.setdefault("context", ".")
        if "dockerfile-inline" not in attrs:
            attrs.setdefault("dockerfile", "Dockerfile")
        for key in ATTRIBUTES:
            if key not in attrs:
                continue
            value = attrs[key]
            if isinstance(value, dict):
                value = {k: v for k, v in sorted(value.items()) if v is not None}
                if not value:
                    continue
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    targets: tuple[str, ...]
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"targets": list(self.targets)}
        if self.description:
            out = {"description": self.description, **out}
        return out


@dataclass(frozen=True, slots=True)
class Definition:
    groups: tuple[Group, ...]
    targets: tuple[Target, ...]

    def to_print_json(self) -> dict[str, Any]:
        """buildx's ``bake --print`` document: ``{"group": {...}, "target": {...}}``."""
        out: dict[str, Any] = {}
        if self.groups:
            out["group"] = {g.name: g.to_json() for g in self.groups}
        out["target"] = {t.name: t.to_json() for t in self.targets}
        return out
