"""``.dockerignore`` table tests (Docker / moby patternmatcher semantics)."""

from __future__ import annotations

import pytest

from polyarch.frontend.dockerignore import ignore_file_candidates, is_excluded, matcher, parse_dockerignore

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
