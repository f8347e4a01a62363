"""Raw words: a Dockerfile argument split on whitespace outside quotes, with quotes and escapes kept (no expansion;
the parser and lexer use it for flags, ENV pairs and heredoc markers)."""

from __future__ import annotations

import re

__all__ = ["first_raw_word", "split_raw_words"]

_SIMPLE_WORD_RE = re.compile(r"[^\s'\"\\`]+")


def first_raw_word(text: str, *, escape: str = "\\") -> str:
    """The first word ``split_raw_words`` would give, without splitting the rest."""
    m = _SIMPLE_WORD_RE.match(text)
    if m and (m.end() == len(text) or text[m.end()] in " \t\r\n"):
        return m.group()
    words = split_raw_words(text, escape=escape)
    return words[0] if words else ""


def split_raw_words(text: str, *, escape: str = "\\") -> list[str]:
    """Split on whitespace outside quotes, keeping quotes and escapes in the words (no expansion).

    An unterminated quote runs to the end of the text (the expansion step reports it)."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == escape and quote == '"' and i + 1 < n:
                cur.append(text[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in " \t\r\n":
            if cur:
                words.append("".join(cur))
                cur = []
        elif ch == escape and i + 1 < n:
            cur.append(ch)
            cur.append(text[i + 1])
            i += 2
            continue
        else:
            if ch in "'\"":
                quote = ch
            cur.append(ch)
        i += 1
    if cur:
        words.append("".join(cur))
    return words
