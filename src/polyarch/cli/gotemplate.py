"""The subset of docker's ``--format`` Go templates users type, over plain dicts.

Supported: literal text with ``\\t``/``\\n`` escapes, ``{{.Field}}`` (and ``{{.A.B}}``), ``{{json .}}``,
``{{json .Field}}``, ``{{upper .Field}}``, ``{{lower .Field}}``, ``{{println .Field}}``; a ``table `` prefix adds a
header row (the fields' names in docker's spelling) and aligns columns split by tabs. Anything else is refused
with one error naming the action, never half-rendered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyarch.errors import UsageError

__all__ = ["Template", "parse_template"]

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.S)
_FUNCS: dict[str, Callable[[Any], str]] = {
    "json": lambda v: json.dumps(v, separators=(",", ":")),
    "upper": lambda v: _text(v).upper(),
    "lower": lambda v: _text(v).lower(),
    "println": lambda v: _text(v) + "\n",
}
# docker's column headers for the fields it knows; others are upper-cased
_HEADERS = {"ID": "IMAGE ID", "CreatedAt": "CREATED AT", "CreatedSince": "CREATED", "Repository": "REPOSITORY"}


def _text(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_text(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True, slots=True)
class _Action:
    func: str  # "" for a plain field
    path: tuple[str, ...]  # () for "."


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: ``parts`` alternate literal text and actions; ``table`` asks for a header and columns."""

    parts: tuple[str | _Action, ...]
    table: bool

    def render(self, item: Mapping[str, Any]) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = item
            for key in part.path:
                if not isinstance(value, Mapping) or key not in value:
                    raise UsageError(f"template: can't evaluate field {key}",
                                     hint="fields: " + ", ".join(sorted(item)))
                value = value[key]
            out.append(_FUNCS[part.func](value) if part.func else _text(value))
        return "".join(out)

    def header(self) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                name = part.path[-1] if part.path else ""
                out.append(_HEADERS.get(name, name.upper()))
        return "".join(out)

    def render_all(self, items: Sequence[Mapping[str, Any]]) -> list[str]:
        """One line per item (a table: header first, tab-separated cells aligned with three spaces)."""
        lines = [self.render(i) for i in items]
        if not self.table:
            return lines
        rows = [r.split("\t") for r in [self.header(), *lines]]
        widths = [max((len(r[c]) for r in rows if c < len(r)), default=0) for c in range(max(len(r) for r in rows))]
        return ["".join(cell.ljust(widths[c] + 3) if c < len(r) - 1 else cell for c, cell in enumerate(r)).rstrip()
                for r in rows]


def parse_template(text: str) -> Template:
    """Parse ``text``. :raises UsageError: an action outside the subset, or unbalanced braces."""
    table = text.startswith("table ") or text == "table"
    body = text[6:] if text.startswith("table ") else ("" if text == "table" else text)
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    parts: list[str | _Action] = []
    pos = 0
    for m in _ACTION.finditer(body):
        parts.append(body[pos:m.start()])
        parts.append(_action(m.group(1), text))
        pos = m.end()
    rest = body[pos:]
    if "{{" in rest or "}}" in rest:
        raise UsageError(f"invalid --format {text!r}: unbalanced {{{{ }}}}")
    parts.append(rest)
    return Template(tuple(p for p in parts if p != ""), table)


def _action(inner: str, text: str) -> _Action:
    words = inner.split()
    func = ""
    if len(words) == 2 and words[0] in _FUNCS:
        func, words = words[0], words[1:]
    if len(words) != 1 or not words[0].startswith("."):
        raise UsageError(f"unsupported --format action {{{{{inner}}}}} in {text!r}",
                         hint="use {{.Field}}, {{json .}}, {{json .Field}}, {{upper|lower|println .Field}}")
    path = tuple(p for p in words[0].split(".") if p)
    return _Action(func, path)
