"""Heredoc names are words: whatever the Dockerfile writes after ``<<``, its file stays in its own scratch tree."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch.errors import BuildError
from polyarch.frontend.convert.copy_add import url_file_name
from polyarch.frontend.convert.heredocs import heredoc_file_name
from polyarch.solver.inline import write_inline_files

NAMES = st.text(alphabet=["a", "b", ".", "/", "\x00", " ", "-"], max_size=10)


def _tree(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


@settings(max_examples=200, deadline=None)
@given(NAMES)
def test_heredoc_file_name_is_one_component(name: str) -> None:
    got = heredoc_file_name(name)
    if got is not None:
        assert got and "/" not in got and "\x00" not in got and got not in (".", "..")
        assert got == os.path.basename(os.path.normpath("/" + name))


@settings(max_examples=200, deadline=None)
@given(NAMES)
def test_inline_files_are_written_inside_their_directory_only(name: str) -> None:
    with tempfile.TemporaryDirectory() as top:
        scratch = Path(top) / "scratch"
        scratch.mkdir()
        try:
            write_inline_files(scratch, [(name, b"body\n", 0o755)])
        except BuildError:
            assert _tree(Path(top)) == {"scratch"}
            return
        assert _tree(Path(top)) == {"scratch", f"scratch/{name}"}
        assert (scratch / name).read_bytes() == b"body\n"
        assert (scratch / name).stat().st_mode & 0o7777 == 0o755


def test_inline_file_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outside = tmp_path / "outside"
    outside.write_text("keep\n")
    (scratch / "x").symlink_to(outside)
    with pytest.raises(OSError):
        write_inline_files(scratch, [("x", b"owned\n", 0o755)])
    assert outside.read_text() == "keep\n" and outside.stat().st_mode & 0o777 != 0o755


@pytest.mark.parametrize(("url", "name"), [
    ("https://h/a/x.tar", "x.tar"), ("https://h/a/my%20file.txt", "my file.txt"), ("https://h/a/dir/", "dir"),
    ("https://h/", "__unnamed__"), ("https://h", "__unnamed__"), ("https://h/a/..", "__unnamed__"),
    ("https://h/a%2F..", "__unnamed__"), ("https://h/%2e%2e", "__unnamed__"), ("https://h/x%00y", "__unnamed__"),
    ("https://h/a%2Fb?q=1#f", "b"),
])
def test_url_file_name_like_buildkit(url: str, name: str) -> None:
    assert url_file_name(url) == name
