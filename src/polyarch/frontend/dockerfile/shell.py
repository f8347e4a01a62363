"""Word expansion as BuildKit's Dockerfile frontend does it (not a shell: no command substitution, no globbing).

Forms: ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR-word}``, ``${VAR:+word}``, ``${VAR+word}``,
``${VAR:?msg}``, ``${VAR?msg}``, ``${VAR#pat}``, ``${VAR##pat}``, ``${VAR%pat}``, ``${VAR%%pat}``,
``${VAR/pat/repl}``, ``${VAR//pat/repl}`` (patterns are shell globs: ``*``, ``?``, ``[...]``).
The shell's special parameters ``$@ $* $# $? $- $$ $!`` (and ``${@}`` …) are never set: they expand to empty.
Quotes: ``'…'`` is literal; in ``"…"`` only ``"``, ``$`` and the escape character can be escaped; elsewhere the
escape character (``\\`` or the ``# escape=`` one) makes the next character literal.

``expand_word`` gives one word (quotes removed, whitespace kept); ``expand_words`` splits into fields on unquoted
whitespace, including whitespace produced by unquoted expansions. Both report which names were found (``used``)
and which were referenced without a default (``missing``) so callers can warn about undefined variables and
unused build args. The ``${VAR#pat}``/``${VAR/pat/repl}`` patterns are matched by ``patterns``; splitting without
expanding (flags, ENV pairs, heredocs) is ``words.split_raw_words``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from polyarch.errors import ParseError
from polyarch.frontend.dockerfile.patterns import escape_glob, replace_matches, trim_match

__all__ = ["Expansion", "WordsExpansion", "expand_heredoc", "expand_word", "expand_words"]


@dataclass(frozen=True, slots=True)
class Expansion:
    value: str
    used: frozenset[str] = frozenset()
    missing: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class WordsExpansion:
    words: tuple[str, ...]
    used: frozenset[str] = frozenset()
    missing: frozenset[str] = frozenset()


_NAME_RE = re.compile(r"[A-Za-z0-9_]*")
_DIGITS_RE = re.compile(r"[0-9]+")
_SPECIAL_PARAMS = frozenset("@*#?-$!")  # the shell's special parameters: never set at build time, so empty


@lru_cache(maxsize=32)
def _plain_run(specials: str) -> re.Pattern[str]:
    """Matches a run of characters with no special meaning (none of ``specials``)."""
    return re.compile("[^" + re.escape(specials) + "]+")


def _is_name_start(ch: str) -> bool:
    return ch.isascii() and (ch.isalpha() or ch == "_")


class _Scanner:
    __slots__ = ("env", "escape", "missing", "n", "pos", "text", "used")

    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.env = env
        self.escape = escape
        self.used: set[str] = set()
        self.missing: set[str] = set()

    # --- one word -----------------------------------------------------------------------------------------
    def word(self, stop: str = "", *, pattern: bool = False) -> str:
        """Scan up to ``stop`` (not consumed) or the end. ``pattern`` keeps glob characters' meaning: literal
        parts (quoted or escaped) come out backslash-escaped for ``patterns.glob_regex``."""
        out: list[str] = []
        text, esc = self.text, self.escape
        plain = _plain_run("'\"$" + esc + stop)
        while self.pos < self.n:
            m = plain.match(text, self.pos)
            if m:
                out.append(m.group())
                self.pos = m.end()
                continue
            ch = text[self.pos]
            if stop and ch in stop:
                break
            if ch == "'":
                lit = self._single_quote()
                out.append(escape_glob(lit) if pattern else lit)
            elif ch == '"':
                lit = self._double_quote()
                out.append(escape_glob(lit) if pattern else lit)
            elif ch == "$":
                out.append(self._dollar())
            elif ch == esc:
                self.pos += 1
                if self.pos < self.n:
                    nxt = text[self.pos]
                    out.append("\\" + nxt if pattern else nxt)
                    self.pos += 1
            else:
                out.append(ch)
                self.pos += 1
        return "".join(out)

    # --- fields -------------------------------------------------------------------------------------------
    def words(self) -> list[str]:
        words: list[str] = []
        cur: list[str] = []
        started = False
        text, esc = self.text, self.escape
        while self.pos < self.n:
            ch = text[self.pos]
            if ch in " \t\r\n":
                if started:
                    words.append("".join(cur))
                    cur, started = [], False
                self.pos += 1
            elif ch == "'":
                cur.append(self._single_quote())
                started = True
            elif ch == '"':
                cur.append(self._double_quote())
                started = True
            elif ch == "$":
                value = self._dollar()
                parts = re.split(r"[ \t\r\n]+", value)
                if len(parts) == 1:
                    cur.append(value)
                    started = started or bool(value)
                    continue
                # whitespace inside an unquoted expansion splits fields
                cur.append(parts[0])
                if started or parts[0]:
                    words.append("".join(cur))
                for mid in parts[1:-1]:
                    if mid:
                        words.append(mid)
                cur = [parts[-1]]
                started = bool(parts[-1])
            elif ch == esc:
                self.pos += 1
                if self.pos < self.n:
                    cur.append(text[self.pos])
                    self.pos += 1
                started = True
            else:
                cur.append(ch)
                started = True
                self.pos += 1
        if started:
            words.append("".join(cur))
        return words

    # --- pieces -------------------------------------------------------------------------------------------
    def _single_quote(self) -> str:
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise ParseError("unexpected end of statement while looking for matching single-quote")
        lit = self.text[self.pos + 1:end]
        self.pos = end + 1
        return lit

    def _double_quote(self) -> str:
        out: list[str] = []
        self.pos += 1
        text, esc = self.text, self.escape
        while self.pos < self.n:
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            if ch == esc and self.pos + 1 < self.n and text[self.pos + 1] in ('"', "$", esc):
                out.append(text[self.pos + 1])
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        raise ParseError("unexpected end of statement while looking for matching double-quote")

    def _name(self) -> str:
        if self.pos < self.n and self.text[self.pos] in _SPECIAL_PARAMS:
            self.pos += 1
            return self.text[self.pos - 1]
        rx = _DIGITS_RE if self.pos < self.n and self.text[self.pos].isdigit() else _NAME_RE
        m = rx.match(self.text, self.pos)
        if m is None:
            return ""
        self.pos = m.end()
        return m.group()

    def _lookup(self, name: str, *, report_missing: bool = True) -> str | None:
        value = self.env.get(name)
        if value is not None:
            self.used.add(name)
        elif report_missing and not name.isdigit() and name not in _SPECIAL_PARAMS:
            self.missing.add(name)
        return value

    def _dollar(self) -> str:
        self.pos += 1  # the '$'
        if self.pos >= self.n:
            return "$"
        ch = self.text[self.pos]
        if ch != "{":
            if _is_name_start(ch) or ch.isdigit() or ch in _SPECIAL_PARAMS:
                return self._lookup(self._name()) or ""
            return "$"
        self.pos += 1
        name = self._name()
        if not name:
            raise ParseError("bad substitution: expected a variable name after '${'")
        if self.pos >= self.n:
            raise ParseError(f"missing '}}' in substitution of {name}")
        op = self.text[self.pos]
        if op == "}":
            self.pos += 1
            return self._lookup(name) or ""
        self.pos += 1
        if op == ":":
            if self.pos >= self.n or self.text[self.pos] not in "-+?":
                bad = self.text[self.pos] if self.pos < self.n else "end of text"
                raise ParseError(f"unsupported modifier ({bad}) in substitution of {name}")
            kind = self.text[self.pos]
            self.pos += 1
            return self._default_form(name, kind, colon=True)
        if op in "-+?":
            return self._default_form(name, op, colon=False)
        if op in "#%":
            longest = self.pos < self.n and self.text[self.pos] == op
            if longest:
                self.pos += 1
            pat = self.word("}", pattern=True)
            self._close(name)
            value = self._lookup(name) or ""
            return trim_match(value, pat, prefix=op == "#", longest=longest)
        if op == "/":
            every = self.pos < self.n and self.text[self.pos] == "/"
            if every:
                self.pos += 1
            pat = self.word("/}", pattern=True)
            repl = ""
            if self.pos < self.n and self.text[self.pos] == "/":
                self.pos += 1
                repl = self.word("}")
            self._close(name)
            value = self._lookup(name) or ""
            return replace_matches(value, pat, repl, every=every)
        raise ParseError(f"unsupported modifier ({op}) in substitution of {name}")

    def _close(self, name: str) -> None:
        if self.pos >= self.n or self.text[self.pos] != "}":
            raise ParseError(f"missing '}}' in substitution of {name}")
        self.pos += 1

    def _default_form(self, name: str, kind: str, *, colon: bool) -> str:
        word = self.word("}")
        self._close(name)
        value = self._lookup(name, report_missing=False)
        unset = value is None or (colon and value == "")
        if kind == "-":
            return word if unset else value  # type: ignore[return-value]
        if kind == "+":
            return "" if unset else word
        if unset:  # '?'
            raise ParseError(f"{name}: {word or ('is not allowed to be empty' if colon else 'is not allowed to be unset')}")
        return value  # type: ignore[return-value]


def expand_word(word: str, env: Mapping[str, str], *, escape: str = "\\") -> Expansion:
    """Expand one word: variables substituted, quotes and escapes removed, whitespace kept.

    :raises ParseError: (without a span; callers add theirs) on an unterminated quote or a bad substitution.
    """
    if "$" not in word and "'" not in word and '"' not in word and escape not in word:
        return Expansion(word)
    sc = _Scanner(word, env, escape)
    value = sc.word()
    return Expansion(value, frozenset(sc.used), frozenset(sc.missing))


def expand_words(text: str, env: Mapping[str, str], *, escape: str = "\\") -> WordsExpansion:
    """Expand and split into fields on unquoted whitespace (also inside unquoted expansions).

    :raises ParseError: as ``expand_word``.
    """
    sc = _Scanner(text, env, escape)
    words = sc.words()
    return WordsExpansion(tuple(words), frozenset(sc.used), frozenset(sc.missing))


def expand_heredoc(text: str, env: Mapping[str, str]) -> Expansion:
    """Expand a heredoc body as BuildKit does (its shell lexer with quotes left alone): variables substituted,
    quotes kept as written, and ``\\`` (always the backslash, whatever the ``# escape=``) makes the next character
    literal: ``\\$`` is ``$``, ``\\\\`` is ``\\``, a line that is only ``\\`` becomes an empty line.

    :raises ParseError: on a bad substitution.
    """
    if "$" not in text and "\\" not in text:
        return Expansion(text)
    out: list[str] = []
    sc = _Scanner(text, env, "\\")
    plain = _plain_run("$\\")
    while sc.pos < sc.n:
        m = plain.match(text, sc.pos)
        if m:
            out.append(m.group())
            sc.pos = m.end()
            continue
        if text[sc.pos] == "\\":
            out.append(text[sc.pos + 1:sc.pos + 2])
            sc.pos += 2
        else:
            out.append(sc._dollar())
    return Expansion("".join(out), frozenset(sc.used), frozenset(sc.missing))
