"""HCL templates: text with ``${expr}`` interpolations and ``%{ if }``/``%{ for }`` directives → a ``Template``
node with nested ``TemplateIf``/``TemplateFor`` parts (``~`` strip markers applied).

``scan_template`` splits template text (a JSON string, a heredoc body) and is given the expression parser, so
this module needs no HCL grammar; ``structure`` nests flat parts, also for templates the HCL parser produced.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from polyarch.errors import ParseError, SourceSpan

from .syntax import Directive, Expr, Pos, Template, TemplateFor, TemplateIf

__all__ = ["ExprParser", "scan_template", "structure"]

ExprParser = Callable[[str, Pos], Expr]  # expression text at a position → AST; raises ParseError


def scan_template(text: str, pos: Pos, parse_expr: ExprParser) -> Template:
    """A JSON string (or heredoc body) as a template: ``${expr}`` interpolations (parsed by ``parse_expr``),
    ``$${`` / ``%%{`` escapes, ``%{…}`` directives. :raises ParseError: unterminated or invalid."""
    parts: list[str | Expr | Directive] = []
    i, buf = 0, []
    while i < len(text):
        if text.startswith("$${", i):
            buf.append("${")
            i += 3
        elif text.startswith("%%{", i):
            buf.append("%{")
            i += 3
        elif text.startswith("${", i):
            end = _closing(text, i + 2, pos)
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(parse_expr(text[i + 2:end], pos))
            i = end + 1
        elif text.startswith("%{", i):
            end = _closing(text, i + 2, pos)
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(_directive(text[i + 2:end], pos, parse_expr))
            i = end + 1
        else:
            buf.append(text[i])
            i += 1
    if buf:
        parts.append("".join(buf))
    return structure(parts, pos)


_FOR = re.compile(r"for\s+([A-Za-z_][\w-]*)(?:\s*,\s*([A-Za-z_][\w-]*))?\s+in\s+(.+)$", re.DOTALL)


def _directive(content: str, pos: Pos, parse_expr: ExprParser) -> Directive:
    before, after = content.startswith("~"), content.rstrip().endswith("~")
    inner = content.strip().strip("~").strip()
    if inner in ("else", "endif", "endfor"):
        return Directive(inner, pos, strip_before=before, strip_after=after)
    if inner.startswith("if "):
        return Directive("if", pos, parse_expr(inner[3:], pos), strip_before=before, strip_after=after)
    m = _FOR.match(inner)
    if m:
        names = (m.group(1), m.group(2)) if m.group(2) else (m.group(1),)
        return Directive("for", pos, parse_expr(m.group(3), pos), names, before, after)
    raise ParseError(f"invalid template directive %{{{content}}}", _sp(pos))


def structure(parts: Sequence[str | Expr | Directive], pos: Pos) -> Template:
    """Flat template parts with directive tokens → nested ``TemplateIf``/``TemplateFor``; applies ``~`` strips.

    :raises ParseError: an unclosed or unexpected directive.
    """
    items = list(parts)
    for i, item in enumerate(items):
        if isinstance(item, Directive):
            if item.strip_before and i > 0 and isinstance(items[i - 1], str):
                items[i - 1] = str(items[i - 1]).rstrip()
            if item.strip_after and i + 1 < len(items) and isinstance(items[i + 1], str):
                items[i + 1] = str(items[i + 1]).lstrip()

    def nest(i: int, stop: frozenset[str]) -> tuple[list[str | Expr], int, Directive | None]:
        out: list[str | Expr] = []
        while i < len(items):
            item = items[i]
            if not isinstance(item, Directive):
                out.append(item)
                i += 1
                continue
            if item.kind in stop:
                return out, i, item
            if item.kind == "if" and item.expr is not None:
                then, i, end = nest(i + 1, frozenset({"else", "endif"}))
                other: list[str | Expr] = []
                if end is not None and end.kind == "else":
                    other, i, end = nest(i + 1, frozenset({"endif"}))
                if end is None:
                    raise ParseError("%{ if } without %{ endif }", _sp(item.pos))
                out.append(TemplateIf(item.expr, _merged(then, item.pos), _merged(other, item.pos), item.pos))
            elif item.kind == "for" and item.expr is not None:
                body, i, end = nest(i + 1, frozenset({"endfor"}))
                if end is None:
                    raise ParseError("%{ for } without %{ endfor }", _sp(item.pos))
                key, value = (item.names[0], item.names[1]) if len(item.names) == 2 else (None, item.names[0])
                out.append(TemplateFor(key, value, item.expr, _merged(body, item.pos), item.pos))
            else:
                raise ParseError(f"unexpected %{{ {item.kind} }}", _sp(item.pos))
            i += 1
        return out, i, None

    flat, _, _ = nest(0, frozenset())
    return _merged(flat, pos)


def _merged(parts: list[str | Expr], pos: Pos) -> Template:
    out: list[str | Expr] = []
    for p in parts:
        if isinstance(p, str) and out and isinstance(out[-1], str):
            out[-1] += p
        elif not (isinstance(p, str) and not p):
            out.append(p)
    return Template(tuple(out), pos)


def _sp(pos: Pos) -> SourceSpan:
    return SourceSpan(pos.filename, pos.line, pos.column)


def _closing(text: str, start: int, pos: Pos) -> int:
    depth, i, quote = 0, start, False
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote = True
        elif c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise ParseError("unterminated ${ in template", _sp(pos))
