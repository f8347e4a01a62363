"""Heredocs as files: the name a heredoc's file gets in its own scratch tree, and its body after expansion."""

from __future__ import annotations

import posixpath
from dataclasses import replace

from polyarch.errors import ParseError
from polyarch.frontend.convert.state import StageState, error, source_span
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.dockerfile.lexer import Heredoc
from polyarch.frontend.dockerfile.shell import expand_heredoc

__all__ = ["heredoc_body", "heredoc_file", "heredoc_file_name"]


def heredoc_file_name(name: str) -> str | None:
    """The file a heredoc named ``name`` becomes at the root of its own scratch tree, or None when it cannot.

    As BuildKit (``llb.Scratch().File(llb.Mkfile(name, …))``): the name is resolved inside the empty scratch
    tree, so ``../x`` and ``/x`` both name ``x``; a name that needs a directory (``a/b``) or names the root itself
    (``.``, ``..``, ``/``) cannot be created there. NUL bytes never name a file."""
    if "\x00" in name:
        return None
    rooted = posixpath.normpath("/" + name).lstrip("/")
    return rooted if rooted and "/" not in rooted else None


def heredoc_file(st: StageState, inst: ins.Instruction, h: Heredoc) -> str:
    """:raises ParseError: the heredoc's name cannot name a file in its scratch tree."""
    name = heredoc_file_name(h.name)
    if name is None:
        raise error(st, inst, f"heredoc name {h.name!r} does not name a file: a heredoc's file is created at the "
                              "root of its own empty tree, so its name must be one path component", h.word)
    return name


def heredoc_body(st: StageState, h: Heredoc, src: ins.Source) -> tuple[str, StageState]:
    """The body, expanded in the stage scope unless the delimiter was quoted."""
    if not h.expand:
        return h.content, st
    try:
        r = expand_heredoc(h.content, st.variables)
    except ParseError as exc:
        raise ParseError(exc.message, source_span(st.ctx.inputs.df, src, h.word)) from None
    capture = st.progress.capture.use(r.used)
    return r.value, st if capture is st.progress.capture else replace(st, progress=st.progress.with_capture(capture))
