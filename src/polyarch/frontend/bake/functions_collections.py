"""buildx's number, set, sequence, CSV and path functions that ``functions.py`` does not hold (go-cty stdlib
semantics, plus buildx's own ``indexof``, ``basename``, ``dirname``, ``sanitize``).

* sets (``setunion`` …): cty sets of strings, numbers or bools iterate in sorted order (numbers ascending,
  strings by code point, false before true); mixing strings and numbers makes them all strings, as cty unifies.
* equality (``indexof``, ``sethaselement``) is cty's: ``1`` is not ``"1"`` and ``true`` is not ``1``.
* ``basename``/``dirname``: Go's ``path.Base``/``path.Dir`` (lexically cleaned, ``""`` → ``.``).
* ``byteslen``/``bytesslice`` take cty's bytes type, which no bake expression produces: always an error.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from typing import Any

from .functions import FuncError, _list, _norm, to_num, to_str, type_name

__all__ = ["COLLECTION_FUNCTIONS", "cty_equal", "go_clean"]


def cty_equal(a: Any, b: Any) -> bool:
    """cty's equality: bools are not numbers; lists and maps compare element-wise."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(cty_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(cty_equal(a[k], b[k]) for k in a)
    if isinstance(a, str) != isinstance(b, str):
        return False
    return bool(a == b)


def _indexof(lst: Any, value: Any) -> int:
    if not isinstance(lst, list):
        raise FuncError("argument must be a list or tuple")
    if not lst:
        raise FuncError("cannot search an empty list")
    for i, item in enumerate(lst):
        if cty_equal(item, value):
            return i
    raise FuncError("item not found")


def _set(values: list[Any]) -> list[Any]:
    """Distinct values in cty's set order."""
    if any(isinstance(v, list | dict) for v in values):
        out: list[Any] = []
        for v in values:
            if not any(cty_equal(v, o) for o in out):
                out.append(v)
        return out
    if any(v is None for v in values):
        raise FuncError("sets cannot hold null values")
    kinds = {type_name(v) for v in values}
    if len(kinds) > 1:
        if "bool" in kinds and "number" in kinds and "string" not in kinds:
            raise FuncError("set elements must all have the same type")
        values = [to_str(v) for v in values]
    unique = {(type_name(v), v): v for v in values}
    return sorted(unique.values(), key=lambda v: (type_name(v), v))


def _sets(args: tuple[Any, ...], name: str, minimum: int = 1) -> list[list[Any]]:
    if len(args) < minimum:
        raise FuncError(f"{name} needs at least {minimum} argument{'s' if minimum > 1 else ''}")
    return [_list(a) for a in args]


def _setunion(*sets: Any) -> list[Any]:
    return _set([v for s in _sets(sets, "setunion") for v in s])


def _setintersection(*sets: Any) -> list[Any]:
    lists = _sets(sets, "setintersection")
    return _set([v for v in lists[0] if all(any(cty_equal(v, o) for o in other) for other in lists[1:])])


def _setsubtract(a: Any, b: Any) -> list[Any]:
    other = _list(b)
    return _set([v for v in _list(a) if not any(cty_equal(v, o) for o in other)])


def _setsymmetricdifference(*sets: Any) -> list[Any]:
    lists = [_set(s) for s in _sets(sets, "setsymmetricdifference")]
    out: list[Any] = []
    for values in lists:
        for v in values:
            hits = [x for x in out if cty_equal(x, v)]
            if hits:
                out = [x for x in out if not cty_equal(x, v)]
            else:
                out.append(v)
    return _set(out)


def _setproduct(*sets: Any) -> list[list[Any]]:
    lists = _sets(sets, "setproduct", 2)
    out: list[list[Any]] = [[]]
    for values in lists:
        out = [[*combo, v] for combo in out for v in values]
    return out


def _chunklist(lst: Any, size: Any) -> list[list[Any]]:
    items, n = _list(lst), int(to_num(size))
    if n < 0:
        raise FuncError("the size argument must be positive")
    if n == 0:
        return [items] if items else []
    return [items[i:i + n] for i in range(0, len(items), n)]


def _csvdecode(text: Any) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(to_str(text)), strict=True))
    if not rows:
        raise FuncError("missing header line")
    header, out = rows[0], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise FuncError(f"record on line {line}: wrong number of fields")
        out.append(dict(zip(header, row, strict=True)))
    return out


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _parseint(text: Any, base: Any) -> int:
    s, b = to_str(text), to_num(base)
    if not isinstance(b, int) or not 2 <= b <= 62:
        raise FuncError("base must be a whole number between 2 and 62 inclusive")
    body = s[1:] if s[:1] in "+-" else s
    digits = _DIGITS[:b] if b > 36 else _DIGITS[:b] + _DIGITS[10:b].upper()
    if not body or any(c not in digits for c in body):
        raise FuncError(f"cannot parse {s!r} as a base {b} integer")
    value = 0
    for c in body:
        value = value * b + (_DIGITS.index(c) if b > 36 else int(c, 36))
    return -value if s.startswith("-") else value


def _log(num: Any, base: Any) -> int | float:
    try:
        return _norm(math.log(to_num(num)) / math.log(to_num(base)))
    except (ValueError, ZeroDivisionError):
        raise FuncError("the logarithm is not a finite number") from None


def _pow(num: Any, power: Any) -> int | float:
    try:
        return _norm(math.pow(to_num(num), to_num(power)))
    except (ValueError, OverflowError):
        raise FuncError("the result is not a finite number") from None


def go_clean(path: str) -> str:
    """Go's ``path.Clean``: one slash between names, no ``.``, ``..`` resolved lexically, ``""`` → ``.``."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    joined = "/".join(parts)
    return ("/" + joined) if rooted else (joined or ".")


def _basename(p: Any) -> str:
    path = to_str(p).rstrip("/")
    if not path:
        return "/" if to_str(p) else "."
    return path.rsplit("/", 1)[-1]


def _dirname(p: Any) -> str:
    path = to_str(p)
    return go_clean(path[:path.rfind("/") + 1])


def _sanitize(s: Any) -> str:
    """buildx's ``sanitize``: every character outside ``[A-Za-z0-9_-]`` becomes ``_``."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "_-" else "_" for c in to_str(s))


def _no_bytes(*args: Any) -> Any:
    got = type_name(args[0]) if args else "nothing"
    raise FuncError(f"a bytes value is required, got {got} (no bake expression produces bytes)")


def _signum(n: Any) -> int:
    v = to_num(n)
    return (v > 0) - (v < 0)


COLLECTION_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "absolute": lambda n: _norm(abs(to_num(n))),
    "basename": _basename,
    "byteslen": _no_bytes,
    "bytesslice": _no_bytes,
    "chunklist": _chunklist,
    "csvdecode": _csvdecode,
    "dirname": _dirname,
    "greaterthanorequalto": lambda a, b: to_num(a) >= to_num(b),
    "indexof": _indexof,
    "int": lambda n: int(to_num(n)),
    "lessthanorequalto": lambda a, b: to_num(a) <= to_num(b),
    "log": _log,
    "parseint": _parseint,
    "pow": _pow,
    "reverselist": lambda lst: list(reversed(_list(lst))),
    "sanitize": _sanitize,
    "sethaselement": lambda s, v: any(cty_equal(x, v) for x in _list(s)),
    "setintersection": _setintersection,
    "setproduct": _setproduct,
    "setsubtract": _setsubtract,
    "setsymmetricdifference": _setsymmetricdifference,
    "setunion": _setunion,
    "signum": _signum,
}
