"""Compose variable interpolation (``frontend/interpolation.py``) against a small reference model of compose's
semantics, over generated texts mixing literals, ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``,
``${VAR:?e}`` and ``${VAR?e}``, with variables set, set to empty, or unset."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyarch.errors import ParseError
from polyarch.frontend.interpolation import interpolate

NAMES = ("A", "B", "C_1", "_d")


@dataclass(frozen=True)
class Token:
    kind: str  # lit | esc | bare | braced | default | required
    name: str = ""
    colon: bool = False
    arg: str = ""

    def text(self) -> str:
        if self.kind == "lit":
            return self.arg
        if self.kind == "esc":
            return "$$"
        if self.kind == "bare":
            return f"${self.name}"
        if self.kind == "braced":
            return f"${{{self.name}}}"
        op = {"default": "-", "required": "?"}[self.kind]
        return f"${{{self.name}{':' if self.colon else ''}{op}{self.arg}}}"


class Required(Exception):
    pass


def model(tokens: list[Token], env: dict[str, str]) -> str:
    """What compose makes of the text: each token on its own (values are never interpolated again)."""
    out = []
    for t in tokens:
        value = env.get(t.name)
        missing = value is None or (t.colon and value == "")
        if t.kind == "lit":
            out.append(t.arg)
        elif t.kind == "esc":
            out.append("$")
        elif t.kind in ("bare", "braced"):
            out.append(value or "")
        elif t.kind == "default":
            out.append(t.arg if missing else value or "")
        elif missing:
            raise Required(f"{t.name} is required: {t.arg or 'not set'}")
        else:
            out.append(value or "")
    return "".join(out)


names = st.sampled_from(NAMES)
args = st.text(alphabet="ab :-?{/.", max_size=4)  # no '}' (ends the form) and no '$' (no nesting)
literal = st.text(alphabet="xy-./:{}? ", min_size=1, max_size=4)  # no '$'; never extends a $NAME
token = st.one_of(
    literal.map(lambda s: Token("lit", arg=s)),
    st.just(Token("esc")),
    names.map(lambda n: Token("bare", n)),
    names.map(lambda n: Token("braced", n)),
    st.builds(Token, st.sampled_from(["default", "required"]), names, st.booleans(), args),
)
environments = st.dictionaries(names, st.text(alphabet="vw$:{}-", max_size=3))


def _joinable(tokens: list[Token]) -> bool:
    """A bare ``$NAME`` followed by a token that starts with a name character would read as a longer name."""
    return all(not (a.kind == "bare" and b.kind == "lit" and (b.arg[:1].isalnum() or b.arg[:1] == "_"))
               for a, b in itertools.pairwise(tokens))


@given(st.lists(token, max_size=8).filter(_joinable), environments)
def test_interpolate_matches_the_compose_model(tokens: list[Token], env: dict[str, str]) -> None:
    text = "".join(t.text() for t in tokens)
    try:
        want = model(tokens, env)
    except Required as exc:
        with pytest.raises(ParseError) as info:
            interpolate(text, env, "here")
        assert info.value.message == f"here: {exc}"
        return
    assert interpolate(text, env, "here") == want


@pytest.mark.parametrize(("text", "env", "want"), [
    ("${X:-d}", {"X": ""}, "d"),
    ("${X-d}", {"X": ""}, ""),
    ("${X-d}", {}, "d"),
    ("$X.y", {"X": "1"}, "1.y"),
    ("$Xy", {"X": "1"}, ""),
    ("$$X", {"X": "1"}, "$X"),
    ("$${X}", {"X": "1"}, "${X}"),
    ("${X}", {"X": "$Y"}, "$Y"),
    ("a $ b ${1} ${X:+y}", {"X": "1"}, "a $ b ${1} ${X:+y}"),  # not a form: left as written
    ("${X?}", {"X": ""}, ""),
])
def test_known_compose_results(text: str, env: dict[str, str], want: str) -> None:
    assert interpolate(text, env, "f") == want


@pytest.mark.parametrize(("text", "env", "message"), [
    ("${X:?set X}", {"X": ""}, "f: X is required: set X"),
    ("${X?}", {}, "f: X is required: not set"),
])
def test_required(text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ParseError) as info:
        interpolate(text, env, "f")
    assert info.value.message == message
