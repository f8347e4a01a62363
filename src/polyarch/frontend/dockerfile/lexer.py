"""Dockerfile lexer: parser directives, comments, line continuations and heredocs → logical lines with spans.

The text is read once, top to bottom:

* parser directives (``# syntax=…``, ``# escape=…``, ``# check=…``) are recognised only at the very top, before
  any comment, empty line or instruction; an unknown directive counts as a comment and ends the directives;
* a line whose first non-blank character is ``#`` is a comment, also inside a continuation;
* a line ending with the escape character (then optional blanks) continues on the next one; the escape
  character is dropped and the lines are joined as written; empty continuation lines are skipped (and recorded,
  as BuildKit warns about them);
* for ``RUN``, ``COPY`` and ``ADD`` every ``<<DELIM`` / ``<<-DELIM`` / ``<<"DELIM"`` word opens a heredoc whose
  body is read from the following lines, in order, up to a line equal to the delimiter (``<<-`` strips leading
  tabs). A quoted delimiter means "do not expand".

The result keeps, for every logical line, the physical lines it came from so errors can point at a column.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from polyarch.errors import ParseError, SourceSpan
from polyarch.frontend.dockerfile.words import split_raw_words

__all__ = ["INSTRUCTIONS", "Directives", "Heredoc", "LexedFile", "Line", "heredoc_marker", "heredoc_name", "lex"]

INSTRUCTIONS = (
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL", "MAINTAINER",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
)
_INSTRUCTION_SET = frozenset(INSTRUCTIONS)
_HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})
_DIRECTIVE_RE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_KNOWN_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_HEREDOC_RE = re.compile(r"^(\d*)<<(-?)[ \t]*([^<]*)$")


@dataclass(frozen=True, slots=True)
class Directives:
    syntax: str = ""
    escape: str = "\\"
    check: str = ""
    lines: tuple[tuple[str, int], ...] = ()  # (name, line) of each directive found


@dataclass(frozen=True, slots=True)
class Heredoc:
    """A heredoc body. ``word`` is the marker as written (``<<-"EOF"``); ``content`` ends with a newline."""

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int | None = None
    word: str = ""


@dataclass(frozen=True, slots=True)
class Line:
    """One instruction as a logical line."""

    keyword: str  # as written, e.g. ``run``
    rest: str  # everything after the keyword, continuations joined, leading blanks removed
    start_line: int  # 1-based, first physical line
    end_line: int  # last physical line, heredoc bodies included
    physical: tuple[str, ...]  # the physical lines start_line..end_line
    heredocs: tuple[Heredoc, ...] = ()
    comments: tuple[str, ...] = ()  # comment lines right above it (text after '#'), for descriptions
    filename: str = "Dockerfile"

    @property
    def name(self) -> str:
        return self.keyword.upper()

    @property
    def original(self) -> str:
        """The logical line as BuildKit keeps it: keyword and arguments (heredoc bodies not included)."""
        return f"{self.keyword} {self.rest}".rstrip()

    def span(self, needle: str = "", *, occurrence_from: int = 0) -> SourceSpan:
        """Where ``needle`` first occurs in this instruction's physical lines (the keyword when not found)."""
        if needle:
            for offset, text in enumerate(self.physical):
                col = text.find(needle, occurrence_from if offset == 0 else 0)
                if col >= 0:
                    return SourceSpan(self.filename, self.start_line + offset, col + 1, max(len(needle), 1), text)
        first = self.physical[0] if self.physical else ""
        col = max(first.find(self.keyword), 0)
        return SourceSpan(self.filename, self.start_line, col + 1, max(len(self.keyword), 1), first)

    def error(self, message: str, needle: str = "", *, hint: str | None = None) -> ParseError:
        return ParseError(message, self.span(needle), hint=hint)


@dataclass(frozen=True, slots=True)
class LexedFile:
    filename: str
    directives: Directives
    lines: tuple[Line, ...]
    source_lines: tuple[str, ...]
    empty_continuations: tuple[int, ...] = ()  # line numbers of skipped empty continuation lines


def _parse_directives(lines: list[str], filename: str) -> Directives:
    found: dict[str, str] = {}
    where: list[tuple[str, int]] = []
    for i, text in enumerate(lines):
        m = _DIRECTIVE_RE.match(text)
        if not m or m.group(1).lower() not in _KNOWN_DIRECTIVES:
            break
        name = m.group(1).lower()
        if name in found:
            raise ParseError(f"only one {name} parser directive can be used",
                             SourceSpan(filename, i + 1, 1, len(text), text))
        found[name] = m.group(2)
        where.append((name, i + 1))
    escape = found.get("escape", "\\")
    if escape not in ("\\", "`"):
        line_no = dict(where)["escape"]
        text = lines[line_no - 1]
        raise ParseError(f"invalid escape token {escape!r} does not match ` or \\",
                         SourceSpan(filename, line_no, text.rfind(escape) + 1, len(escape), text))
    return Directives(found.get("syntax", ""), escape, found.get("check", ""), tuple(where))


def _continues(text: str, escape: str) -> tuple[str, bool]:
    """A line continues when it ends with the escape character (then optional blanks) that is not itself
    escaped: ``a \\`` continues, ``a \\\\`` does not (BuildKit's rule)."""
    stripped = text.rstrip(" \t")
    if stripped.endswith(escape) and (len(stripped) == 1 or stripped[-2] != escape):
        return stripped[:-1], True
    return text, False


