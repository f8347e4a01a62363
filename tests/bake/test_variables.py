"""Bake variables as buildx resolves them: an empty block is "", ``type`` converts defaults and environment
values (CSV, ``_JSON``, Go's bool/number parsing), validations run on every value."""

from __future__ import annotations

from typing import Any

import pytest

from polyarch.errors import ParseError
from polyarch.frontend.bake import Evaluator, SourceFile
from polyarch.frontend.bake.hcl import parse_hcl


def var(text: str, name: str = "X", env: dict[str, str] | None = None) -> Any:
    ev = Evaluator([SourceFile("t.hcl", text, parse_hcl(text, "t.hcl"))], env=env or {})
    ev.validate()
    return {n: v for n, v, _ in ev.variables()}[name]


@pytest.mark.parametrize(("text", "env", "expected"), [
    ('variable "X" {}', {}, ""),
    ('variable "X" {}', {"X": "from-env"}, "from-env"),
    ('variable "X" { type = string }', {}, None),
    ('variable "X" { type = string }', {"X": "v"}, "v"),
    ('variable "X" { default = null }', {}, None),
    ('variable "X" {\n type = string\n default = 1\n}', {}, "1"),
    ('variable "X" {\n type = list(string)\n default = [1, true]\n}', {}, ["1", "true"]),
    ('variable "X" {\n type = set(number)\n default = [3, 1, 3]\n}', {}, [1, 3]),
    ('variable "X" {\n type = object({ a = string, b = optional(number, 2) })\n default = { a = 1 }\n}', {},
     {"a": "1", "b": 2}),
    ('variable "X" { type = number }', {"X": "4.5"}, 4.5),
    ('variable "X" { type = bool }', {"X": "T"}, True),
    ('variable "X" { type = bool }', {"X": "0"}, False),
    ('variable "X" { type = list(number) }', {"X": "1,2"}, [1, 2]),
    ('variable "X" { type = list(string) }', {"X": '"a,b",c'}, ["a,b", "c"]),
    ('variable "X" { type = set(string) }', {"X": "b,a,b"}, ["a", "b"]),
    ('variable "X" { type = map(number) }', {"X": "a:1,b:2"}, {"a": 1, "b": 2}),
    ('variable "X" { type = tuple([string, number]) }', {"X": "x,2"}, ["x", 2]),
    ('variable "X" { type = list(string) }', {"X": ""}, []),
    ('variable "X" { type = object({ a = list(string) }) }', {"X_JSON": '{"a": ["x"]}'}, {"a": ["x"]}),
    ('variable "X" { type = list(number) }', {"X": "9", "X_JSON": "[1, 2]"}, [1, 2]),  # typed: _JSON wins
    ('variable "X" { default = "d" }', {"X": "plain", "X_JSON": "[1]"}, "plain"),
    ('variable "X" { default = "d" }', {"X_JSON": "[1]"}, "[1]"),  # untyped: taken as a plain string
    ('variable "X" { type = string }', {"X": '"hello"'}, '"hello"'),  # quotes stay (buildx)
    ('variable "X" { type = set(number) }', {"X": "3,1,4"}, [1, 3, 4]),
    ('variable "X" { type = tuple([number, string]) }', {"X": "99,bottles"}, [99, "bottles"]),
    ('variable "X" { default = 1 }', {"X": "2"}, 2),
    ('variable "X" { default = true }', {"X": "false"}, False),
    ('variable "X" {\n type = string\n default = "a"\n}', {"BUILDX_BAKE_DISABLE_VARS_ENV_LOOKUP": "1", "X": "b"},
     "a"),
])
def test_variable_value(text: str, env: dict[str, str], expected: Any) -> None:
    assert var(text, env=env) == expected


@pytest.mark.parametrize(("text", "env", "message"), [
    ('variable "X" {\n type = number\n default = "abc"\n}', {}, "invalid type number for the default value"),
    ('variable "X" {\n type = list(string)\n default = "abc"\n}', {}, "invalid type list(string)"),
    ('variable "X" {\n type = object({ a = string })\n default = {}\n}', {}, "attribute 'a' is required"),
    ('variable "X" { type = number }', {"X": "abc"}, "failed to parse 'abc' as number"),
    ('variable "X" { type = number }', {"X": "NaN"}, "as number"),
    ('variable "X" { type = bool }', {"X": "yes"}, "as bool"),
    ('variable "X" { type = list(number) }', {"X": "1,x"}, "'x' as number"),
    ('variable "X" { type = map(string) }', {"X": "a:1:2"}, "expected one k/v pair"),
    ('variable "X" { type = tuple([string, number]) }', {"X": "x"}, "expects 2 elements"),
    ('variable "X" { type = object({ a = string }) }', {"X": "a=1"}, "unsupported type"),
    ('variable "X" { type = list(number) }', {"X_JSON": "[1"}, "from JSON"),
    ('variable "X" { type = list(list(string)) }', {"X": "a"}, "unsupported type"),
    ('variable "X" { type = strin }', {}, "a type is expected"),
    ('variable "X" { type = BOOL }', {}, "a type is expected"),
    ('variable "X" { type = lower("bool") }', {}, "a type is expected"),
    ('variable "X" { type = list(string) }', {"X": '"hello,world'}, "as CSV"),
    ('variable "X" { type = map(string) }', {"X": 'a:b,foo:"bar'}, "as CSV"),
    ('variable "X" { type = object({message: string}) }', {"X": "x"}, "unsupported type"),
    ('variable "X" { type = tuple([list(number)]) }', {"X": "1"}, "unsupported type"),
    ('variable "X" { type = list(number) }', {"X": "1,1z"}, "'1z' as number"),
    ('variable "X" { default = 1 }', {"X": "one"}, "as number"),
])
def test_variable_error(text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ParseError) as exc:
        var(text, env=env)
    assert message in exc.value.message


_CHECKED = '''variable "X" {
  validation {
    condition     = X != ""
    error_message = "X must be set"
  }
}
'''


def test_validation_runs_on_the_empty_default() -> None:
    with pytest.raises(ParseError, match="X must be set"):
        var(_CHECKED)
    assert var(_CHECKED, env={"X": "ok"}) == "ok"


@pytest.mark.parametrize(("condition", "ok"), [('"true"', True), ('"false"', False), ("null", None), ("1", None),
                                               ('"maybe"', None)])
def test_validation_condition_converts_to_bool(condition: str, ok: bool | None) -> None:
    text = f'variable "X" {{\n validation {{\n condition = {condition}\n error_message = "failed"\n }}\n}}\n'
    if ok:
        assert var(text) == ""
        return
    with pytest.raises(ParseError, match="failed" if ok is False else "must be true or false"):
        var(text)


def test_empty_variable_interpolates_as_empty_string() -> None:
    text = 'variable "TAG" {}\ntarget "app" {\n tags = ["app:${TAG}latest"]\n}\n'
    ev = Evaluator([SourceFile("t.hcl", text, parse_hcl(text, "t.hcl"))], env={})
    assert ev.target("app").get("tags") == ("app:latest",)
