"""HCL text → a small expression AST with positions (python-hcl2's lark grammar parses; nothing is evaluated here).

``parse_hcl(text, filename)`` returns a ``Body``: attributes and blocks in file order. Expressions become the
frozen nodes of ``syntax.py``, each with its ``Pos`` (1-based line and column), so evaluation errors can name
``file:line:col``. Strings and heredocs become ``Template`` nodes; ``$${`` stays a literal ``${``; template
directives (``%{ if c }…%{ else }…%{ endif }``, ``%{ for x in xs }…%{ endfor }``, ``~`` strip markers) nest into
``TemplateIf``/``TemplateFor`` parts (``template.py``). ``parse_template`` turns a JSON string into the same
``Template`` node, so JSON bake files evaluate like HCL ones.
"""

from __future__ import annotations

import re
from typing import Any

from polyarch.errors import ParseError, SourceSpan

from .syntax import (
    Attribute,
    Binary,
    Block,
    Body,
    Call,
    Cond,
    Directive,
    Expr,
    ForExpr,
    GetAttr,
    Index,
    Lit,
    ObjectExpr,
    Pos,
    Splat,
    Template,
    TupleExpr,
    Unary,
    Var,
)
from .template import scan_template, structure

__all__ = ["Attribute", "Binary", "Block", "Body", "Call", "Cond", "Expr", "ForExpr", "GetAttr", "Index", "Lit",
           "ObjectExpr", "Pos", "Splat", "Template", "TupleExpr", "Unary", "Var", "parse_hcl", "parse_template",
           "span"]


def span(pos: Pos | None, filename: str = "", source: str = "") -> SourceSpan | None:
    if pos is None:
        return SourceSpan(filename, 1, 1) if filename else None
    lines = source.splitlines()
    text = lines[pos.line - 1] if source and 0 < pos.line <= len(lines) else ""
    return SourceSpan(pos.filename, pos.line, pos.column, 1, text)


def parse_hcl(text: str, filename: str) -> Body:
    """:raises ParseError: a syntax error, at its line and column."""
    import hcl2
    from lark.exceptions import LarkError, UnexpectedInput

    try:
        tree = hcl2.parses_to_tree(text)
    except RecursionError:
        raise ParseError("expressions are nested too deeply", SourceSpan(filename, 1, 1)) from None
    except UnexpectedInput as exc:
        line, col = max(getattr(exc, "line", 1), 1), max(getattr(exc, "column", 1), 1)
        token = getattr(exc, "token", None)
        expected = set(getattr(exc, "expected", ()) or ())
        if token is None:
            what = f"unexpected character {getattr(exc, 'char', '?')!r}"
        elif token.type == "$END":
            what = "unterminated string" if "DBLQUOTE" in expected else "unexpected end of input"
        else:
            shown = (str(token).strip().splitlines() or [""])[0][:20]
            what = f"unexpected {shown!r}" if shown else "unexpected line break"
        lines = text.splitlines()
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        raise ParseError(f"syntax error: {what}", SourceSpan(filename, line, col, 1, src)) from None
    except LarkError as exc:
        raise ParseError(f"syntax error: {str(exc).splitlines()[0]}", SourceSpan(filename, 1, 1)) from None
    try:
        return _Conv(filename).body(tree.children[0])
    except RecursionError:
        raise ParseError("expressions are nested too deeply", SourceSpan(filename, 1, 1)) from None
    except ParseError as exc:
        if exc.span is not None and not exc.span.source_line:
            lines = text.splitlines()
            line = exc.span.line
            src = lines[line - 1] if 0 < line <= len(lines) else ""
            raise ParseError(exc.message, SourceSpan(exc.span.filename, line, exc.span.column, 1, src),
                             hint=exc.hint) from None
        raise


def parse_template(text: str, pos: Pos) -> Template:
    """A JSON string (or heredoc body) as a template: ``${expr}`` interpolations, ``$${`` escapes."""
    return scan_template(text, pos, _parse_expr)


def _sp(pos: Pos) -> SourceSpan:
    return SourceSpan(pos.filename, pos.line, pos.column)


