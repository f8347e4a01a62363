"""HCL type constraints (``string``, ``list(number)``, ``object({ a = string, b = optional(bool, true) })`` …)
and cty's conversion of a value to one: used for a variable's ``type`` and for ``convert(value, type)``.

Conversions as cty does them: numbers and bools become strings; strings become numbers when they parse and
bools when ``true``/``false``/``1``/``0``; a tuple becomes a list, set (distinct, sorted) or tuple of the same
length; an object becomes a map or an object (missing optional attributes filled, extra ones dropped); null
stays null. ``any`` accepts everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .functions import FuncError, to_num, to_str, type_name
from .functions_collections import _set
from .syntax import Call, Expr, Lit, ObjectExpr, Template, TupleExpr, Var

__all__ = ["Type", "convert", "parse_type"]

_PRIMITIVE = ("string", "number", "bool", "any")


@dataclass(frozen=True, slots=True)
class Type:
    kind: str  # string number bool any list set map tuple object
    elem: Type | None = None  # list, set, map
    elems: tuple[Type, ...] = ()  # tuple
    attrs: tuple[tuple[str, Type, bool, Any], ...] = ()  # object: (name, type, optional, default)

    @property
    def primitive(self) -> bool:
        return self.kind in ("string", "number", "bool")

    def __str__(self) -> str:
        if self.kind in _PRIMITIVE:
            return self.kind
        if self.elem is not None:
            return f"{self.kind}({self.elem})"
        if self.kind == "tuple":
            return "tuple([" + ", ".join(str(t) for t in self.elems) + "])"
        return "object({" + ", ".join(f"{n} = {t}" for n, t, _, _ in self.attrs) + "})"


def _key(expr: Expr) -> str | None:
    if isinstance(expr, Lit) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, Var):
        return expr.name
    if isinstance(expr, Template) and len(expr.parts) == 1 and isinstance(expr.parts[0], str):
        return expr.parts[0]
    return None


def parse_type(expr: Expr, *, in_object: bool = False) -> tuple[Type, bool, Any]:
    """A type expression → (type, optional, default); ``optional(…)`` only inside ``object({…})``.

    :raises FuncError: not a type expression.
    """
    if isinstance(expr, Var) and expr.name in _PRIMITIVE:
        return Type(expr.name), False, None
    if isinstance(expr, Call):
        name, args = expr.name, expr.args
        if name in ("list", "set", "map") and len(args) == 1:
            return Type(name, elem=parse_type(args[0])[0]), False, None
        if name == "tuple" and len(args) == 1 and isinstance(args[0], TupleExpr):
            return Type("tuple", elems=tuple(parse_type(a)[0] for a in args[0].items)), False, None
        if name == "object" and len(args) == 1 and isinstance(args[0], ObjectExpr):
            attrs = []
            for k, v in args[0].items:
                key = _key(k)
                if key is None:
                    raise FuncError("object type attribute names must be plain names")
                t, optional, default = parse_type(v, in_object=True)
                attrs.append((key, t, optional, default))
            return Type("object", attrs=tuple(attrs)), False, None
        if name == "optional" and in_object and len(args) in (1, 2):
            t = parse_type(args[0])[0]
            default = _literal(args[1]) if len(args) == 2 else None
            return t, True, default
    raise FuncError("a type is expected here: string, number, bool, any, list(…), set(…), map(…), tuple([…]) "
                    "or object({…})")


def _literal(expr: Expr) -> Any:
    """An ``optional(T, default)`` default: a literal value (constant expressions are enough for defaults)."""
    if isinstance(expr, Lit):
        return expr.value
    if isinstance(expr, Template) and all(isinstance(p, str) for p in expr.parts):
        return "".join(str(p) for p in expr.parts)
    if isinstance(expr, TupleExpr):
        return [_literal(i) for i in expr.items]
    if isinstance(expr, ObjectExpr):
        return {(_key(k) or ""): _literal(v) for k, v in expr.items}
    raise FuncError("an optional() default must be a constant")


def convert(value: Any, t: Type) -> Any:
    """``value`` as type ``t``. :raises FuncError: it does not convert (the message says why)."""
    if value is None or t.kind == "any":
        return value
    if t.kind == "string":
        if isinstance(value, list | dict):
            raise FuncError(f"string required, got {type_name(value)}")
        return to_str(value)
    if t.kind == "number":
        if isinstance(value, list | dict | bool):
            raise FuncError(f"number required, got {type_name(value)}")
        try:
            return to_num(value)
        except FuncError:
            raise FuncError(f"a number is required, got {value!r}") from None
    if t.kind == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "1"):
            return True
        if value in ("false", "0"):
            return False
        raise FuncError(f"bool required, got {type_name(value) if not isinstance(value, str) else repr(value)}")
    if t.kind in ("list", "set", "tuple"):
        if not isinstance(value, list):
            raise FuncError(f"{t.kind} required, got {type_name(value)}")
        if t.kind == "tuple":
            if len(value) != len(t.elems):
                raise FuncError(f"tuple required with {len(t.elems)} elements, got {len(value)}")
            return [_at(convert, v, et, i) for i, (v, et) in enumerate(zip(value, t.elems, strict=True))]
        assert t.elem is not None
        items = [_at(convert, v, t.elem, i) for i, v in enumerate(value)]
        return _set(items) if t.kind == "set" else items
    if not isinstance(value, dict):
        raise FuncError(f"{t.kind} required, got {type_name(value)}")
    if t.kind == "map":
        assert t.elem is not None
        return {k: _at(convert, v, t.elem, k) for k, v in value.items()}
    out: dict[str, Any] = {}
    for name, at, optional, default in t.attrs:
        if name not in value or value[name] is None:
            if not optional and name not in value:
                raise FuncError(f"attribute {name!r} is required")
            out[name] = None if default is None else convert(default, at)
            continue
        out[name] = _at(convert, value[name], at, name)
    return out


def _at(fn: Any, value: Any, t: Type, where: int | str) -> Any:
    try:
        return fn(value, t)
    except FuncError as exc:
        raise FuncError(f"[{where!r}]: {exc}") from None
