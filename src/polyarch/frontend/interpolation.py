"""Compose's variable interpolation of one string (pure): the one implementation bake's compose reader and
``polyarch audit`` both use. (Dockerfile word expansion is another language: ``frontend/dockerfile/shell.py``.)

=================  ==================================================================
``$$``             a literal ``$``
``$VAR``           the value of ``VAR``, empty when unset
``${VAR}``         the same
``${VAR:-text}``   ``text`` when ``VAR`` is unset or empty
``${VAR-text}``    ``text`` when ``VAR`` is unset
``${VAR:?text}``   error (naming ``VAR`` and ``text``) when ``VAR`` is unset or empty
``${VAR?text}``    error when ``VAR`` is unset
=================  ==================================================================

``text`` is taken as written (no nested ``${…}``). A ``$`` that starts none of these forms stays as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from polyarch.errors import ParseError

__all__ = ["interpolate"]

_VAR_RE = re.compile(r"\$(?:(?P<esc>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                     r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, env: Mapping[str, str], where: str) -> str:
    """``text`` with every variable form replaced from ``env``.

    :raises ParseError: ``${VAR:?text}`` / ``${VAR?text}`` with ``VAR`` missing; the message starts with ``where``.
    """
    def sub(m: re.Match[str]) -> str:
        if m.group("esc"):
            return "$"
        name = m.group("braced") or m.group("bare")
        value = env.get(name)
        op, arg = m.group("op"), m.group("arg") or ""
        if op in (":-", ":?") and not value:
            value = None
        if value is None:
            if op in ("-", ":-"):
                return arg
            if op in ("?", ":?"):
                raise ParseError(f"{where}: {name} is required: {arg or 'not set'}")
            return ""
        return value
    return _VAR_RE.sub(sub, text)