def _parse_expr(src: str, pos: Pos) -> Expr:
    import hcl2
    from lark.exceptions import LarkError

    try:
        tree = hcl2.parses_to_tree(f"x = {src.strip()}\n")
    except LarkError:
        raise ParseError(f"invalid expression in template: {src.strip()!r}", _sp(pos)) from None
    conv = _Conv(pos.filename, base=pos)
    body = conv.body(tree.children[0])
    if len(body.attributes) != 1:
        raise ParseError(f"invalid expression in template: {src.strip()!r}", _sp(pos))
    return body.attributes[0].expr


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unescape(s: str, pos: Pos) -> str:
    def sub(m: re.Match[str]) -> str:
        e = m.group(1)
        if e in _ESCAPES:
            return _ESCAPES[e]
        if e[0] in "uU":
            return chr(int(e[1:], 16))
        raise ParseError(f"invalid escape \\{e} in string", _sp(pos))

    return re.sub(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", sub, s)


class _Conv:
    """Lark tree → AST."""

    def __init__(self, filename: str, base: Pos | None = None) -> None:
        self.filename = filename
        self.base = base  # for expressions parsed out of a template: report the template's position

    def pos(self, node: Any) -> Pos:
        if self.base is not None:
            return self.base
        meta = getattr(node, "meta", None)
        if meta is not None and not getattr(meta, "empty", True):
            return Pos(self.filename, meta.line, meta.column)
        line = getattr(node, "line", None)
        if line is not None:
            return Pos(self.filename, line, getattr(node, "column", 1) or 1)
        return Pos(self.filename, 1, 1)

    @staticmethod
    def trees(node: Any) -> list[Any]:
        from lark import Tree

        return [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]

    def body(self, node: Any) -> Body:
        attrs: list[Attribute] = []
        blocks: list[Block] = []
        for child in self.trees(node):
            if child.data == "attribute":
                name_node, expr_node = self.trees(child)[0], self.trees(child)[-1]
                attrs.append(Attribute(self.name(name_node), self.expr(expr_node), self.pos(child)))
            elif child.data == "block":
                parts = self.trees(child)
                labels = [self.name(p) if p.data != "string" else self.plain_string(p) for p in parts[:-1]]
                blocks.append(Block(labels[0], tuple(labels[1:]), self.body(parts[-1]), self.pos(child)))
        return Body(tuple(attrs), tuple(blocks))

    def name(self, node: Any) -> str:
        tok = node.children[0]
        return str(tok.children[0]) if hasattr(tok, "children") else str(tok)

    def plain_string(self, node: Any) -> str:
        t = self.template(node)
        if not all(isinstance(p, str) for p in t.parts):
            raise ParseError("block labels cannot contain interpolations", _sp(t.pos))
        return "".join(p for p in t.parts if isinstance(p, str))

    def template(self, node: Any) -> Template:
        from lark import Token, Tree

        pos = self.pos(node)
        parts: list[str | Expr | Directive] = []
        for sp in node.children:
            if not isinstance(sp, Tree):
                continue
            inner = sp.children[0]
            if isinstance(inner, Tree):
                if inner.data == "interpolation":
                    parts.append(self.expr(self.trees(inner)[0]))
                    continue
                kind = inner.data.removeprefix("template_").removesuffix("_start")
                toks = [c for c in inner.children if isinstance(c, Token)]
                kw = next((j for j, t in enumerate(toks) if t.type in ("IF", "ELSE", "ENDIF", "FOR", "ENDFOR")), 0)
                marks = [j for j, t in enumerate(toks) if t.type == "STRIP_MARKER"]
                trees = self.trees(inner)
                names = tuple(str(t.children[0]) for t in trees if t.data == "identifier")
                exprs = [t for t in trees if t.data != "identifier"]
                parts.append(Directive(kind, self.pos(inner), self.expr(exprs[0]) if exprs else None, names,
                                       any(j < kw for j in marks), any(j > kw for j in marks)))
            elif inner.type == "ESCAPED_INTERPOLATION":
                parts.append("${" + str(inner)[3:])
            elif inner.type == "ESCAPED_DIRECTIVE":
                parts.append("%{" + str(inner)[3:])
            else:
                parts.append(_unescape(str(inner), self.pos(inner)))
        return structure(parts, pos)

    def expr(self, node: Any) -> Expr:
        from lark import Token

        pos = self.pos(node)
        kind = node.data
        kids = self.trees(node)
        if kind == "expr_term":
            if not kids:
                raise ParseError("empty expression", _sp(pos))
            return self.expr(kids[0])
        if kind == "int_lit":
            return Lit(int(str(node.children[0])), pos)
        if kind == "float_lit":
            return Lit(float(str(node.children[0])), pos)
        if kind == "literal_value":
            return Lit({"true": True, "false": False, "null": None}[str(node.children[0])], pos)
        if kind == "identifier":
            return Var(str(node.children[0]), pos)
        if kind == "string":
            return self.template(node)
        if kind in ("heredoc_template", "heredoc_template_trim"):
            raw = str(node.children[0])
            lines = raw.split("\n")[1:-2]
            if kind == "heredoc_template_trim":
                indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
                lines = [x[indent:] for x in lines]
            return parse_template("\n".join(lines) + ("\n" if lines else ""), pos)
        if kind == "tuple":
            return TupleExpr(tuple(self.expr(k) for k in kids), pos)
        if kind == "object":
            items = []
            for elem in kids:
                key_node, val_node = self.trees(elem)
                key_expr = self.trees(key_node)[0] if self.trees(key_node) else key_node
                key = self.expr(key_expr) if key_expr.data != "keyword" else Lit(self.name(key_expr), pos)
                if isinstance(key, Var):
                    key = Lit(key.name, key.pos)
                items.append((key, self.expr(val_node)))
            return ObjectExpr(tuple(items), pos)
        if kind == "function_call":
            names = [str(k.children[0]) for k in kids if k.data == "identifier"]
            args = [k for k in kids if k.data == "arguments"]
            arg_exprs = tuple(self.expr(a) for a in self.trees(args[0])) if args else ()
            expand = bool(args) and any(isinstance(t, Token) and t.type == "ELLIPSIS" for t in args[0].children)
            return Call("::".join(names), arg_exprs, expand, pos)
        if kind == "get_attr_expr_term":
            return GetAttr(self.expr(kids[0]), self.name(self.trees(kids[1])[0]), pos)
        if kind == "index_expr_term":
            idx = kids[1]
            if idx.data == "short_index":
                return Index(self.expr(kids[0]), Lit(int(str(idx.children[-1])), pos), pos)
            return Index(self.expr(kids[0]), self.expr(self.trees(idx)[0]), pos)
        if kind in ("attr_splat_expr_term", "full_splat_expr_term"):
            attrs = tuple(self.name(self.trees(g)[0]) for g in self.trees(kids[1]) if g.data == "get_attr")
            return Splat(self.expr(kids[0]), attrs, pos)
        if kind == "unary_op":
            return Unary(str(node.children[0]), self.expr(kids[0]), pos)
        if kind == "binary_op":
            term = kids[1]
            op = str(self.trees(term)[0].children[0]).strip()
            return Binary(op, self.expr(kids[0]), self.expr(self.trees(term)[1]), pos)
        if kind == "conditional":
            return Cond(self.expr(kids[0]), self.expr(kids[1]), self.expr(kids[2]), pos)
        if kind in ("for_tuple_expr", "for_object_expr"):
            intro = kids[0]
            idents = [str(k.children[0]) for k in self.trees(intro) if k.data == "identifier"]
            coll = self.expr(next(k for k in self.trees(intro) if k.data != "identifier"))
            key_var, value_var = (idents[0], idents[1]) if len(idents) == 2 else (None, idents[0])
            rest = kids[1:]
            cond = None
            if rest and rest[-1].data == "for_cond":
                cond = self.expr(self.trees(rest[-1])[0])
                rest = rest[:-1]
            group = any(isinstance(t, Token) and t.type == "ELLIPSIS" for t in node.children)
            if kind == "for_tuple_expr":
                return ForExpr(key_var, value_var, coll, None, self.expr(rest[0]), cond, False, pos)
            return ForExpr(key_var, value_var, coll, self.expr(rest[0]), self.expr(rest[1]), cond, group, pos)
        if kind == "template_string":
            raise ParseError("unsupported template string", _sp(pos))
        raise ParseError(f"unsupported expression ({kind})", _sp(pos))
