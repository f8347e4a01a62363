"""``semvercmp(version, constraint)``: does a version satisfy a constraint (the rules of the semver library
buildx uses).

Versions are lenient: ``v`` prefix allowed, missing minor/patch are 0 (``3.22`` is ``3.22.0``), ``-pre`` and
``+build`` parts. Constraints: ``,`` or space = and, ``||`` = or; operators ``= != > < >= <= ~ ~> ^``; ``x``,
``X`` or ``*`` wildcards (``1.2.x``); hyphen ranges ``1.2 - 1.4.5``. A pre-release version satisfies only a
constraint that names a pre-release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .functions import FuncError, to_str

__all__ = ["semvercmp"]

_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$")
_PART = re.compile(r"^(=|!=|>=|=>|<=|=<|>|<|~>|~|\^)?\s*v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?"
                   r"(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True, slots=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: str = ""

    def key(self) -> tuple[Any, ...]:
        pre: tuple[Any, ...] = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre.split("."))
        return (self.major, self.minor, self.patch, 1 if not self.pre else 0, pre if self.pre else ())


def parse_version(text: str) -> Version:
    m = _VERSION.match(text.strip())
    if m is None:
        raise FuncError(f"invalid semantic version {text!r}")
    return Version(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), m.group(4) or "")


def _wild(s: str | None) -> bool:
    return s is None or s in ("x", "X", "*")


def _check(part: str, v: Version) -> bool:
    m = _PART.match(part)
    if m is None:
        raise FuncError(f"improper constraint: {part}")
    op, ma, mi, pa, pre = m.groups()
    op = {"=>": ">=", "=<": "<=", "~>": "~"}.get(op or "=", op or "=")
    wild = ma in ("x", "X", "*") or (_wild(mi) and mi is not None) or (_wild(pa) and pa is not None)
    major = 0 if _wild(ma) else int(ma)
    minor = 0 if _wild(mi) else int(mi)
    patch = 0 if _wild(pa) else int(pa)
    c = Version(major, minor, patch, pre or "")
    if v.pre and not c.pre:
        return False
    depth = 0 if _wild(ma) else 1 if _wild(mi) else 2 if _wild(pa) else 3
    vk, ck = v.key(), c.key()
    if op == "=" and wild:
        return (v.major, v.minor, v.patch)[:depth] == (c.major, c.minor, c.patch)[:depth]
    if op == "=":
        return vk == ck
    if op == "!=":
        if wild:
            return (v.major, v.minor, v.patch)[:depth] != (c.major, c.minor, c.patch)[:depth]
        return vk != ck
    if op in (">", "<=") and wild and depth < 3:
        upper = (c.major, c.minor, c.patch)[:depth]
        greater = (v.major, v.minor, v.patch)[:depth] > upper
        return greater if op == ">" else not greater
    if op == ">":
        return vk > ck
    if op == "<":
        return vk < ck
    if op == ">=":
        return vk >= ck
    if op == "<=":
        return vk <= ck
    if op == "~":
        if vk < ck:
            return False
        if mi is None or _wild(mi):
            return v.major == c.major
        return (v.major, v.minor) == (c.major, c.minor)
    # ^: the left-most non-zero part may not change
    if vk < ck:
        return False
    if c.major > 0 or mi is None or _wild(mi):
        return v.major == c.major
    if c.minor > 0 or pa is None or _wild(pa):
        return (v.major, v.minor) == (c.major, c.minor)
    return (v.major, v.minor, v.patch) == (c.major, c.minor, c.patch)


def _and(group: str, v: Version) -> bool:
    group = re.sub(r"(\S+)\s+-\s+(\S+)", r">=\1,<=\2", group.strip())
    group = re.sub(r"(=|!=|>=|=>|<=|=<|>|<|~>|~|\^)\s+", r"\1", group)
    parts = [p for p in re.split(r"[\s,]+", group) if p]
    if not parts:
        raise FuncError("improper constraint: empty")
    return all(_check(p, v) for p in parts)


def semvercmp(version: Any, constraint: Any) -> bool:
    """:raises FuncError: an invalid version or constraint."""
    v = parse_version(to_str(version))
    text = to_str(constraint)
    if not text.strip():
        raise FuncError("improper constraint: empty")
    results = [_and(group, v) for group in text.split("||")]
    return any(results)
