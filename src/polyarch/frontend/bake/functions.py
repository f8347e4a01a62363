"""The core of the HCL functions bake files use (buildx ships go-cty's stdlib plus a few of its own) and the
value helpers the other ``functions_*`` modules share; ``stdlib.STDLIB`` is the full table.

Values are plain Python: str, int/float (numbers), bool, None (null), list (tuples and lists), dict (objects and
maps). Every function takes its evaluated arguments and returns a value; a bad argument raises ``FuncError``,
which the evaluator turns into a located ``ParseError``. ``try`` and ``can`` need unevaluated arguments and
live in the evaluator.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["FUNCTIONS", "FuncError", "to_str", "type_name"]


class FuncError(Exception):
    pass


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "tuple"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _num_str(n: int | float) -> str:
    if isinstance(n, float) and n.is_integer() and abs(n) < 1e15:
        return str(int(n))
    return str(n)


def to_str(v: Any) -> str:
    """Conversion to string as in interpolation: numbers and bools convert, collections do not."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return _num_str(v)
    if v is None:
        raise FuncError("cannot use a null value in a string")
    raise FuncError(f"cannot convert {type_name(v)} to string")


def to_num(v: Any) -> int | float:
    if isinstance(v, bool):
        raise FuncError("a number is required, got bool")
    if isinstance(v, int | float):
        return v
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            raise FuncError(f"a number is required, got string {v!r}") from None
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
    raise FuncError(f"a number is required, got {type_name(v)}")


def to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return bool(v == "true")
    raise FuncError(f"a bool is required, got {type_name(v)}")


def _list(v: Any) -> list[Any]:
    if isinstance(v, list):
        return v
    raise FuncError(f"a list is required, got {type_name(v)}")


def _map(v: Any) -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    raise FuncError(f"a map is required, got {type_name(v)}")


def _norm(n: float | int) -> int | float:
    return int(n) if isinstance(n, float) and n.is_integer() else n


def _coalesce(*args: Any) -> Any:
    for a in args:
        if a is not None and a != "":
            return a
    raise FuncError("no non-null, non-empty argument")


def _element(lst: Any, i: Any) -> Any:
    items = _list(lst)
    if not items:
        raise FuncError("cannot use element on an empty list")
    return items[int(to_num(i)) % len(items)]


