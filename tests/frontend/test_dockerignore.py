"""``.dockerignore`` table tests (Docker / moby patternmatcher semantics)."""

from __future__ import annotations

import pytest

from polyarch.frontend.dockerignore import (
    glob_match,
    ignore_file_candidates,
    is_excluded,
    matcher,
    parse_dockerignore,
)

CASES = [
    # (patterns, path, excluded)
    ("*.md", "README.md", True),
    ("*.md", "docs/README.md", False),  # '*' does not cross '/'
    ("**/*.md", "docs/deep/README.md", True),
    ("**/*.md", "README.md", True),  # '**/' matches zero directories
    ("docs/**", "docs/a/b", True),
    ("docs/**", "docs", False),  # Docker: the directory itself stays, its contents go
    ("build", "build/out/x.o", True),  # a matched directory excludes its contents
    ("build", "src/build", False),
    ("/build", "build/x", True),  # leading '/' is the context root
    ("./build/../dist", "dist/app.js", True),  # patterns are cleaned
    ("temp?", "temp1", True),
    ("temp?", "temp12", False),
    ("temp?", "temp/", False),
    ("[a-c].txt", "b.txt", True),
    ("[^a-c].txt", "d.txt", True),
    ("[^a-c].txt", "a.txt", False),
    ("\\*.txt", "*.txt", True),
    ("\\*.txt", "a.txt", False),
    ("*.log\n!keep.log", "keep.log", False),
    ("*.log\n!keep.log", "drop.log", True),
    ("*.log\n!keep.log\n*.log", "keep.log", True),  # the last match wins
    ("node_modules\n!node_modules/keep", "node_modules/keep/x", False),
    ("# comment\n\n  spaced.txt  ", "spaced.txt", True),
    ("# comment", "# comment", False),
    ("**", "anything/at/all", True),
    ("*/temp*", "somedir/temporary.txt", True),
    ("*/*/temp*", "somedir/subdir/temporary.txt", True),
    ("*/temp*", "somedir/subdir/temporary.txt", False),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES)
def test_matching(patterns: str, path: str, excluded: bool) -> None:
    assert is_excluded(path, parse_dockerignore(patterns)) is excluded


def test_parse() -> None:
    parsed = parse_dockerignore("# c\n/a/b/\n!c\n\n!\n")
    assert [str(p) for p in parsed] == ["a/b", "!c"]


def test_matcher_and_candidates() -> None:
    m = matcher(parse_dockerignore("*.pyc"))
    assert m("x.pyc") and not m("x.py")
    assert ignore_file_candidates("docker/app.Dockerfile") == ("docker/app.Dockerfile.dockerignore", ".dockerignore")


# Go's filepath.Match on one path component (what COPY globs and .dockerignore share): '^' negates a class, '!'
# is an ordinary character in one; '\\' escapes, in and out of a class; '*' and '?' never match '/'
GO_MATCH = [
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True), ("a*", "ab/c", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a?c", "abc", True), ("a?c", "a/c", False), ("a?c", "ac", False),
    ("[abc]", "b", True), ("[abc]", "d", False), ("[a-c]", "b", True), ("[a-c]", "d", False),
    ("[^a]", "a", False), ("[^a]", "b", True), ("[^a]*.txt", "a.txt", False), ("[^a]*.txt", "b.txt", True),
    ("[^a-c]", "d", True), ("[^a-c]", "b", False),
    ("[!a]", "a", True), ("[!a]", "!", True), ("[!a]", "b", False),  # not a negation in Go
    ("\\*.txt", "*.txt", True), ("\\*.txt", "a.txt", False), ("a\\?c", "a?c", True), ("a\\?c", "abc", False),
    ("[\\]a]", "]", True), ("[\\]a]", "b", False), ("[\\-]", "-", True), ("[x\\-]", "z", False),
    ("a.b", "axb", False), ("a+b", "a+b", True), ("(x)", "(x)", True),
]


@pytest.mark.parametrize(("pattern", "name", "matches"), GO_MATCH)
def test_glob_match_is_go_filepath_match(pattern: str, name: str, matches: bool) -> None:
    assert glob_match(pattern, name) is matches


def test_dockerignore_bang_in_a_class_is_literal() -> None:
    assert is_excluded("!.txt", parse_dockerignore("[!a].txt")) is True
    assert is_excluded("b.txt", parse_dockerignore("[!a].txt")) is False
