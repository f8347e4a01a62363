"""Lexer and parser: directives, continuations, comments, heredocs, flags, forms, errors with carets."""

from __future__ import annotations

import pytest

from polyarch.errors import ParseError
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.dockerfile.lexer import lex
from polyarch.frontend.dockerfile.parse import parse_dockerfile, parse_duration


def test_directives_only_at_top() -> None:
    lexed = lex("# syntax=docker/dockerfile:1\n#ESCAPE = `\n# check=skip=all\n\n# escape=\\\nFROM a\n")
    assert lexed.directives.syntax == "docker/dockerfile:1"
    assert lexed.directives.escape == "`"
    assert lexed.directives.check == "skip=all"


def test_unknown_directive_ends_directives() -> None:
    assert lex("# foo=bar\n# escape=`\nFROM a\n").directives.escape == "\\"


def test_duplicate_and_bad_directive() -> None:
    with pytest.raises(ParseError, match="only one escape parser directive"):
        lex("# escape=`\n# escape=\\\nFROM a\n")
    with pytest.raises(ParseError, match="invalid escape token"):
        lex("# escape=x\nFROM a\n")


def test_continuations_comments_and_empty_lines() -> None:
    lexed = lex("FROM a\nRUN one \\\n  # gone\n\n  two \\  \n  three\n")
    run = lexed.lines[1]
    assert run.rest == "one   two   three"
    assert (run.start_line, run.end_line) == (2, 6)
    assert lexed.empty_continuations == (4,)


def test_backtick_continuation() -> None:
    lexed = lex("# escape=`\nFROM a\nRUN dir c:\\ `\n  /s\n")
    assert lexed.lines[1].rest == "dir c:\\   /s"


def test_heredocs() -> None:
    text = "FROM a\nCOPY <<one <<-'two' /dst/\nline $X\none\n\t\tindented\n\ttwo\nRUN echo after\n"
    lexed = lex(text)
    copy = lexed.lines[1]
    assert [(h.name, h.content, h.expand, h.chomp) for h in copy.heredocs] == [
        ("one", "line $X\n", True, False), ("two", "indented\n", False, True)]
    assert copy.end_line == 6 and lexed.lines[2].rest == "echo after"


def test_heredoc_comment_lines_are_content() -> None:
    lexed = lex("FROM a\nRUN <<EOF\n# not a comment\nEOF\n")
    assert lexed.lines[1].heredocs[0].content == "# not a comment\n"


def test_quoted_heredoc_marker_is_not_a_heredoc() -> None:
    assert lex('FROM a\nRUN echo "<<EOF"\n').lines[1].heredocs == ()


def test_instructions_typed() -> None:
    df = parse_dockerfile(
        "ARG V=1\n"
        "FROM --platform=$BUILDPLATFORM golang:$V AS Build\n"
        "RUN --mount=type=cache,target=/c --network=none --security=insecure make\n"
        'COPY --from=build --chown=1:2 --chmod=755 --link --parents --exclude=*.md --exclude=x a b /d/\n'
        "ADD --checksum=sha256:abc --keep-git-dir https://x/y.git /src\n"
        'ENV A=1 B="two words"\nENV OLD legacy value\nLABEL k=v\nEXPOSE 80/udp\nVOLUME ["/v"]\n'
        "USER app\nWORKDIR /w\nSTOPSIGNAL SIGINT\n"
        "HEALTHCHECK --interval=1m30s --timeout=500ms --retries=2 CMD [\"true\"]\n"
        'SHELL ["/bin/bash", "-c"]\nONBUILD RUN echo\nMAINTAINER me\nCMD ["a"]\nENTRYPOINT run me\n')
    assert [a.name for a in df.global_args[0].args] == ["V"]
    stage = df.stages[0]
    assert stage.from_.stage_name == "build" and stage.from_.stage_name_as_written == "Build"
    assert stage.from_.platform == "$BUILDPLATFORM"
    kinds = [type(c).__name__ for c in stage.commands]
    assert kinds == ["Run", "Copy", "Add", "Env", "Env", "Label", "Expose", "Volume", "User", "Workdir",
                     "StopSignal", "Healthcheck", "Shell", "Onbuild", "Maintainer", "Cmd", "Entrypoint"]
    run, copy, add, env, legacy = stage.commands[:5]
    assert isinstance(run, ins.Run) and run.network == "none" and run.security == "insecure"
    assert run.mounts == ("type=cache,target=/c",) and run.command == ins.Command(("make",), True)
    assert isinstance(copy, ins.Copy) and copy.from_ == "build" and copy.chown == "1:2" and copy.link
    assert copy.parents and copy.exclude == ("*.md", "x") and copy.sources == ("a", "b") and copy.dest == "/d/"
    assert isinstance(add, ins.Add) and add.keep_git_dir and add.checksum == "sha256:abc"
    assert isinstance(env, ins.Env) and env.pairs[1] == ins.KeyValue("B", '"two words"') and not env.legacy
    assert isinstance(legacy, ins.Env) and legacy.legacy and legacy.pairs[0].value == "legacy value"
    hc = stage.commands[11]
    assert isinstance(hc, ins.Healthcheck)
    assert hc.test == ("CMD", "true") and hc.interval == 90 * 10**9 and hc.timeout == 5 * 10**8 and hc.retries == 2
    onbuild = stage.commands[13]
    assert isinstance(onbuild, ins.Onbuild) and isinstance(onbuild.trigger, ins.Run)
    assert stage.commands[-1].src == ins.Source("Dockerfile", 19, 19, "ENTRYPOINT", "ENTRYPOINT run me")


def test_parse_duration() -> None:
    assert parse_duration("1h2m3s") == (3600 + 120 + 3) * 10**9
    assert parse_duration("1.5s") == 1_500_000_000
    with pytest.raises(ParseError):
        parse_duration("5 minutes")


@pytest.mark.parametrize(("text", "message", "line", "column"), [
    ("FROM a\nRUN --mount=from=$X x\n", "'from' doesn't support variable expansion", 2, 13),
    ("FROM a\nCOPY onlyone\n", "requires at least two arguments", 2, 1),
    ("FROM a b\n", "FROM requires either one or three arguments", 1, 8),
    ("FROM a AS 1bad\n", "invalid name for build stage", 1, 11),
    ("RUN x\n", "no build stage in current context", 1, 1),
    ("# just a comment\n", "no FROM instruction", 1, 1),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "chaining ONBUILD", 2, 9),
    ("FROM a\nSHELL /bin/sh -c\n", "JSON form", 2, 1),
    ("FROM a\nENV =x\n", "names can not be blank", 2, 5),
    ("FROM a\nHEALTHCHECK --interval=abc CMD x\n", "invalid duration", 2, 13),
    ("FROM a\nHEALTHCHECK WAT x\n", 'unknown type "WAT"', 2, 13),
    ("FROM a\nRUN --network=fast x\n", "unsupported network mode", 2, 15),
    ("FROM a\nCOPY --link=maybe a b\n", "expecting boolean value", 2, 6),
    ("FROM a\nFRM b\n", "unknown instruction: FRM", 2, 1),
])
def test_errors_have_location(text: str, message: str, line: int, column: int) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_dockerfile(text, "Dockerfile.test")
    span = info.value.span
    assert span is not None and (span.filename, span.line, span.column) == ("Dockerfile.test", line, column)
    rendered = info.value.render()
    assert rendered.startswith(f"error: Dockerfile.test:{line}:{column}: ")
    if span.source_line:
        source, caret = rendered.splitlines()[1:3]
        assert source.strip() == span.source_line.strip() and "^" in caret
