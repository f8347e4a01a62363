"""The expression evaluator and the standard functions, table-driven, plus properties of templates."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch.errors import ParseError
from polyarch.frontend.bake import Evaluator, SourceFile
from polyarch.frontend.bake.hcl import Pos, parse_hcl, parse_template


def value(expr: str, env: dict[str, str] | None = None, prelude: str = "") -> Any:
    text = prelude + f"\nRESULT = {expr}\n"
    ev = Evaluator([SourceFile("t.hcl", text, parse_hcl(text, "t.hcl"))], env=env or {})
    return ev._lookup("RESULT", Pos("t.hcl", 1, 1))


@pytest.mark.parametrize(("expr", "expected"), [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("7 / 2", 3.5),
    ("7 % 4", 3),
    ("1 - 2 - 3", -4),
    ("-3 + 1", -2),
    ("!true || false", False),
    ("1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 4", False),
    ('"a" == "a" ? "y" : "n"', "y"),
    ("[1, 2, 3][1]", 2),
    ('{ a = { b = "c" } }.a.b', "c"),
    ('{ "x-y" = 1 }["x-y"]', 1),
    ("[{ n = 1 }, { n = 2 }][*].n", [1, 2]),
    ('[for s in ["a", "b"] : upper(s)]', ["A", "B"]),
    ('{ for s in ["a", "b"] : s => length(s) }', {"a": 1, "b": 1}),
    ('{ for s in ["a", "b", "a"] : s => 1... }', {"a": [1, 1], "b": [1]}),
    ('[for i, s in ["a", "b"] : "${i}${s}" if i > 0]', ["1b"]),
    ('"${1.5}-${2.0}-${true}"', "1.5-2-true"),
    ('"$${x} ${"y"}"', "${x} y"),
    ('"tab\\there"', "tab\there"),
    ('max([1, 5, 3]...)', 5),
    ('concat(["a"], ["b"])', ["a", "b"]),
    ('format("%-4s|%5.1f|%x|%q|%%", "ab", 3.14159, 255, "q")', 'ab  |  3.1|ff|"q"|%'),
    ('coalesce(null, "", "z")', "z"),
    ('regex("(?P<major>\\\\d+)\\\\.(?P<minor>\\\\d+)", "v1.22")', {"major": "1", "minor": "22"}),
    ('regex_replace("v1.2.3", "^v(\\\\d+).*", "$1")', "1"),
    ('replace("a-b-c", "/-/", "+")', "a+b+c"),
    ("substr(\"hello\", -3, -1)", "llo"),
    ("flatten([[1], [[2]], 3])", [1, 2, 3]),
    ("distinct([1, 1, 2])", [1, 2]),
    ('lookup({ a = 1 }, "a")', 1),
    ("max(1, 2.5)", 2.5),
    ('trimprefix("prefix-x", "prefix-")', "x"),
    ('try(undefined_var_is_an_error, "fallback")', "fallback"),
    ("can([][0])", False),
    ("can([1][0])", True),
    ('base64decode(base64encode("päd"))', "päd"),
    ('jsondecode(jsonencode({ a = [1, true, null] }))', {"a": [1, True, None]}),
])
def test_expressions(expr: str, expected: Any) -> None:
    assert value(expr) == expected


@pytest.mark.parametrize(("expr", "message"), [
    ('"a" + 1', "invalid operand for +"),
    ("[1][5]", "index 5 out of range"),
    ('{ a = 1 }.b', "object has no attribute 'b'"),
    ("nosuch(1)", "unknown function 'nosuch'"),
    ("upper(1, 2)", "upper(): wrong number of arguments (2)"),
    ('lookup({}, "k")', "lookup(): lookup failed to find key 'k'"),
    ('regex("[", "x")', "regex(): invalid regular expression"),
    ('"x${[1]}"', "cannot convert tuple to string"),
    ('"x${null}"', "cannot use a null value"),
    ("true ? 1", "syntax error"),
    ("1 / 0", "division by zero"),
    ("range(100000000)", "too long"),
])
def test_expression_errors_are_located(expr: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        value(expr)
    assert message in str(info.value)
    assert str(info.value).startswith("t.hcl:")  # file:line:col


def test_user_function_sees_globals_not_caller_locals() -> None:
    prelude = 'G = "g"\nfunction "f" {\n  params = [x]\n  result = "${x}${G}"\n}\n'
    assert value('[for G in ["local"] : f(G)]', prelude=prelude) == ["localg"]


def test_env_overrides_typed_variables() -> None:
    prelude = 'variable "N" {\n  default = 1\n}\nvariable "B" {\n  default = false\n}\nvariable "L" {\n  default = "x"\n}'
    assert value("[N + 1, B, L]", env={"N": "41", "B": "true", "L": "5"}, prelude=prelude) == [42, True, "5"]


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=40)


@settings(max_examples=200, deadline=None)
@given(_TEXT)
def test_escaped_template_is_literal(text: str) -> None:
    """Escaping every ``${`` and ``%{`` as ``$${``/``%%{`` makes any text come back unchanged."""
    escaped = text.replace("${", "$${").replace("%{", "%%{")
    if "$${" in text.replace("${", "") or "%%{" in text.replace("%{", ""):
        return  # already-escaped sequences in the input are ambiguous by design
    got = parse_template(escaped, Pos("p.json", 1, 1))
    assert "".join(p for p in got.parts if isinstance(p, str)) == text
    assert all(isinstance(p, str) for p in got.parts)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z]{1,4}", fullmatch=True),
                       st.lists(st.from_regex(r"[a-z0-9]{1,3}", fullmatch=True), min_size=1, max_size=3, unique=True),
                       min_size=1, max_size=3))
def test_matrix_expands_to_the_product(matrix: dict[str, list[str]]) -> None:
    keys = list(matrix)
    name = "t" + "".join(f"-${{{k}}}" for k in keys)
    items = ", ".join(f'{k} = [{", ".join(chr(34) + v + chr(34) for v in vs)}]' for k, vs in matrix.items())
    text = f'target "t" {{\n  matrix = {{ {items} }}\n  name = "{name}"\n}}\n'
    ev = Evaluator([SourceFile("m.hcl", text, parse_hcl(text, "m.hcl"))], env={})
    expected = 1
    for vs in matrix.values():
        expected *= len(vs)
    _, targets = ev.select(["t"])
    assert len(targets) == len(set(targets)) == expected
