"""Dockerfiles BuildKit accepts mean the same here: ARGs inherited from a parent stage, the line-continuation
and heredoc-delimiter rules of BuildKit's parser (parser_heredoc_test.go), COPY heredoc bodies as its shell lexer
expands them, and the shell's special parameters (envVarTest) expanding to empty."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from polyarch import ops
from polyarch.errors import ParseError
from polyarch.frontend.convert.plan import BuildPlan, plan_build
from polyarch.frontend.dockerfile.lexer import heredoc_name, lex
from polyarch.frontend.dockerfile.shell import expand_heredoc, expand_word
from tests.frontend.fakes import BUILD, is_native, resolve_image


def plan(dockerfile: str, **kw: object) -> BuildPlan:
    return plan_build(dockerfile, resolve_image=resolve_image, build_platform=BUILD, is_native=is_native, **kw)


def target_vertices(p: BuildPlan) -> list[ops.Vertex]:
    return [s.vertex for s in p.platforms[0].target.steps if s.vertex is not None]


def inline_files(p: BuildPlan) -> dict[str, str]:
    return {f.path: f.content for v in p.vertices() if isinstance(v, ops.InlineFiles) for f in v.files}


# --- ARGs of a parent stage ------------------------------------------------------------------------------------

PARENT = "FROM alpine AS base\nARG foo=bar\nARG FOO=from-parent\n"


def test_child_stage_inherits_parent_args_in_copy_heredoc_and_run() -> None:
    p = plan(PARENT + "FROM base\nCOPY $foo /\nCOPY <<EOT /f\n${FOO}\nEOT\nRUN echo\n")
    copy, _, run = target_vertices(p)[1:]
    assert isinstance(copy, ops.Copy) and copy.paths == ("bar",)
    assert inline_files(p) == {"EOT": "from-parent\n"}
    assert isinstance(run, ops.Exec) and "foo=bar" in run.env and "FOO=from-parent" in run.env
    assert not p.findings  # nothing undefined (--check)


def test_child_stage_can_redefine_and_grandchild_inherits() -> None:
    p = plan(PARENT + "FROM base AS mid\nARG foo=baz\nFROM mid\nCOPY $foo /\n")
    assert target_vertices(p)[-1].paths == ("baz",)  # type: ignore[attr-defined]


def test_sibling_stage_from_an_image_does_not_inherit() -> None:
    p = plan(PARENT + "FROM alpine\nCOPY x$foo /\n")
    assert target_vertices(p)[-1].paths == ("x",)  # type: ignore[attr-defined]
    assert [f.rule for f in p.findings] == ["UndefinedVar"]


# --- continuations -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "instructions"), [
    ("FROM a\nRUN echo a\\\\\nRUN echo b\n", ["RUN echo a\\\\", "RUN echo b"]),  # escaped escape: no continuation
    ("FROM a\nRUN echo a\\\nb\n", ["RUN echo ab"]),
    ("FROM a\nRUN echo a \\  \n  b\n", ["RUN echo a   b"]),
    ("FROM a\nRUN echo a\\\\\\\nb\n", ["RUN echo a\\\\\\", "b"]),  # three: the last one is escaped too
    ("# escape=`\nFROM a\nRUN dir c:\\``\nRUN x `\n y\n", ["RUN dir c:\\``", "RUN x  y"]),
])
def test_continuation_lines(text: str, instructions: list[str]) -> None:
    if instructions[-1] == "b":
        with pytest.raises(ParseError, match="unknown instruction: b"):
            lex(text)
        return
    assert [ln.original for ln in lex(text).lines[1:]] == instructions


@given(st.text(alphabet="abc $'\"-", min_size=1, max_size=12).filter(lambda t: not t.endswith((" ", "\\"))))
def test_an_escaped_escape_never_continues(body: str) -> None:
    text = f"FROM a\nRUN {body}\\\\\nRUN b\\\n c\n"
    lines = lex(text).lines
    assert [ln.name for ln in lines] == ["FROM", "RUN", "RUN"]
    assert lines[1].rest == (body + "\\\\").strip() and lines[2].rest == "b c"


# --- heredoc delimiters -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("marker", "name", "expand"), [
    ("<<EOF", "EOF", True), ("<<'EOF'", "EOF", False), ('<<"EOF"', "EOF", False), ("<<-EOF", "EOF", True),
    ('<<EO"F"', "EOF", False), ("<<eo'f'", "eof", False), ("<<eo\\'f", "eo'f", True), ("<<'e'o\\'f", "eo'f", False),
    ("<<'one two'", "one two", False), ("<<$EOF", "$EOF", True), ("<<  EOF", "EOF", True),
    ("<< -EOF", "-EOF", True), ("3<<EOF", "EOF", True), ("<<file.txt", "file.txt", True),
])
def test_heredoc_delimiters(marker: str, name: str, expand: bool) -> None:
    lexed = lex(f"FROM a\nRUN cat {marker} > /x\nbody\n{name}\nRUN done\n")
    (h,) = lexed.lines[1].heredocs
    assert (h.name, h.expand, h.content) == (name, expand, "body\n")
    assert lexed.lines[2].original == "RUN done"


@pytest.mark.parametrize("line", ['RUN "<<EOF"', "RUN '<<EOF'", 'RUN ["<<EOF"]', "RUN <<- EOF", "RUN <<", "RUN a<<EOF"])
def test_not_heredocs(line: str) -> None:
    assert lex(f"FROM a\n{line}\n").lines[1].heredocs == ()


def test_unterminated_heredoc_quote_is_an_error() -> None:
    with pytest.raises(ParseError, match="matching"):
        heredoc_name("'EOF")


@given(st.text(alphabet="abcXYZ_.-0123456789", min_size=1, max_size=8), st.sampled_from(["", "'", '"']),
       st.sampled_from(["", " ", "  \t"]), st.booleans())
def test_heredoc_marker_forms(name: str, quote: str, gap: str, chomp: bool) -> None:
    assume(quote or gap or not name.startswith("-"))  # <<-0 is the chomping marker of 0
    dash = "-" if chomp else ""
    if chomp and gap:
        gap = ""  # ``<<- EOF`` is no heredoc in BuildKit (see test_not_heredocs)
    marker = f"<<{dash}{gap}{quote}{name}{quote}"
    body = "\tline $X\n"
    lexed = lex(f"FROM a\nCOPY {marker} /dst\n{body}{chr(9) if chomp else ''}{name}\nRUN z\n")
    (h,) = lexed.lines[1].heredocs
    assert (h.name, h.expand, h.chomp) == (name, not quote, chomp)
    assert h.content == (body.lstrip("\t") if chomp else body)


# --- COPY heredoc bodies -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "want"), [
    ("\\\n", "\n"),  # a line that is only a backslash: an empty line
    ("a\\\\b\n", "a\\b\n"),
    ("cost: \\$5 $X\n", "cost: $5 x\n"),
    ("'$X' \"$X\"\n", "'x' \"x\"\n"),  # quotes kept, variables expanded inside them
    ("${X:-d} ${U:-d} ${X#x}${Y%%.*}\n", "x d a\n"),
    ("$@ $* $# $? $$ $! ${@}.\n", "      .\n"),
])
def test_copy_heredoc_bodies_expand_like_buildkit(body: str, want: str) -> None:
    p = plan(f"FROM alpine\nARG X=x\nARG Y=a.b.c\nCOPY <<EOT /f\n{body}EOT\n")
    assert inline_files(p) == {"EOT": want}


def test_quoted_heredoc_body_is_verbatim_whatever_the_escape_directive() -> None:
    p = plan("# escape=`\nFROM alpine\nARG X=x\nCOPY <<'EOT' /f\n\\$X $X\nEOT\nCOPY <<EOU /g\n\\$X `$X\nEOU\n")
    assert inline_files(p) == {"EOT": "\\$X $X\n", "EOU": "$X `x\n"}


# --- special parameters ------------------------------------------------------------------------------------------

SPECIAL = "@*#?-$!"


@pytest.mark.parametrize(("word", "want"), [
    ("$@", ""), ("${@}", ""), ("${@:+bbb}", ""), ("${@:-bbb}", "bbb"), ("$@@@", "@@"), ("$@aaa", "aaa"),
    ("${*}aaa", "aaa"), ("${#:-bbb}", "bbb"), ("$?", ""), ("${-}", ""), ("$$", ""), ("${$:+b}", ""), ("$!x", "x"),
    ("$0", ""), ("${0:-bbb}", "bbb"),
])
def test_special_parameters_expand_to_empty(word: str, want: str) -> None:
    r = expand_word(word, {"X": "1"})
    assert r.value == want and not r.missing


@given(st.sampled_from(SPECIAL), st.text(alphabet="abc_/ .", max_size=6), st.booleans())
def test_special_parameter_forms(ch: str, suffix: str, braces: bool) -> None:
    word = ("${" + ch + "}" if braces else "$" + ch) + suffix
    assert expand_word(word, {"a": "A"}).value == suffix
    assert expand_heredoc(word + "\n", {"a": "A"}).value == suffix + "\n"


# --- what BuildKit refuses -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("dockerfile", "message"), [
    ("FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nRUN true\n",
     "cannot copy from stage 'b', it needs to be defined before current stage 'a'"),
    ("FROM alpine AS a\nCOPY --from=1 /x /x\nFROM alpine\nRUN true\nFROM a\n", "cannot copy from stage '1'"),
    ("FROM alpine AS a\nRUN --mount=from=b,target=/m ls\nFROM alpine AS b\n", "cannot mount from stage 'b'"),
])
def test_references_to_later_stages_are_refused(dockerfile: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        plan(dockerfile, target="a")


def test_from_a_later_stage_name_is_an_image() -> None:
    p = plan("FROM later AS first\nRUN true\nFROM alpine AS later\n", target="first")
    assert p.platforms[0].target.base == "later"


@pytest.mark.parametrize("value", ["$STAGE", "${STAGE}", "a$STAGE", "${STAGE:-a}"])
def test_copy_from_with_a_variable_is_refused(value: str) -> None:
    with pytest.raises(ParseError, match="variable expansion is not supported for --from"):
        plan(f"ARG STAGE=a\nFROM alpine AS a\nFROM alpine\nCOPY --from={value} /x /x\n")


def test_heredoc_as_copy_destination_is_refused() -> None:
    with pytest.raises(ParseError, match="COPY cannot accept a heredoc as a destination"):
        plan("FROM alpine\nCOPY <<EOF <<DST\nx\nEOF\ny\nDST\n")


STRICT = {"ENV": "A=b", "LABEL": "a=b", "CMD": "x", "ENTRYPOINT": "x", "WORKDIR": "/w", "USER": "u",
          "EXPOSE": "80", "VOLUME": "/v", "SHELL": '["sh", "-c"]', "MAINTAINER": "me", "ONBUILD": "RUN x",
          "RUN": "x", "COPY": "a /b", "ADD": "a /b", "HEALTHCHECK": "CMD x"}


@given(st.sampled_from(sorted(STRICT)), st.text(alphabet="abcdefgh-", min_size=1, max_size=8),
       st.sampled_from(["", "=1", "=a b"]))
def test_unknown_flags_are_refused_on_every_instruction(name: str, flag: str, value: str) -> None:
    known = {"RUN": {"mount", "network", "security"}, "COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
             "ADD": {"chown", "chmod", "link", "exclude", "checksum", "keep-git-dir", "unpack"},
             "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"}}.get(name, set())
    if flag in known or flag.startswith("-"):
        return
    value = f'="{value[1:]}"' if " " in value else value
    with pytest.raises(ParseError, match=f"unknown flag: --{flag}"):
        plan(f"FROM alpine\n{name} --{flag}{value} {STRICT[name]}\n")


def test_flags_buildkit_never_reads_are_dropped() -> None:
    p = plan("FROM alpine\nARG --foo A=1\nSTOPSIGNAL --x SIGTERM\nHEALTHCHECK --interval=5s NONE\nCOPY $A /\n")
    assert target_vertices(p)[-1].paths == ("1",)  # type: ignore[attr-defined]


def test_a_declared_arg_without_a_value_is_not_undefined() -> None:
    p = plan("FROM alpine AS base\nARG FOO\nCOPY x$FOO /\nFROM base\nENV A=$FOO B=$NOPE\n")
    assert [f.message for f in p.findings] == ["Usage of undefined variable '$NOPE'"]


# --- RUN --device, SOURCE_DATE_EPOCH -------------------------------------------------------------------------------

def test_run_device_is_refused_naming_it() -> None:
    with pytest.raises(ParseError, match=r"RUN --device=nvidia.com/gpu=all: CDI devices are not supported"):
        plan_build("FROM alpine\nRUN --device=nvidia.com/gpu=all nvidia-smi\n")


@pytest.mark.parametrize(("text", "build_args", "ok"), [
    ("ARG SOURCE_DATE_EPOCH=1700000000\nFROM alpine\n", {}, True),
    ("ARG SOURCE_DATE_EPOCH\nFROM alpine\n", {}, True),
    ("ARG SOURCE_DATE_EPOCH=\nFROM alpine\n", {}, True),
    ("FROM alpine\nARG SOURCE_DATE_EPOCH=junk\n", {}, True),  # a stage ARG is not the build's epoch
    ("FROM alpine\n", {"SOURCE_DATE_EPOCH": "-5"}, True),
    ("ARG SOURCE_DATE_EPOCH=abc\nFROM alpine\n", {}, False),
    ("ARG SOURCE_DATE_EPOCH=abc\nFROM alpine\n", {"SOURCE_DATE_EPOCH": "1"}, True),
    ("FROM alpine\n", {"SOURCE_DATE_EPOCH": "1.5"}, False),
    ("FROM alpine\n", {"SOURCE_DATE_EPOCH": "99999999999999999999"}, False),
])
def test_invalid_source_date_epoch_where_buildkit_refuses_it(text: str, build_args: dict[str, str],
                                                             ok: bool) -> None:
    if ok:
        plan_build(text, build_args=build_args)
    else:
        with pytest.raises(ParseError, match="invalid SOURCE_DATE_EPOCH"):
            plan_build(text, build_args=build_args)
