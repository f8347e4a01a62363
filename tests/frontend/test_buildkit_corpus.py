"""polyarch against BuildKit's own test data and real projects' Dockerfiles (tests/frontend/buildkit/, provenance
in its README): every parser testfile parses to the instructions of its ``result`` dump (or is refused where
BuildKit's instruction parser refuses it), the negative ones fail, every row of the shell lexer tables
(``envVarTest``, ``wordsTest``) expands the same, and every named stage of every real project's Dockerfile plans
for linux/amd64,linux/arm64 offline.

A case polyarch does not yet get right is listed in a ``KNOWN_*`` set: the test asserts the set is exactly the
failing cases, so a fix (or a new failure) shows up.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from polyarch.errors import ParseError, PolyarchError
from polyarch.frontend.convert.plan import plan_build
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.dockerfile.lexer import lex
from polyarch.frontend.dockerfile.parse import parse_dockerfile, parse_line
from polyarch.frontend.dockerfile.shell import expand_word, expand_words
from polyarch.platform import parse_list
from tests.frontend.fakes import BUILD, is_native, resolve_image

DATA = Path(__file__).parent / "buildkit"
PARSER = sorted(p.name for p in (DATA / "parser").iterdir())
NEGATIVE = sorted(p.name for p in (DATA / "parser-negative").iterdir())
PROJECTS = sorted(p.name for p in (DATA / "projects").iterdir())

# testfiles BuildKit's parser accepts but its instruction parser (which polyarch's parse includes) refuses
REFUSED_BY_INSTRUCTIONS = {
    "flags": "unknown flag",  # COPY --user / --doit, CMD --doit
    "health": "HEALTHCHECK requires at least one argument",  # a bare HEALTHCHECK; also HEALTHCHECK CONNECT
}
# polyarch splits COPY/ADD words quote-aware at parse time: `ADD \conf\\" /.znc` has an unterminated quote, which
# BuildKit's parser keeps as a word and refuses only when it expands the source during a build
KNOWN_PARSER: set[str] = {"escapes"}
KNOWN_ENV_VAR_ROWS: set[int] = set()
KNOWN_WORDS_ROWS: set[int] = set()
KNOWN_PROJECT_STAGES: set[str] = set()

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\[|\]|\(|\)')


_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
               '"': '"', "'": "'"}


def _go_unquote(token: str) -> str:
    """A Go ``%q`` string (the dump's quoting) → its text."""
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _GO_ESCAPES:
            out.append(_GO_ESCAPES[nxt])
            i += 2
        else:  # \xHH, \uHHHH, \UHHHHHHHH
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            out.append(chr(int(body[i + 2:i + 2 + width], 16)))
            i += 2 + width
    return "".join(out)


def _dump_line(line: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """``(kw ["--f"] "a" "b")`` → (kw, flags, args); a nested ONBUILD node keeps its keyword as an arg."""
    kw = line[1:].split(None, 1)[0].rstrip(")")
    flags: list[str] = []
    args: list[str] = []
    in_flags = False
    for tok in _TOKEN.findall(line[1 + len(kw):]):
        if tok == "[":
            in_flags = True
        elif tok == "]":
            in_flags = False
        elif tok.startswith('"'):
            (flags if in_flags else args).append(_go_unquote(tok))
    return kw, tuple(flags), tuple(args)


def _expected_fields(inst: ins.Instruction) -> tuple[str, ...] | None:
    """What the dump shows as arguments for the instructions whose fields polyarch keeps as written."""
    if isinstance(inst, ins.Run | ins.Cmd | ins.Entrypoint):
        return inst.command.args
    if isinstance(inst, ins.Env | ins.Label):
        return tuple(x for p in inst.pairs for x in (p.key, p.value))
    if isinstance(inst, ins.Copy) and not inst.heredocs:
        return (*inst.sources, inst.dest)
    if isinstance(inst, ins.Expose):
        return inst.ports
    if isinstance(inst, ins.Volume):
        return inst.paths
    return None


def _dump_fields(kw: str, args: tuple[str, ...]) -> tuple[str, ...]:
    if kw in ("env", "label"):  # key, value, separator triplets; values as written
        return tuple(x for i in range(0, len(args), 3) for x in (args[i], args[i + 1]))
    return args


@pytest.mark.parametrize("name", PARSER)
def test_parser_testfile(name: str) -> None:
    case = DATA / "parser" / name
    text = (case / "Dockerfile").read_text()
    try:  # BuildKit's parser and its per-instruction parse; stage structure is not what these files test
        lexed = lex(text)
        instructions = [parse_line(line, lexed.directives.escape) for line in lexed.lines]
    except ParseError as exc:
        if name in REFUSED_BY_INSTRUCTIONS:
            assert REFUSED_BY_INSTRUCTIONS[name] in exc.message
            return
        assert name in KNOWN_PARSER, f"{name}: {exc.render()}"
        return
    assert name not in REFUSED_BY_INSTRUCTIONS, f"{name} should be refused as BuildKit's instruction parser does"
    dump = [_dump_line(ln) for ln in (case / "result").read_text().splitlines() if ln.startswith("(")]
    assert [i.src.keyword.lower() for i in instructions] == [kw for kw, _, _ in dump], name
    mismatches = []
    for inst, (kw, _flags, args) in zip(instructions, dump, strict=True):
        ours = _expected_fields(inst)
        if ours is not None and ours != _dump_fields(kw, args):
            mismatches.append((inst.src.start_line, ours, args))
    assert bool(mismatches) == (name in KNOWN_PARSER), f"{name}: {mismatches or 'fixed: drop it from KNOWN_PARSER'}"


@pytest.mark.parametrize("name", NEGATIVE)
def test_negative_parser_testfile(name: str) -> None:
    with pytest.raises(ParseError):
        parse_dockerfile((DATA / "parser-negative" / name / "Dockerfile").read_text())


def _env_var_rows() -> list[tuple[int, str, str]]:
    rows = []
    for no, line in enumerate((DATA / "shell" / "envVarTest").read_text().splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        where, source, expected = (w.strip() for w in line.strip().split("|"))
        if where in ("A", "U"):
            rows.append((no, source, expected))
    return rows


ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _expand_row(source: str) -> str:
    try:
        return expand_word(source, ENV).value
    except ParseError:
        return "error"


def test_env_var_table() -> None:
    rows = _env_var_rows()
    failing = {no for no, source, expected in rows if _expand_row(source) != expected}
    print(f"envVarTest: {len(rows) - len(failing)}/{len(rows)}")
    assert failing == KNOWN_ENV_VAR_ROWS


def _words_rows() -> list[tuple[int, dict[str, str], str, list[str]]]:
    env: dict[str, str] = {}
    rows = []
    for no, line in enumerate((DATA / "shell" / "wordsTest").read_text().splitlines(), 1):
        if line.startswith("#"):
            continue
        if line.startswith("ENV "):
            key, _, value = line[3:].lstrip(" ").partition("=")
            env[key] = value
            continue
        test, expected = line.split("|")
        rows.append((no, dict(env), test.strip(), expected.lstrip(" ").split(",")))
    return rows


def test_words_table() -> None:
    rows = _words_rows()
    failing = set()
    for no, env, test, expected in rows:
        try:
            got = list(expand_words(test, env).words)
        except ParseError:
            got = ["error"]
        if got != expected:
            failing.add(no)
    print(f"wordsTest: {len(rows) - len(failing)}/{len(rows)}")
    assert failing == KNOWN_WORDS_ROWS


def _stage_targets() -> list[tuple[str, str]]:
    out = []
    for name in PROJECTS:
        df = parse_dockerfile((DATA / "projects" / name).read_text())
        out += [(name, "")] + [(name, s.name) for s in df.stages if s.name]
    return out


def test_real_projects_plan_for_amd64_and_arm64() -> None:
    """Every named stage (and the default target) of every project Dockerfile plans for both platforms, base
    images resolved offline (known ones from fixed configs, the rest without a config)."""
    failing = set()
    cases = _stage_targets()
    platforms = parse_list(["linux/amd64,linux/arm64"])
    for name, target in cases:
        try:
            plan = plan_build((DATA / "projects" / name).read_text(), platforms=platforms, target=target,
                              resolve_image=resolve_image, build_platform=BUILD, is_native=is_native)
            assert [str(p.platform) for p in plan.platforms] == ["linux/amd64", "linux/arm64"]
        except PolyarchError:
            failing.add(f"{name}:{target}")
    print(f"projects: {len(PROJECTS)} files, {len(cases) - len(failing)}/{len(cases)} targets plan")
    assert failing == KNOWN_PROJECT_STAGES
