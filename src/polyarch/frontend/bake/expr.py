"""Evaluate the HCL expression AST (``hcl.py``) to plain Python values.

A ``Scope`` answers names (variables are resolved lazily by the bake evaluator, so a variable's default may use
another variable) and function calls (builtins, then user ``function`` blocks). Errors are ``ParseError`` at the
expression's ``file:line:col``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from polyarch.errors import ParseError, SourceSpan

from .functions import FuncError, to_bool, to_num, to_str, type_name
from .stdlib import STDLIB
from .syntax import (
    Binary,
    Call,
    Cond,
    Expr,
    ForExpr,
    GetAttr,
    Index,
    Lit,
    ObjectExpr,
    Pos,
    Splat,
    Template,
    TemplateFor,
    TemplateIf,
    TupleExpr,
    Unary,
    Var,
)

__all__ = ["Scope", "UserFunction", "evaluate", "located", "product"]


def located(message: str, pos: Pos | None, sources: Mapping[str, str] | None = None, *,
            hint: str | None = None) -> ParseError:
    if pos is None:
        return ParseError(message, hint=hint)
    text = (sources or {}).get(pos.filename, "")
    lines = text.splitlines()
    src = lines[pos.line - 1] if 0 < pos.line <= len(lines) else ""
    return ParseError(message, SourceSpan(pos.filename, pos.line, pos.column, 1, src), hint=hint)


@dataclass(frozen=True, slots=True)
class UserFunction:
    name: str
    params: tuple[str, ...]
    variadic: str | None
    result: Expr
    pos: Pos


@dataclass(slots=True)
class Scope:
    lookup: Callable[[str, Pos], Any]  # a name not in ``locals``; raises ParseError when unknown
    functions: Mapping[str, UserFunction] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    depth: int = 0
    builtins: Mapping[str, Callable[..., Any]] = field(default_factory=lambda: STDLIB)  # ``stdlib.with_home``

    def child(self, more: Mapping[str, Any]) -> Scope:
        return Scope(self.lookup, self.functions, {**self.locals, **more}, self.sources, self.depth, self.builtins)


def evaluate(expr: Expr, scope: Scope) -> Any:
    def err(msg: str) -> ParseError:
        return located(msg, expr.pos, scope.sources)

    if isinstance(expr, Lit):
        return expr.value
    if isinstance(expr, Template):
        if len(expr.parts) == 1 and not isinstance(expr.parts[0], str):
            return evaluate(expr.parts[0], scope)
        out = []
        for part in expr.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = evaluate(part, scope)
            try:
                out.append(to_str(value))
            except FuncError as exc:
                raise located(f"invalid template interpolation: {exc}", part.pos, scope.sources) from None
        return "".join(out)
    if isinstance(expr, Var):
        if expr.name in scope.locals:
            return scope.locals[expr.name]
        return scope.lookup(expr.name, expr.pos)
    if isinstance(expr, GetAttr):
        obj = evaluate(expr.obj, scope)
        if isinstance(obj, dict):
            if expr.name not in obj:
                raise err(f"object has no attribute {expr.name!r}")
            return obj[expr.name]
        raise err(f"cannot get attribute {expr.name!r} of a {type_name(obj)}")
    if isinstance(expr, Index):
        obj, key = evaluate(expr.obj, scope), evaluate(expr.key, scope)
        if isinstance(obj, list):
            try:
                i = int(to_num(key))
            except FuncError as exc:
                raise err(f"invalid index: {exc}") from None
            if not 0 <= i < len(obj):
                raise err(f"index {i} out of range for a list of {len(obj)}")
            return obj[i]
        if isinstance(obj, dict):
            if isinstance(key, list | dict):
                raise err(f"a {type_name(key)} cannot be a map key")
            name = to_str(key)
            if name not in obj:
                raise err(f"key {name!r} not found")
            return obj[name]
        raise err(f"cannot index a {type_name(obj)}")
    if isinstance(expr, Splat):
        obj = evaluate(expr.obj, scope)
        items = obj if isinstance(obj, list) else ([] if obj is None else [obj])
        out = []
        for item in items:
            for name in expr.attrs:
                if not isinstance(item, dict) or name not in item:
                    raise err(f"splat: element has no attribute {name!r}")
                item = item[name]
            out.append(item)
        return out
    if isinstance(expr, TupleExpr):
        return [evaluate(i, scope) for i in expr.items]
    if isinstance(expr, ObjectExpr):
        obj_out: dict[str, Any] = {}
        for key_expr, value_expr in expr.items:
            key = evaluate(key_expr, scope)
            try:
                obj_out[to_str(key)] = evaluate(value_expr, scope)
            except FuncError as exc:
                raise located(f"invalid object key: {exc}", key_expr.pos, scope.sources) from None
        return obj_out
    if isinstance(expr, Unary):
        value = evaluate(expr.operand, scope)
        try:
            return (not to_bool(value)) if expr.op == "!" else _norm(-to_num(value))
        except FuncError as exc:
            raise err(f"invalid operand for {expr.op}: {exc}") from None
    if isinstance(expr, Binary):
        return _binary(expr, scope)
    if isinstance(expr, Cond):
        try:
            cond = to_bool(evaluate(expr.cond, scope))
        except FuncError as exc:
            raise located(f"invalid condition: {exc}", expr.cond.pos, scope.sources) from None
        return evaluate(expr.then if cond else expr.other, scope)
    if isinstance(expr, ForExpr):
        return _for(expr, scope)
    if isinstance(expr, TemplateIf):
        try:
            cond = to_bool(evaluate(expr.cond, scope))
        except FuncError as exc:
            raise located(f"invalid %{{ if }} condition: {exc}", expr.pos, scope.sources) from None
        return _render(expr.then if cond else expr.other, scope)
    if isinstance(expr, TemplateFor):
        coll = evaluate(expr.collection, scope)
        if not isinstance(coll, dict | list):
            raise located(f"%{{ for }}: cannot iterate over a {type_name(coll)}", expr.pos, scope.sources)
        pairs = list(coll.items()) if isinstance(coll, dict) else list(enumerate(coll))
        out = []
        for k, v in pairs:
            names = {expr.value_var: v, **({expr.key_var: k} if expr.key_var else {})}
            out.append(_render(expr.body, scope.child(names)))
        return "".join(out)
    if isinstance(expr, Call):
        return _call(expr, scope)
    raise err(f"unsupported expression {type(expr).__name__}")


def _render(template: Template, scope: Scope) -> str:
    value = evaluate(template, scope)
    try:
        return to_str(value)
    except FuncError as exc:
        raise located(f"invalid template value: {exc}", template.pos, scope.sources) from None


def _norm(n: int | float) -> int | float:
    return int(n) if isinstance(n, float) and n.is_integer() else n


def _binary(expr: Binary, scope: Scope) -> Any:
    op = expr.op
    left = evaluate(expr.left, scope)
    if op in ("&&", "||"):
        try:
            lb = to_bool(left)
            if (op == "&&" and not lb) or (op == "||" and lb):
                return lb
            return to_bool(evaluate(expr.right, scope))
        except FuncError as exc:
            raise located(f"invalid operand for {op}: {exc}", expr.pos, scope.sources) from None
    right = evaluate(expr.right, scope)
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    try:
        a, b = to_num(left), to_num(right)
        if op == "+":
            return _norm(a + b)
        if op == "-":
            return _norm(a - b)
        if op == "*":
            return _norm(a * b)
        if op == "/":
            return _norm(a / b)
        if op == "%":
            return _norm(a % b)
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
    except ZeroDivisionError:
        raise located("division by zero", expr.pos, scope.sources) from None
    except FuncError as exc:
        raise located(f"invalid operand for {op}: {exc}", expr.pos, scope.sources) from None


def _for(expr: ForExpr, scope: Scope) -> Any:
    coll = evaluate(expr.collection, scope)
    if isinstance(coll, dict):
        pairs: list[tuple[Any, Any]] = list(coll.items())
    elif isinstance(coll, list):
        pairs = list(enumerate(coll))
    else:
        raise located(f"cannot iterate over a {type_name(coll)}", expr.collection.pos, scope.sources)
    tuple_out: list[Any] = []
    obj_out: dict[str, Any] = {}
    for k, v in pairs:
        names = {expr.value_var: v}
        if expr.key_var:
            names[expr.key_var] = k
        inner = scope.child(names)
        if expr.cond is not None:
            try:
                if not to_bool(evaluate(expr.cond, inner)):
                    continue
            except FuncError as exc:
                raise located(f"invalid for condition: {exc}", expr.cond.pos, scope.sources) from None
        if expr.key is None:
            tuple_out.append(evaluate(expr.value, inner))
            continue
        key = to_str(evaluate(expr.key, inner))
        value = evaluate(expr.value, inner)
        if expr.group:
            obj_out.setdefault(key, []).append(value)
        elif key in obj_out:
            raise located(f"duplicate key {key!r} in for expression (use ... to group)", expr.pos,
                          scope.sources)
        else:
            obj_out[key] = value
    return tuple_out if expr.key is None else obj_out


def _call(expr: Call, scope: Scope) -> Any:
    name = expr.name
    if name in ("try", "can"):
        for arg in expr.args:
            try:
                value = evaluate(arg, scope)
            except ParseError:
                if name == "can":
                    return False
                continue
            return True if name == "can" else value
        if name == "can":
            raise located("can() takes one argument", expr.pos, scope.sources)
        raise located("try(): no argument could be evaluated", expr.pos, scope.sources)
    if name == "convert" and name not in scope.functions:
        if len(expr.args) != 2:
            raise located("convert() takes a value and a type", expr.pos, scope.sources)
        return _convert(expr, scope)
    args = [evaluate(a, scope) for a in expr.args]
    if expr.expand:
        if not args or not isinstance(args[-1], list):
            raise located(f"{name}(…...): the last argument must be a list", expr.pos, scope.sources)
        args = args[:-1] + args[-1]
    user = scope.functions.get(name)
    if user is not None:
        return _user_call(user, args, expr, scope)
    fn = scope.builtins.get(name)
    if fn is None:
        import difflib

        close = difflib.get_close_matches(name, list(scope.builtins) + list(scope.functions), n=1)
        raise located(f"unknown function {name!r}", expr.pos, scope.sources,
                      hint=f"did you mean {close[0]!r}?" if close else None)
    try:
        return fn(*args)
    except FuncError as exc:
        raise located(f"{name}(): {exc}", expr.pos, scope.sources) from None
    except TypeError:
        raise located(f"{name}(): wrong number of arguments ({len(args)})", expr.pos, scope.sources) from None
    except (ValueError, OverflowError, ZeroDivisionError) as exc:
        raise located(f"{name}(): {exc}", expr.pos, scope.sources) from None


def _user_call(fn: UserFunction, args: list[Any], expr: Call, scope: Scope) -> Any:
    n = len(fn.params)
    if len(args) < n or (len(args) > n and fn.variadic is None):
        raise located(f"{fn.name}(): expected {n}{'+' if fn.variadic else ''} arguments, got {len(args)}",
                      expr.pos, scope.sources)
    if scope.depth > 64:
        raise located(f"{fn.name}(): recursion too deep", expr.pos, scope.sources)
    names: dict[str, Any] = dict(zip(fn.params, args[:n], strict=True))
    if fn.variadic:
        names[fn.variadic] = args[n:]
    # a function sees its parameters and the global variables, not the caller's locals
    inner = Scope(scope.lookup, scope.functions, names, scope.sources, scope.depth + 1, scope.builtins)
    return evaluate(fn.result, inner)


def _convert(expr: Call, scope: Scope) -> Any:
    """``convert(value, type)``: the value converted to a type expression (not evaluated)."""
    from .types import convert, parse_type

    value = evaluate(expr.args[0], scope)
    try:
        return convert(value, parse_type(expr.args[1])[0])
    except FuncError as exc:
        raise located(f"convert(): {exc}", expr.pos, scope.sources) from None


def product(matrix: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(matrix)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(matrix[k] for k in keys))]