def _heredoc_words(rest: str) -> list[str]:
    """The words heredoc markers are looked for in: raw words, where ``<<`` followed by blanks is glued to the
    next word (``<<  EOF`` is one marker) — BuildKit reads them with its own lexer and ``\\`` as escape."""
    words = split_raw_words(rest, escape="\\")
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word.endswith("<<") and i + 1 < len(words):
            gap = rest[rest.find(word) + len(word):]
            word = word + gap[: len(gap) - len(gap.lstrip(" \t"))] + words[i + 1]
            i += 1
        out.append(word)
        i += 1
    return out


def heredoc_name(rest: str) -> tuple[str, bool]:
    """The delimiter after ``<<``/``<<-`` and whether the body is expanded: quotes are removed and ``\\`` makes
    the next character literal; the body is expanded unless some quote quoted (``<<'EOF'``, ``<<E"O"F``).
    An empty result (or more than one word) is no delimiter.

    :raises ParseError: (without a span) an unterminated quote."""
    out: list[str] = []
    quoted, words, i, n = False, 1, 0, len(rest)
    while i < n:
        ch = rest[i]
        if ch == "\\":
            out.append(rest[i + 1:i + 2])
            i += 2
            continue
        if ch in "'\"":
            end = i + 1
            while end < n and rest[end] != ch:
                end += 2 if ch == '"' and rest[end] == "\\" else 1
            if end >= n:
                raise ParseError(f"unexpected end of statement while looking for matching {ch}-quote")
            body = rest[i + 1:end]
            out.append(re.sub(r'\\([\\"$])', r"\1", body) if ch == '"' else body)
            quoted, i = True, end + 1
            continue
        if ch in " \t":
            words += 1 if out and i + 1 < n and rest[i + 1] not in " \t" else 0
        else:
            out.append(ch)
        i += 1
    return ("".join(out) if words == 1 else ""), not quoted


def _heredoc_markers(rest: str) -> list[tuple[str, str, bool, bool, int | None]]:
    """(word, delimiter, expand, chomp, fd) for each heredoc marker among the words of ``rest``."""
    if "<<" not in rest or rest.lstrip().startswith("["):
        return []
    out = []
    for word in _heredoc_words(rest):
        marker = heredoc_marker(word)
        if marker is not None:
            out.append((word, *marker))
    return out


def heredoc_marker(word: str) -> tuple[str, bool, bool, int | None] | None:
    """(delimiter, expand, chomp, fd) when ``word`` is a heredoc marker (``<<EOF``, ``3<<-'EOF'``), else None.

    :raises ParseError: (without a span) an unterminated quote in the delimiter."""
    m = _HEREDOC_RE.match(word)
    if not m or not m.group(3):
        return None
    delim, expand = heredoc_name(m.group(3))
    if not delim:
        return None
    return delim, expand, m.group(2) == "-", int(m.group(1)) if m.group(1) else None


def lex(text: str, filename: str = "Dockerfile") -> LexedFile:
    """Split a Dockerfile into directives and logical lines.

    :raises ParseError: duplicate or invalid directive, unknown instruction, unterminated heredoc.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    raw_lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    directives = _parse_directives(raw_lines, filename)
    escape = directives.escape
    out: list[Line] = []
    empties: list[int] = []
    comments: list[str] = []
    i, n = len(directives.lines), len(raw_lines)
    while i < n:
        raw = raw_lines[i]
        stripped = raw.strip()
        if not stripped:
            comments = []
            i += 1
            continue
        if stripped.startswith("#"):
            comments.append(stripped[1:].strip())
            i += 1
            continue
        start = i
        part, cont = _continues(raw.lstrip(), escape)
        parts = [part]
        i += 1
        while cont and i < n:
            raw = raw_lines[i]
            stripped = raw.strip()
            i += 1
            if not stripped:
                empties.append(i)
                continue
            if stripped.startswith("#"):
                continue
            part, cont = _continues(raw, escape)
            parts.append(part)
        logical = "".join(parts).strip()
        keyword, _, rest = logical.partition(" ")
        if "\t" in keyword:
            keyword, _, more = keyword.partition("\t")
            rest = more + " " + rest if rest else more
        rest = rest.strip()
        name = keyword.upper()
        if name not in _INSTRUCTION_SET:
            first = raw_lines[start]
            col = first.find(keyword)
            close = difflib.get_close_matches(name, INSTRUCTIONS, n=1, cutoff=0.6)
            raise ParseError(f"unknown instruction: {keyword}",
                             SourceSpan(filename, start + 1, col + 1, len(keyword), first),
                             hint=f"did you mean {close[0]}?" if close else None)
        heredocs: list[Heredoc] = []
        if name in _HEREDOC_INSTRUCTIONS or (name == "ONBUILD" and rest.split(" ", 1)[0].upper()
                                             in _HEREDOC_INSTRUCTIONS):
            for word, delim, expand, chomp, fd in _heredoc_markers(rest):
                body: list[str] = []
                while True:
                    if i >= n:
                        first = raw_lines[start]
                        raise ParseError(f"unterminated heredoc {delim!r}: no line with {delim} before the end",
                                         SourceSpan(filename, start + 1, max(first.find(word), 0) + 1,
                                                    len(word), first))
                    line = raw_lines[i]
                    i += 1
                    candidate = line.lstrip("\t") if chomp else line
                    if candidate == delim:
                        break
                    body.append(candidate)
                content = "".join(b + "\n" for b in body)
                heredocs.append(Heredoc(delim, content, expand, chomp, fd, word))
        out.append(Line(keyword, rest, start + 1, i, tuple(raw_lines[start:i]), tuple(heredocs),
                        tuple(comments), filename))
        comments = []
    return LexedFile(filename, directives, tuple(out), tuple(raw_lines), tuple(empties))
