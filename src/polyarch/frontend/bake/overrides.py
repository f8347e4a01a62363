"""``--set PATTERN.KEY[.NAME]=VALUE`` (and ``+=``): parsed once, applied to resolved targets.

``PATTERN`` is a glob over target names (``*``, ``app-*``); ``KEY`` is any target attribute (buildx's names and
aliases: ``platform``, ``secrets``…); map attributes (``args``, ``labels``, ``contexts``) take ``.NAME``.
Repeating a list key replaces the file's value with all the values given (``platform`` splits on commas);
``+=`` appends to the file's value.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from polyarch.errors import UsageError

from .model import ALIASES, ATTRIBUTES, LIST_ATTRS, MAP_ATTRS, Target

__all__ = ["Override", "apply_overrides", "parse_overrides"]


@dataclass(frozen=True, slots=True)
class Override:
    """One ``--set PATTERN.KEY[.SUB]=VALUE`` (``+=`` appends)."""

    pattern: str
    key: str
    sub: str
    value: str
    append: bool


def parse_overrides(items: Sequence[str]) -> list[Override]:
    out = []
    for item in items:
        lhs, eq, value = item.partition("=")
        append = lhs.endswith("+")
        lhs = lhs.removesuffix("+")
        parts = lhs.split(".")
        if not eq or len(parts) < 2 or not parts[0] or not parts[1]:
            raise UsageError(f"invalid --set {item!r}", hint="expected PATTERN.KEY=VALUE, e.g. *.platform=linux/arm64")
        key = ALIASES.get(parts[1], parts[1])
        if key not in ATTRIBUTES:
            close = difflib.get_close_matches(key, list(ATTRIBUTES) + list(ALIASES), n=1)
            raise UsageError(f"--set {item!r}: unknown key {parts[1]!r}",
                             hint=f"did you mean {close[0]!r}?" if close else None)
        sub = ".".join(parts[2:])
        if key in MAP_ATTRS and not sub:
            raise UsageError(f"--set {item!r}: {key} needs a name ({parts[0]}.{key}.NAME=VALUE)")
        out.append(Override(parts[0], key, sub, value, append))
    return out



def apply_overrides(target: Target, overrides: Sequence[Override]) -> Target:
    attrs = dict(target.attrs)
    replaced: set[str] = set()
    for ov in overrides:
        key = ov.key
        if key in MAP_ATTRS:
            attrs[key] = {**attrs.get(key, {}), ov.sub: ov.value}
        elif key in LIST_ATTRS:
            values = [v for v in ov.value.split(",") if v] if key == "platforms" else [ov.value]
            if ov.append or key in replaced:
                attrs[key] = tuple(attrs.get(key, ())) + tuple(values)
            else:
                attrs[key] = tuple(values)
            replaced.add(key)
        elif ATTRIBUTES[key] == "bool":
            if ov.value.lower() not in ("true", "false", "1", "0", ""):
                raise UsageError(f"--set {ov.pattern}.{key}: {ov.value!r} is not a bool")
            attrs[key] = ov.value.lower() in ("true", "1", "")
        else:
            attrs[key] = ov.value
    return Target(target.name, attrs)
