"""COPY sources as BuildKit copies them (AllowWildcard + AllowEmptyWildcard): a pattern may match nothing, one
match onto a destination without ``/`` is that file, and ``--chmod`` takes any octal mode up to 07777."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyarch.errors import ParseError
from polyarch.frontend.convert.plan import plan_build
from polyarch.solver.copylayer import plan_copy
from tests.frontend.fakes import BUILD, is_native, resolve_image


def files(tmp_path: Path, paths: list[str], dest: str) -> list[str]:
    for name in ("foo", "bar.txt", "baz.txt", "dir/inner"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    entries = plan_copy(str(tmp_path), paths, dest, excluded=lambda _p: False, view=None, owner=None, chmod=None)
    return [e.rel for e in entries if e.kind == "file"]


@pytest.mark.parametrize(("paths", "dest", "want"), [
    (["foo", "nomatch*"], "/", ["foo"]),  # a pattern that matches nothing is no error
    (["nomatch*"], "/d/", []),
    (["bar*"], "/out", ["out"]),  # one match onto a destination without '/' is a file
    (["bar*"], "/out/", ["out/bar.txt"]),
    (["ba*"], "/out", ["out/bar.txt", "out/baz.txt"]),
    (["foo"], "/out", ["out"]),
    (["d*"], "/x", ["x/inner"]),  # a directory's content
])
def test_wildcards(tmp_path: Path, paths: list[str], dest: str, want: list[str]) -> None:
    assert files(tmp_path, paths, dest) == want


def plan(dockerfile: str) -> object:
    return plan_build(dockerfile, resolve_image=resolve_image, build_platform=BUILD, is_native=is_native)


@pytest.mark.parametrize("mode", ["0", "7", "0755", "755", "07777", "u+x", "a=rX,go-w"])
def test_chmod_values_buildkit_accepts(mode: str) -> None:
    plan(f"FROM alpine\nCOPY --chmod={mode} a /a\n")


@pytest.mark.parametrize("mode", ["010000", "8", "u+q", "abc"])
def test_chmod_values_buildkit_refuses(mode: str) -> None:
    with pytest.raises(ParseError, match="invalid chmod parameter"):
        plan(f"FROM alpine\nCOPY --chmod={mode} a /a\n")
