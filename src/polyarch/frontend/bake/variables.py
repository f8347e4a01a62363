"""Bake variables: ``variable`` blocks and top-level ``NAME = …`` attributes of all files, overridden by the
environment mapping the caller passes in, each resolved once on first use.

* ``variable "X" { default = …  validation { condition = …  error_message = … } }`` or a top-level ``X = …``
  (which, in any file, replaces a variable block's default; same-named blocks: last default wins, validations
  add up); defaults may use other variables (cycles are errors).
* The environment overrides a variable block (``X=1 polyarch bake``; off with
  ``BUILDX_BAKE_DISABLE_VARS_ENV_LOOKUP=1``), converted to its declared ``type`` or its default's type (bool,
  number, ``list(…)`` as JSON or CSV, ``map(…)`` as JSON).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from polyarch.errors import ParseError

from .expr import Scope, evaluate, located
from .functions import to_str, type_name
from .syntax import Attribute, Block, Call, Pos, Var

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
        else:
            default = None
            for block in self.blocks[name]:
                attr = block.body.attr("default")
                if attr is not None:
                    default = evaluate(attr.expr, scope)
        if name in self.env and self.env_lookup:
            try:
                declared = next((b.body.attr("type") for b in self.blocks[name] if b.body.attr("type")), None)
                return _from_env(name, self.env[name], default, _type_of(declared.expr) if declared else ("", ""))
            except ParseError as exc:
                raise located(exc.message, self.blocks[name][-1].pos, self.sources) from None
        return default

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
                    ok = evaluate(cond.expr, scope)
                    if not isinstance(ok, bool):
                        raise located(f"variable {name!r}: validation condition is a {type_name(ok)}, not a bool",
                                      cond.pos, self.sources)
                    if not ok:
                        msg_attr = v.body.attr("error_message")
                        msg = to_str(evaluate(msg_attr.expr, scope)) if msg_attr else "validation failed"
                        raise located(f"variable {name!r} ({value!r}): {msg}", cond.pos, self.sources)


def _type_of(block_type: Any) -> tuple[str, str]:
    """A variable's ``type`` expression → (kind, element kind): ``string`` → ("string", ""), ``list(number)``
    → ("list", "number"); anything else → ("", "")."""
    if isinstance(block_type, Var):
        return block_type.name, ""
    if isinstance(block_type, Call) and block_type.name in ("list", "set", "tuple", "map") and block_type.args:
        inner = block_type.args[0]
        return block_type.name, inner.name if isinstance(inner, Var) else ""
    return "", ""


def _scalar(name: str, value: str, kind: str) -> Any:
    if kind == "bool":
        if value.lower() in ("true", "1", "t"):
            return True
        if value.lower() in ("false", "0", "f"):
            return False
        raise ParseError(f"variable {name!r}: environment value {value!r} is not a bool")
    if kind == "number":
        try:
            f = float(value)
        except ValueError:
            raise ParseError(f"variable {name!r}: environment value {value!r} is not a number") from None
        return int(f) if f.is_integer() else f
    return value


def _from_env(name: str, value: str, default: Any, declared: tuple[str, str] = ("", "")) -> Any:
    """An environment value converted to the variable's declared type, else to its default's type: bool and
    number parse; lists take JSON (``["a","b"]``) or comma-separated values; maps take JSON."""
    kind, element = declared
    if not kind:
        if isinstance(default, bool):
            kind = "bool"
        elif isinstance(default, int | float):
            kind = "number"
        elif isinstance(default, list):
            kind, element = "list", "string"
        elif isinstance(default, dict):
            kind = "map"
    if kind in ("list", "set", "tuple"):
        if value.lstrip().startswith("["):
            try:
                items = json.loads(value)
            except ValueError:
                raise ParseError(f"variable {name!r}: environment value is not a JSON list") from None
        else:
            items = [v.strip() for v in value.split(",")] if value.strip() else []
        if not isinstance(items, list):
            raise ParseError(f"variable {name!r}: environment value is not a list")
        return [_scalar(name, str(v), element) if element in ("bool", "number") else v for v in items]
    if kind in ("map", "object"):
        try:
            mapping = json.loads(value)
        except ValueError:
            mapping = None
        if not isinstance(mapping, dict):
            raise ParseError(f"variable {name!r}: environment value is not a JSON object")
        return mapping
    return _scalar(name, value, kind)