def _flatten(lst: Any) -> list[Any]:
    out: list[Any] = []
    for item in _list(lst):
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _format(fmt: Any, *args: Any) -> str:
    fmt = to_str(fmt)
    out: list[str] = []
    it = iter(args)
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        m = re.match(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([sdvqfxXobeEgGt%])", fmt[i:])
        if not m:
            raise FuncError(f"invalid format verb at {fmt[i:i + 3]!r}")
        flags, width, prec, verb = m.groups()
        i += m.end()
        if verb == "%":
            out.append("%")
            continue
        try:
            arg = next(it)
        except StopIteration:
            raise FuncError("not enough arguments for format string") from None
        if verb in "sv":
            text = to_str(arg) if not isinstance(arg, list | dict) else json.dumps(arg, separators=(",", ":"))
        elif verb == "q":
            text = json.dumps(to_str(arg))
        elif verb == "t":
            text = "true" if to_bool(arg) else "false"
        else:
            num = to_num(arg)
            pyfmt = "%" + flags + width + (f".{prec}" if prec else "") + verb
            text = pyfmt % (int(num) if verb in "dxXob" else num)
            out.append(text)
            continue
        if prec:
            text = text[: int(prec)]
        if width:
            text = text.ljust(int(width)) if "-" in flags else text.rjust(int(width))
        out.append(text)
    return "".join(out)


def _formatlist(fmt: Any, *args: Any) -> list[str]:
    n = max((len(a) for a in args if isinstance(a, list)), default=1)
    for a in args:
        if isinstance(a, list) and len(a) != n:
            raise FuncError("all list arguments must have the same length")
    return [_format(fmt, *[a[i] if isinstance(a, list) else a for a in args]) for i in range(n)]


def _index(lst: Any, v: Any) -> int:
    try:
        return _list(lst).index(v)
    except ValueError:
        raise FuncError("item not found") from None


def _lookup(m: Any, key: Any, *default: Any) -> Any:
    mapping = _map(m)
    k = to_str(key)
    if k in mapping:
        return mapping[k]
    if default:
        return default[0]
    raise FuncError(f"lookup failed to find key {k!r}")


def _merge(*maps: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in maps:
        if m is not None:
            out.update(_map(m))
    return out


def _regex(pattern: Any, s: Any) -> Any:
    try:
        rx = re.compile(to_str(pattern))
    except re.error as exc:
        raise FuncError(f"invalid regular expression: {exc}") from None
    m = rx.search(to_str(s))
    if m is None:
        raise FuncError("pattern did not match any part of the given string")
    if rx.groupindex:
        return {k: m.group(k) for k in rx.groupindex}
    if rx.groups:
        return list(m.groups())
    return m.group(0)


def _regex_replace(s: Any, pattern: Any, repl: Any) -> str:
    try:
        rx = re.compile(to_str(pattern))
    except re.error as exc:
        raise FuncError(f"invalid regular expression: {exc}") from None
    py_repl = re.sub(r"\$\{?(\w+)\}?", lambda m: f"\\g<{m.group(1)}>", to_str(repl))
    return rx.sub(py_repl, to_str(s))


def _replace(s: Any, old: Any, new: Any) -> str:
    o = to_str(old)
    if len(o) > 2 and o.startswith("/") and o.endswith("/"):
        return _regex_replace(s, o[1:-1], new)
    return to_str(s).replace(o, to_str(new))


def _substr(s: Any, offset: Any, length: Any) -> str:
    text = to_str(s)
    off, ln = int(to_num(offset)), int(to_num(length))
    if off < 0:
        off = max(len(text) + off, 0)
    if off > len(text):
        raise FuncError("offset is out of range")
    return text[off:] if ln < 0 else text[off:off + ln]


def _split(sep: Any, s: Any) -> list[str]:
    text = to_str(s)
    return text.split(to_str(sep)) if text else [""]


def _trim(s: Any, cutset: Any) -> str:
    return to_str(s).strip(to_str(cutset))


def _b64decode(s: Any) -> str:
    try:
        return base64.b64decode(to_str(s), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise FuncError(f"invalid base64 data: {exc}") from None


def _jsondecode(s: Any) -> Any:
    try:
        return json.loads(to_str(s))
    except json.JSONDecodeError as exc:
        raise FuncError(f"invalid JSON: {exc}") from None


def _zipmap(keys: Any, values: Any) -> dict[str, Any]:
    k, v = _list(keys), _list(values)
    if len(k) != len(v):
        raise FuncError("keys and values must have the same length")
    return {to_str(a): b for a, b in zip(k, v, strict=True)}


def _distinct(lst: Any) -> list[Any]:
    out: list[Any] = []
    for x in _list(lst):
        if x not in out:
            out.append(x)
    return out


def _minmax(pick: Callable[..., Any]) -> Callable[..., Any]:
    def f(*nums: Any) -> Any:
        if not nums:
            raise FuncError("at least one number is required")
        return _norm(pick(to_num(n) for n in nums))

    return f


def _range(*args: Any) -> list[int]:
    r = range(*[int(to_num(x)) for x in args])
    if len(r) > 1 << 16:
        raise FuncError(f"range of {len(r)} elements is too long (limit {1 << 16})")
    return list(r)


def _title(s: Any) -> str:
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), to_str(s))


def _and(*args: Any) -> bool:
    return all(to_bool(a) for a in args)


def _or(*args: Any) -> bool:
    return any(to_bool(a) for a in args)


def _length(v: Any) -> int:
    if isinstance(v, str | list | dict):
        return len(v)
    raise FuncError(f"cannot take the length of {type_name(v)}")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": lambda n: _norm(abs(to_num(n))),
    "add": lambda a, b: _norm(to_num(a) + to_num(b)),
    "and": _and,
    "base64decode": _b64decode,
    "base64encode": lambda s: base64.b64encode(to_str(s).encode()).decode(),
    "ceil": lambda n: int(-(-to_num(n) // 1)),
    "chomp": lambda s: to_str(s).rstrip("\r\n"),
    "coalesce": _coalesce,
    "coalescelist": lambda *ls: next((x for x in ls if _list(x)), []),
    "compact": lambda lst: [x for x in _list(lst) if x not in (None, "")],
    "concat": lambda *ls: [x for lst in ls for x in _list(lst)],
    "contains": lambda lst, v: v in _list(lst),
    "distinct": _distinct,
    "divide": lambda a, b: _norm(to_num(a) / to_num(b)),
    "element": _element,
    "equal": lambda a, b: a == b,
    "flatten": _flatten,
    "floor": lambda n: int(to_num(n) // 1),
    "format": _format,
    "formatlist": _formatlist,
    "greaterthan": lambda a, b: to_num(a) > to_num(b),
    "hasindex": lambda c, k: (isinstance(c, dict) and to_str(k) in c) or
    (isinstance(c, list) and isinstance(k, int) and 0 <= k < len(c)),
    "indent": lambda n, s: to_str(s).replace("\n", "\n" + " " * int(to_num(n))),
    "index": _index,
    "join": lambda sep, *ls: to_str(sep).join(to_str(x) for lst in ls for x in _list(lst)),
    "jsondecode": _jsondecode,
    "jsonencode": lambda v: json.dumps(v, separators=(",", ":")),
    "keys": lambda m: sorted(_map(m)),
    "length": _length,
    "lessthan": lambda a, b: to_num(a) < to_num(b),
    "lookup": _lookup,
    "lower": lambda s: to_str(s).lower(),
    "max": _minmax(max),
    "merge": _merge,
    "min": _minmax(min),
    "modulo": lambda a, b: _norm(to_num(a) % to_num(b)),
    "multiply": lambda a, b: _norm(to_num(a) * to_num(b)),
    "negate": lambda a: _norm(-to_num(a)),
    "not": lambda a: not to_bool(a),
    "notequal": lambda a, b: a != b,
    "or": _or,
    "range": _range,
    "regex": _regex,
    "regex_replace": _regex_replace,
    "regexall": lambda p, s: [m.group(0) for m in re.finditer(to_str(p), to_str(s))],
    "replace": _replace,
    "reverse": lambda lst: list(reversed(_list(lst))) if isinstance(lst, list) else to_str(lst)[::-1],
    "slice": lambda lst, a, b: _list(lst)[int(to_num(a)):int(to_num(b))],
    "sort": lambda lst: sorted(to_str(x) for x in _list(lst)),
    "split": _split,
    "strlen": lambda s: len(to_str(s)),
    "substr": _substr,
    "subtract": lambda a, b: _norm(to_num(a) - to_num(b)),
    "title": _title,
    "tobool": to_bool,
    "tolist": lambda v: list(_list(v)),
    "tomap": lambda v: dict(_map(v)),
    "tonumber": to_num,
    "toset": _distinct,
    "tostring": to_str,
    "trim": _trim,
    "trimprefix": lambda s, p: to_str(s).removeprefix(to_str(p)),
    "trimspace": lambda s: to_str(s).strip(),
    "trimsuffix": lambda s, p: to_str(s).removesuffix(to_str(p)),
    "upper": lambda s: to_str(s).upper(),
    "values": lambda m: [_map(m)[k] for k in sorted(_map(m))],
    "zipmap": _zipmap,
}
