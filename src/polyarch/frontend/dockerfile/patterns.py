"""Shell glob patterns for the ``${VAR#pat}``, ``${VAR%pat}`` and ``${VAR/pat/repl}`` expansions: ``*``, ``?``,
``[...]`` (``[!...]``/``[^...]`` negated), a backslash makes the next character literal."""

from __future__ import annotations

import re

__all__ = ["escape_glob", "glob_regex", "replace_matches", "trim_match"]


def escape_glob(text: str) -> str:
    """``text`` as a pattern that matches only itself."""
    return "".join("\\" + c for c in text)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression of a glob pattern (to be used with ``fullmatch``)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:end]
                neg = body[:1] in ("!", "^")
                body = body[1:] if neg else body
                out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def trim_match(value: str, pattern: str, *, prefix: bool, longest: bool) -> str:
    """``${VAR#pat}``/``##`` (``prefix``) and ``${VAR%pat}``/``%%``: drop the shortest or longest match."""
    rx = glob_regex(pattern)
    n = len(value)
    cuts = range(n, -1, -1) if longest else range(n + 1)
    for i in cuts:
        if prefix and rx.fullmatch(value, 0, i):
            return value[i:]
        if not prefix and rx.fullmatch(value, n - i, n):
            return value[: n - i]
    return value


def replace_matches(value: str, pattern: str, repl: str, *, every: bool) -> str:
    """``${VAR/pat/repl}`` (first match) and ``${VAR//pat/repl}`` (``every``): longest matches replaced."""
    if not pattern:
        return value
    rx = glob_regex(pattern)
    out: list[str] = []
    i, n = 0, len(value)
    while i <= n:
        match_end = -1
        for j in range(n, i, -1):  # longest match starting at i
            if rx.fullmatch(value, i, j):
                match_end = j
                break
        if match_end < 0:
            if i < n:
                out.append(value[i])
            i += 1
            continue
        out.append(repl)
        i = match_end
        if not every:
            out.append(value[i:])
            return "".join(out)
    return "".join(out)
