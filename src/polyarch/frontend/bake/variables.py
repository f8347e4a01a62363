"""Bake variables: ``variable`` blocks and top-level ``NAME = …`` attributes of all files, overridden by the
environment mapping the caller passes in, each resolved once on first use.

* ``variable "X" { default = …  validation { condition = …  error_message = … } }`` or a top-level ``X = …``
  (which, in any file, replaces a variable block's default; same-named blocks: last default wins, validations
  add up); defaults may use other variables (cycles are errors). ``variable "X" {}`` is ``""``; with a
  ``type`` and no default it is null. A ``type`` (``types.py``) converts the default, or fails naming it.
* The environment overrides a variable block (``X=1 polyarch bake``, or ``X_JSON='[…]'`` for a typed one; off
  with ``BUILDX_BAKE_DISABLE_VARS_ENV_LOOKUP=1``), parsed for its declared ``type`` or its default's type
  (``from_env``). Validation conditions must be true or false (``"true"`` converts); null is an error.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from typing import Any

from .expr import Scope, evaluate, located
from .functions import FuncError, to_str
from .syntax import Attribute, Block, Pos
from .types import Type, convert, parse_type

__all__ = ["Variables"]


class Variables:
    """The declared variables of all files; values are computed in the evaluator's ``Scope`` when first read."""

    def __init__(self, env: Mapping[str, str], sources: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.env_lookup = self.env.get("BUILDX_BAKE_DISABLE_VARS_ENV_LOOKUP", "") in ("", "0", "false")
        self.sources = sources
        self.blocks: dict[str, list[Block]] = {}
        self.attrs: dict[str, Attribute] = {}  # top-level NAME = expr
        self._values: dict[str, Any] = {}
        self._resolving: list[str] = []

    def add_block(self, name: str, block: Block) -> None:
        self.blocks.setdefault(name, []).append(block)

    def add_attr(self, attr: Attribute) -> None:
        self.attrs[attr.name] = attr

    def declares(self, name: str) -> bool:
        return name in self.blocks or name in self.attrs

    def names(self) -> list[str]:
        return list(self.blocks) + list(self.attrs)

    def get(self, name: str, pos: Pos, scope: Scope) -> Any:
        """The value of the declared variable ``name``. :raises ParseError: a cycle, a bad environment value."""
        if name in self._values:
            return self._values[name]
        if name in self._resolving:
            chain = " -> ".join([*self._resolving[self._resolving.index(name):], name])
            raise located(f"variable cycle: {chain}", pos, self.sources)
        self._resolving.append(name)
        try:
            value = self._variable(name, scope)
        finally:
            self._resolving.pop()
        self._values[name] = value
        return value

    def _variable(self, name: str, scope: Scope) -> Any:
        if name in self.attrs:  # a top-level NAME = … (e.g. in an override file) sets the variable
            value = evaluate(self.attrs[name].expr, scope)
            if name not in self.blocks:
                return value
            default: Any = value
            has_default = True
        else:
            default, has_default = None, False
            for block in self.blocks[name]:
                attr = block.body.attr("default")
                if attr is not None:
                    default, has_default = evaluate(attr.expr, scope), True
        where = self.blocks[name][-1].pos
        declared = self._declared_type(name)
        if has_default and declared is not None:
            try:
                default = convert(default, declared)
            except FuncError as exc:
                raise located(f"variable {name!r}: invalid type {declared} for the default value: {exc}", where,
                              self.sources) from None
        override = self._override(name, typed=declared is not None)
        if override is None:
            return default if has_default or declared is not None else ""
        text, is_json = override
        try:
            return from_env(name, text, is_json, declared, default if has_default else None)
        except FuncError as exc:
            raise located(str(exc), where, self.sources) from None

    def _declared_type(self, name: str) -> Type | None:
        """The last ``type`` of the variable's blocks (``any`` included), else None."""
        attr = next((b.body.attr("type") for b in reversed(self.blocks[name]) if b.body.attr("type")), None)
        if attr is None:
            return None
        try:
            return parse_type(attr.expr)[0]
        except FuncError as exc:
            raise located(f"variable {name!r}: {exc}", attr.pos, self.sources) from None

    def _override(self, name: str, *, typed: bool) -> tuple[str, bool] | None:
        """The environment's value for ``name`` and whether it is JSON (``NAME_JSON``, preferred for a typed
        variable, used when ``NAME`` is not set), as buildx looks them up."""
        if not self.env_lookup:
            return None
        json_name = name + "_JSON"
        if (name not in self.env or typed) and json_name in self.env and json_name not in self.blocks:
            return self.env[json_name], True
        if name in self.env:
            return self.env[name], False
        return None

    def described(self, scope: Scope) -> list[tuple[str, Any, str]]:
        """(name, value, description) of every variable block, for ``--list variables``."""
        out = []
        for name, blocks in self.blocks.items():
            desc = ""
            for b in blocks:
                d = b.body.attr("description")
                if d is not None:
                    desc = to_str(evaluate(d.expr, scope))
            out.append((name, self.get(name, blocks[0].pos, scope), desc))
        return out

    def validate(self, scope: Scope) -> None:
        """Every ``validation`` block of every variable. :raises ParseError: the first one failing."""
        for name, blocks in self.blocks.items():
            value = self.get(name, blocks[0].pos, scope)
            for block in blocks:
                for v in block.body.blocks:
                    if v.type != "validation":
                        continue
                    cond = v.body.attr("condition")
                    if cond is None:
                        raise located(f"variable {name!r}: validation needs a condition", v.pos, self.sources)
                    result = evaluate(cond.expr, scope)
                    try:
                        ok = convert(result, Type("bool")) if result is not None else None
                    except FuncError as exc:
                        ok, why = None, str(exc)
                    else:
                        why = "null"
                    if ok is None:
                        raise located(f"variable {name!r}: validation condition must be true or false, not {why}",
                                      cond.pos, self.sources)
                    if not ok:
                        msg_attr = v.body.attr("error_message")
                        msg = to_str(evaluate(msg_attr.expr, scope)) if msg_attr else "validation failed"
                        raise located(f"variable {name!r} ({value!r}): {msg}", cond.pos, self.sources)


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _primitive(name: str, value: str, kind: str) -> Any:
    """Go's ``strconv`` parsing of an environment value, as buildx converts primitives."""
    if kind == "bool":
        if value in _TRUE or value in _FALSE:
            return value in _TRUE
        raise FuncError(f"variable {name!r}: failed to parse {value!r} as bool")
    if kind == "number":
        try:
            f = float(value)
        except ValueError:
            f = math.nan
        if math.isnan(f) or math.isinf(f):
            raise FuncError(f"variable {name!r}: failed to parse {value!r} as number")
        return int(f) if f.is_integer() and abs(f) < 2**63 else f
    return value


def _csv_fields(name: str, value: str, sep: str = ",") -> list[str]:
    try:
        fields = next(csv.reader([value], delimiter=sep, strict=True)) if value.strip() else []
        return [f.strip() for f in fields]  # buildx keeps the spaces; polyarch always trimmed them
    except csv.Error as exc:
        raise FuncError(f"variable {name!r}: failed to parse {value!r} as CSV: {exc}") from None


def _from_csv(name: str, value: str, t: Type) -> Any:
    """A list, set, tuple or map of primitives given as CSV (maps: ``k:v,k2:v2``)."""
    if t.kind == "tuple":
        fields = _csv_fields(name, value)
        if len(fields) != len(t.elems):
            raise FuncError(f"variable {name!r}: {t} expects {len(t.elems)} elements but {len(fields)} provided")
        if not all(e.primitive for e in t.elems):
            raise FuncError(f"variable {name!r}: unsupported type {t} for CSV specification")
        return [_primitive(name, f, e.kind) for f, e in zip(fields, t.elems, strict=True)]
    assert t.elem is not None
    if not t.elem.primitive:
        raise FuncError(f"variable {name!r}: unsupported type {t} for CSV specification")
    if t.kind == "map":
        out = {}
        for field in _csv_fields(name, value):
            pair = _csv_fields(name, field, ":")
            if len(pair) != 2:
                raise FuncError(f"variable {name!r}: expected one k/v pair but got {len(pair)} pieces from {field!r}")
            out[pair[0]] = _primitive(name, pair[1], t.elem.kind)
        return out
    items = [_primitive(name, f, t.elem.kind) for f in _csv_fields(name, value)]
    return convert(items, t)  # a set: distinct, sorted


def from_env(name: str, value: str, is_json: bool, declared: Type | None, default: Any) -> Any:
    """An environment override as buildx reads it: JSON (``NAME_JSON``) for a typed variable, CSV for a
    list/set/tuple/map type, Go's parsing for a primitive type, else the default's primitive type. Where buildx
    fails, polyarch keeps what it always accepted: a plain JSON value for a list/map/object type, spaces
    around CSV fields, an untyped variable with a list (JSON or CSV) or map (JSON) default.

    :raises FuncError: the value does not parse or convert.
    """
    if declared is not None:
        if not is_json and declared.kind in ("list", "set", "tuple", "map", "object"):
            # polyarch's superset (kept from before): a plain value that is JSON of the right shape
            is_json = value.lstrip().startswith("[" if declared.kind in ("list", "set", "tuple") else "{")
        if is_json:
            try:
                return convert(json.loads(value), declared)
            except ValueError:
                raise FuncError(f"variable {name!r}: failed to convert the value from JSON") from None
            except FuncError as exc:
                raise FuncError(f"variable {name!r}: failed to convert the value from JSON: {exc}") from None
        if declared.kind in ("list", "set", "tuple", "map"):
            return _from_csv(name, value, declared)
        if declared.primitive or declared.kind == "any":
            return _primitive(name, value, declared.kind)
        raise FuncError(f"variable {name!r}: unsupported type {declared} (give it as JSON in {name}_JSON)")
    if isinstance(default, bool):
        return _primitive(name, value, "bool")
    if isinstance(default, int | float):
        return _primitive(name, value, "number")
    if isinstance(default, list):
        if value.lstrip().startswith("["):
            try:
                items = json.loads(value)
            except ValueError:
                raise FuncError(f"variable {name!r}: environment value is not a JSON list") from None
            if not isinstance(items, list):
                raise FuncError(f"variable {name!r}: environment value is not a list")
            return items
        return [v.strip() for v in value.split(",")] if value.strip() else []
    if isinstance(default, dict):
        try:
            mapping = json.loads(value)
        except ValueError:
            mapping = None
        if not isinstance(mapping, dict):
            raise FuncError(f"variable {name!r}: environment value is not a JSON object")
        return mapping
    return value
