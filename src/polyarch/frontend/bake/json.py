"""JSON bake files → the same ``Body`` as HCL: strings are templates (``${…}`` interpolates, ``$${`` escapes).

Shape (buildx's): ``{"variable": {"X": {"default": …}}, "function": {"f": {"params": […], "result": "${…}"}},
"group": {"default": {"targets": […]}}, "target": {"app": {…}}}``; other top-level keys are variables. HCL's
JSON forms of several blocks work too: ``"target": [{"a": {…}}, {"b": {…}}]`` and ``"target": {"a": [{…}, {…}]}``.
"""

from __future__ import annotations

import json as _json
from typing import Any

from polyarch.errors import ParseError, SourceSpan

from .hcl import Attribute, Block, Body, Expr, Lit, ObjectExpr, Pos, TupleExpr, Var, parse_template

__all__ = ["parse_json"]


def _expr(value: Any, pos: Pos) -> Expr:
    if isinstance(value, str):
        return parse_template(value, pos)
    if isinstance(value, list):
        return TupleExpr(tuple(_expr(v, pos) for v in value), pos)
    if isinstance(value, dict):
        return ObjectExpr(tuple((Lit(str(k), pos), _expr(v, pos)) for k, v in value.items()), pos)
    return Lit(value, pos)


def _body(obj: dict[str, Any], pos: Pos, *, function: bool = False) -> Body:
    attrs: list[Attribute] = []
    blocks: list[Block] = []
    for key, value in obj.items():
        if key == "validation" and isinstance(value, list | dict):
            for item in value if isinstance(value, list) else [value]:
                blocks.append(Block("validation", (), _body(item, pos), pos))
        elif function and key == "params" and isinstance(value, list):
            attrs.append(Attribute(key, TupleExpr(tuple(Var(str(v), pos) for v in value), pos), pos))
        elif function and key == "variadic_params" and isinstance(value, str):
            attrs.append(Attribute(key, Var(value, pos), pos))
        else:
            attrs.append(Attribute(key, _expr(value, pos), pos))
    return Body(tuple(attrs), tuple(blocks))


def parse_json(text: str, filename: str) -> Body:
    """:raises ParseError: invalid JSON (at its line and column) or a block that is not an object."""
    try:
        doc = _json.loads(text)
    except _json.JSONDecodeError as exc:
        lines = text.splitlines()
        src = lines[exc.lineno - 1] if 0 < exc.lineno <= len(lines) else ""
        raise ParseError(f"invalid JSON: {exc.msg}", SourceSpan(filename, exc.lineno, exc.colno, 1, src)) from None
    top = Pos(filename, 1, 1)
    if not isinstance(doc, dict):
        raise ParseError("a JSON bake file must be an object", SourceSpan(filename, 1, 1))
    attrs: list[Attribute] = []
    blocks: list[Block] = []
    for kind, entries in doc.items():
        if kind not in ("variable", "function", "group", "target"):
            attrs.append(Attribute(kind, _expr(entries, top), top))
            continue
        # HCL's JSON syntax: an object of named blocks, or a list of such objects; a block's body may be a
        # list of bodies (several same-named blocks, merged as in HCL files)
        groups = entries if isinstance(entries, list) else [entries]
        for named in groups:
            if not isinstance(named, dict):
                raise ParseError(f"{kind!r} must be an object of named blocks (or a list of them)",
                                 SourceSpan(filename, 1, 1))
            for name, value in named.items():
                pos = _find(text, name, filename)
                for obj in value if isinstance(value, list) else [value]:
                    if not isinstance(obj, dict):
                        raise ParseError(f"{kind} {name!r} must be an object", SourceSpan(filename, pos.line,
                                                                                         pos.column))
                    blocks.append(Block(kind, (str(name),), _body(obj, pos, function=kind == "function"), pos))
    return Body(tuple(attrs), tuple(blocks))


def _find(text: str, name: str, filename: str) -> Pos:
    """Where ``"name":`` first appears (JSON has no positions after parsing; good enough for messages)."""
    needle = _json.dumps(name) + ":"
    i = text.find(needle)
    if i < 0:
        i = text.find(_json.dumps(name))
    if i < 0:
        return Pos(filename, 1, 1)
    line = text.count("\n", 0, i) + 1
    return Pos(filename, line, i - (text.rfind("\n", 0, i) + 1) + 1)
