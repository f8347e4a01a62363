"""``.dockerignore`` parsing and matching with Docker's semantics (moby/patternmatcher), as pure functions.

* one pattern a line; ``#`` starts a comment line; blank lines are skipped; surrounding blanks are trimmed;
* ``!pattern`` re-includes what an earlier pattern excluded; the last matching pattern wins;
* patterns are cleaned like Go's ``filepath.Clean`` and a leading ``/`` is dropped (patterns are relative to the
  context root);
* ``*`` matches any run of characters except ``/``, ``?`` one character except ``/``, ``[a-z]``/``[^a-z]`` a
  class (``!`` is no negation: ``[!a]`` is the class of ``!`` and ``a``), ``\\`` escapes the next character, in a
  class too (Go ``filepath.Match``; COPY source globs use the same matcher, ``glob_match``), and ``**`` matches
  any number of directories, zero included (``**/*.go`` matches ``a.go`` and ``x/y/a.go``);
* a pattern that matches a directory excludes everything under it (``build`` excludes ``build/x/y``).

``ignore_file_candidates`` names the files to look for, best first: ``<Dockerfile>.dockerignore`` next to the
Dockerfile, then ``.dockerignore`` at the context root. The worker's context loader reads the first that exists
and calls ``parse_dockerignore`` and ``is_excluded`` (or ``matcher``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["IgnorePattern", "glob_match", "ignore_file_candidates", "is_excluded", "matcher", "parse_dockerignore"]


@dataclass(frozen=True, slots=True)
class IgnorePattern:
    pattern: str  # cleaned, without the leading '!' or '/'
    exclusion: bool = False  # True for '!pattern' (re-include)

    def __str__(self) -> str:
        return ("!" if self.exclusion else "") + self.pattern


def _clean(pattern: str) -> str:
    cleaned = posixpath.normpath(pattern)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    cleaned = cleaned.lstrip("/")
    return cleaned or "."


def parse_dockerignore(text: str) -> tuple[IgnorePattern, ...]:
    """Patterns of a ``.dockerignore`` text, in order."""
    out: list[IgnorePattern] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
            if not line:
                continue
        out.append(IgnorePattern(_clean(line), exclusion))
    return tuple(out)


def _class(pattern: str, start: int) -> tuple[str, int] | None:
    """The regex of the ``[...]`` class opening at ``start`` and the index of its ``]``, or None when it is not
    closed. As in Go: ``^`` negates, ``!`` is an ordinary character, ``\\`` escapes, ``lo-hi`` is a range."""
    i, n = start + 1, len(pattern)
    negated = i < n and pattern[i] == "^"
    i += negated
    items: list[str] = []
    while i < n:
        ch = pattern[i]
        if ch == "]" and items:
            ranges = "".join(items)  # a reversed range (z-a) was left out: it matches nothing, as in Go
            if not ranges:
                return ("." if negated else "(?!)"), i
            return ("[^" if negated else "[") + ranges + "]", i
        if ch == "\\" and i + 1 < n:
            i += 1
            ch = pattern[i]
        lo = re.escape(ch)
        if i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            i += 2
            if pattern[i] == "\\" and i + 1 < n:
                i += 1
            items.append(f"{lo}-{re.escape(pattern[i])}" if ch <= pattern[i] else "")
        else:
            items.append(lo)
        i += 1
    return None


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[" and (klass := _class(pattern, i)) is not None:
            out.append(klass[0])
            i = klass[1]
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


def glob_match(pattern: str, name: str) -> bool:
    """Does ``name`` match ``pattern`` as Go's ``filepath.Match`` decides (``*``, ``?``, classes, ``\\``)? COPY
    source globs match each path component with it."""
    return _regex(pattern).match(name) is not None


def _matches(pattern: str, path: str) -> bool:
    """The pattern matches ``path`` or one of its parent directories."""
    rx = _regex(pattern)
    if rx.match(path):
        return True
    parent = path
    while "/" in parent:
        parent = parent.rsplit("/", 1)[0]
        if rx.match(parent):
            return True
    return False


def is_excluded(path: str, patterns: Iterable[IgnorePattern]) -> bool:
    """Is ``path`` (relative to the context root, ``/``-separated) left out of the context?"""
    rel = _clean(path)
    excluded = False
    for p in patterns:
        if p.exclusion == excluded and _matches(p.pattern, rel):  # only a flip can change the answer
            excluded = not p.exclusion
    return excluded


def matcher(patterns: Iterable[IgnorePattern]) -> Callable[[str], bool]:
    """A predicate ``path -> excluded`` over fixed patterns."""
    fixed = tuple(patterns)
    return lambda path: is_excluded(path, fixed)


def ignore_file_candidates(dockerfile_path: str) -> tuple[str, ...]:
    """Ignore files to look for, best first: ``<dockerfile>.dockerignore`` then ``.dockerignore`` (context root)."""
    return (f"{dockerfile_path}.dockerignore", ".dockerignore")
