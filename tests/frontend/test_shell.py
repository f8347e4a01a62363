"""Word expansion tables (BuildKit's semantics)."""

from __future__ import annotations

import re

import pytest

from polyarch.errors import ParseError
from polyarch.frontend.dockerfile.shell import expand_heredoc, expand_word, expand_words
from polyarch.frontend.dockerfile.words import split_raw_words

ENV = {"A": "hello world", "E": "", "F": "archive.tar.gz", "P": "/usr/local/bin:/usr/bin", "N": "1"}

WORDS = [
    ("plain", "plain"),
    ("$A", "hello world"),
    ("${A}!", "hello world!"),
    ("x${N}y", "x1y"),
    ("$UNSET", ""),
    ("${UNSET:-dflt}", "dflt"),
    ("${E:-dflt}", "dflt"),
    ("${E-dflt}", ""),
    ("${UNSET-dflt}", "dflt"),
    ("${N:+alt}", "alt"),
    ("${E:+alt}", ""),
    ("${E+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${UNSET:-${N}x}", "1x"),
    ("${F#*.}", "tar.gz"),
    ("${F##*.}", "gz"),
    ("${F%.*}", "archive.tar"),
    ("${F%%.*}", "archive"),
    ("${F#nomatch}", "archive.tar.gz"),
    ("${F%\".gz\"}", "archive.tar"),
    ("${F%\\.*}", "archive.tar"),  # escaped dot, then a glob star
    ("${P/usr/opt}", "/opt/local/bin:/usr/bin"),
    ("${P//usr/opt}", "/opt/local/bin:/opt/bin"),
    ("${P/usr}", "//local/bin:/usr/bin"),  # no replacement: delete the first match
    ("${F/t?r/zip}", "archive.zip.gz"),
    ("'$A'", "$A"),
    ('"$A"', "hello world"),
    ('"a\\"b"', 'a"b'),
    ('"a\\nb"', "a\\nb"),
    ('"\\$A"', "$A"),
    ("\\$A", "$A"),
    ("a\\ b", "a b"),
    ("trailing\\", "trailing"),
    ("$", "$"),
    ("$-x", "x"),  # $- is a special parameter, never set
    ("a'b c'd", "ab cd"),
    ('""', ""),
]


@pytest.mark.parametrize(("word", "expected"), WORDS)
def test_expand_word(word: str, expected: str) -> None:
    assert expand_word(word, ENV).value == expected


def test_backtick_escape() -> None:
    assert expand_word("a` b`$A", ENV, escape="`").value == "a b$A"
    assert expand_word("C:\\path\\$N", ENV, escape="`").value == "C:\\path\\1"


def test_used_and_missing_names() -> None:
    r = expand_word("$A ${MISSING} ${DEFAULTED:-x} ${E}", ENV)
    assert r.used == {"A", "E"}
    assert r.missing == {"MISSING"}  # a default means "not undefined"


@pytest.mark.parametrize(("word", "message"), [
    ("'open", "matching single-quote"),
    ('"open', "matching double-quote"),
    ("${", "bad substitution"),
    ("${A", "missing '}'"),
    ("${A:x}", "unsupported modifier (x)"),
    ("${A^}", "unsupported modifier (^)"),
    ("${UNSET?must be set}", "UNSET: must be set"),
    ("${E:?}", "E: is not allowed to be empty"),
])
def test_errors(word: str, message: str) -> None:
    with pytest.raises(ParseError, match=re.escape(message)):
        expand_word(word, ENV)


def test_expand_words_splits_unquoted_expansions() -> None:
    assert expand_words('$A "x y" z""  ""', ENV).words == ("hello", "world", "x y", "z", "")
    assert expand_words("80 $UNSET 81", ENV).words == ("80", "81")


def test_split_raw_words_keeps_quotes_and_escapes() -> None:
    assert split_raw_words('a="x y" b=c\\ d   e') == ['a="x y"', "b=c\\ d", "e"]
    assert split_raw_words("  ") == []


def test_heredoc_expansion_keeps_quotes() -> None:
    r = expand_heredoc("echo \"$A\" '$N' \\$N\n", ENV)
    assert r.value == "echo \"hello world\" '1' $N\n"
