"""``--set PATTERN.KEY[.NAME]=VALUE`` (and ``+=``): parsed once, applied as buildx does.

``PATTERN`` is a target name or a glob over every target of the files (``*``, ``app-*``) — requested or not: an
override of a parent reaches the targets inheriting from it (the evaluator applies overrides at every level of
``inherits``). ``KEY`` is any target attribute (buildx's names and aliases: ``platform``, ``secrets``…); map
attributes (``args``, ``labels``, ``contexts``) take ``.NAME``.

* list keys: repeating one replaces the file's value with all the values given (``platform`` splits on commas);
  ``+=`` appends. ``annotations`` and ``entitlements`` always append; ``attest`` always merges by type (an entry
  replaces the one of its type). Empty entries of ``output``, ``cache-from``, ``cache-to``, ``secret``, ``ssh``
  and ``attest`` are dropped (``--set *.output=`` removes the outputs).
* ``PATTERN.args.NAME`` without ``=`` takes ``NAME`` from the environment (nothing when it is not set; ``""``
  when environment lookups are off), as buildx does.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from polyarch.errors import UsageError

from .model import ALIASES, ATTRIBUTES, DROP_EMPTY, LIST_ATTRS, MAP_ATTRS, Target, merge_attest

__all__ = ["Override", "apply_overrides", "from_environment", "parse_overrides"]

_ALWAYS_APPEND = frozenset({"annotations", "entitlements"})


@dataclass(frozen=True, slots=True)
class Override:
    """One ``--set PATTERN.KEY[.SUB]=VALUE`` (``+=`` appends; ``value`` None: ``args.NAME`` from the environment)."""

    pattern: str
    key: str
    sub: str
    value: str | None
    append: bool


def parse_overrides(items: Sequence[str]) -> list[Override]:
    out = []
    for item in items:
        lhs, eq, value = item.partition("=")
        append = lhs.endswith("+")
        lhs = lhs.removesuffix("+")
        parts = lhs.split(".")
        if len(parts) < 2 or not parts[0] or not parts[1] or (not eq and parts[1] not in ("args", "arg")):
            raise UsageError(f"invalid --set {item!r}", hint="expected PATTERN.KEY=VALUE, e.g. *.platform=linux/arm64")
        key = ALIASES.get(parts[1], parts[1])
        if key not in ATTRIBUTES:
            close = difflib.get_close_matches(key, list(ATTRIBUTES) + list(ALIASES), n=1)
            raise UsageError(f"--set {item!r}: unknown key {parts[1]!r}",
                             hint=f"did you mean {close[0]!r}?" if close else None)
        sub = ".".join(parts[2:])
        if key in MAP_ATTRS and not sub:
            raise UsageError(f"--set {item!r}: {key} needs a name ({parts[0]}.{key}.NAME=VALUE)")
        out.append(Override(parts[0], key, sub, value if eq else None, append))
    return out


def from_environment(overrides: Sequence[Override], env: Mapping[str, str], *, lookup: bool) -> list[Override]:
    """``args.NAME`` overrides without a value resolved from ``env`` (dropped when unset; ``""`` without lookup)."""
    out = []
    for ov in overrides:
        if ov.value is None:
            if not lookup:
                ov = replace(ov, value="")
            elif ov.sub in env:
                ov = replace(ov, value=env[ov.sub])
            else:
                continue
        out.append(ov)
    return out


def _values(key: str, value: str) -> list[str]:
    if key == "platforms":
        return [v for v in value.split(",") if v]
    return [] if key in DROP_EMPTY and not value else [value]


def apply_overrides(target: Target, overrides: Sequence[Override]) -> Target:
    attrs: dict[str, Any] = dict(target.attrs)
    replaced: set[str] = set()
    for ov in overrides:
        key, value = ov.key, ov.value or ""
        if key in MAP_ATTRS:
            attrs[key] = {**attrs.get(key, {}), ov.sub: value}
        elif key == "attest":
            attrs[key] = merge_attest(tuple(attrs.get(key, ())), tuple(_values(key, value)))
        elif key in LIST_ATTRS:
            values = tuple(_values(key, value))
            if ov.append or key in replaced or key in _ALWAYS_APPEND:
                current = tuple(attrs.get(key, ()))
                attrs[key] = current + tuple(v for v in values if v not in current or key not in DROP_EMPTY)
            else:
                attrs[key] = values
            if key in DROP_EMPTY and not attrs[key]:
                del attrs[key]  # buildx: no entries left, no attribute
            replaced.add(key)
        elif ATTRIBUTES[key] == "bool":
            if value.lower() not in ("true", "false", "1", "0", ""):
                raise UsageError(f"--set {ov.pattern}.{key}: {value!r} is not a bool")
            attrs[key] = value.lower() in ("true", "1", "")
        else:
            attrs[key] = value
    return Target.from_attrs(target.name, attrs)
