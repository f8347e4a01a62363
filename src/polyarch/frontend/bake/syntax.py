"""The bake expression AST: frozen nodes, each with its ``Pos`` (file, 1-based line and column)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Attribute", "Binary", "Block", "Body", "Call", "Cond", "Directive", "Expr", "ForExpr", "GetAttr", "Index", "Lit", "ObjectExpr", "Pos", "Splat", "Template", "TemplateFor", "TemplateIf", "TupleExpr", "Unary", "Var"]


@dataclass(frozen=True, slots=True)
class Pos:
    filename: str
    line: int
    column: int


class Expr:
    __slots__ = ()
    pos: Pos


@dataclass(frozen=True, slots=True)
class Lit(Expr):
    value: Any
    pos: Pos


@dataclass(frozen=True, slots=True)
class Template(Expr):
    parts: tuple[str | Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Var(Expr):
    name: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class GetAttr(Expr):
    obj: Expr
    name: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Index(Expr):
    obj: Expr
    key: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Splat(Expr):
    obj: Expr
    attrs: tuple[str, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Call(Expr):
    name: str
    args: tuple[Expr, ...]
    expand: bool  # f(list...)
    pos: Pos


@dataclass(frozen=True, slots=True)
class TupleExpr(Expr):
    items: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ObjectExpr(Expr):
    items: tuple[tuple[Expr, Expr], ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Unary(Expr):
    op: str
    operand: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Binary(Expr):
    op: str
    left: Expr
    right: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Cond(Expr):
    cond: Expr
    then: Expr
    other: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class ForExpr(Expr):
    key_var: str | None
    value_var: str
    collection: Expr
    key: Expr | None  # None: a tuple comprehension
    value: Expr
    cond: Expr | None
    group: bool
    pos: Pos


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    expr: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Block:
    type: str
    labels: tuple[str, ...]
    body: Body
    pos: Pos


@dataclass(frozen=True, slots=True)
class Body:
    attributes: tuple[Attribute, ...]
    blocks: tuple[Block, ...]

    def attr(self, name: str) -> Attribute | None:
        for a in self.attributes:
            if a.name == name:
                return a
        return None


@dataclass(frozen=True, slots=True)
class TemplateIf(Expr):
    """``%{ if cond }…%{ else }…%{ endif }`` inside a template."""

    cond: Expr
    then: Template
    other: Template
    pos: Pos


@dataclass(frozen=True, slots=True)
class TemplateFor(Expr):
    """``%{ for k, v in coll }…%{ endfor }`` inside a template."""

    key_var: str | None
    value_var: str
    collection: Expr
    body: Template
    pos: Pos


@dataclass(frozen=True, slots=True)
class Directive:
    """A flat directive token before ``structure`` nests them: if/else/endif/for/endfor with strip markers."""

    kind: str
    pos: Pos
    expr: Expr | None = None
    names: tuple[str, ...] = ()
    strip_before: bool = False
    strip_after: bool = False
