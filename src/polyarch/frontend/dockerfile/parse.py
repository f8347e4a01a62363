"""Lexed lines → typed instructions → stages (``parse_dockerfile`` is the entry point).

Flags (``--name[=value]`` words at the start of the arguments, ending at the first other word or at ``--``) are
extracted for every instruction, as BuildKit does: one it does not know is an error (ARG, STOPSIGNAL and
``HEALTHCHECK NONE`` drop theirs unchecked, as BuildKit never looks at them).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable

from polyarch.errors import ParseError
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.dockerfile.lexer import Line, heredoc_marker, lex
from polyarch.frontend.dockerfile.mounts import check_mount
from polyarch.frontend.dockerfile.shell import expand_word
from polyarch.frontend.dockerfile.words import first_raw_word, split_raw_words

__all__ = ["parse_dockerfile", "parse_duration", "parse_line"]

_STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_FLAGS: dict[str, dict[str, str]] = {  # flag -> "str" | "bool" | "multi"
    "FROM": {"platform": "str"},
    "RUN": {"mount": "multi", "network": "str", "security": "str", "device": "multi"},
    "COPY": {"from": "str", "chown": "str", "chmod": "str", "link": "bool", "parents": "bool", "exclude": "multi"},
    "ADD": {"chown": "str", "chmod": "str", "link": "bool", "exclude": "multi", "checksum": "str",
            "keep-git-dir": "bool", "unpack": "bool"},
    "HEALTHCHECK": {"interval": "str", "timeout": "str", "start-period": "str", "start-interval": "str",
                    "retries": "str"},
}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text: str) -> int:
    """Go ``time.ParseDuration`` (``1m30s``, ``500ms``, ``0``) → nanoseconds.

    :raises ParseError: (no span) on anything else.
    """
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ParseError(f"invalid duration {text!r}")
    return int(total)


def _strip_quotes(value: str) -> str:
    out, quote = [], ""
    for ch in value:
        if quote:
            if ch == quote:
                quote = ""
            else:
                out.append(ch)
        elif ch in "'\"":
            quote = ch
        else:
            out.append(ch)
    return "".join(out)


def _take_flags(line: Line, rest: str, *, strict: bool = True) -> tuple[dict[str, list[str]], str]:
    """The leading ``--flag[=value]`` words of ``rest`` (any instruction may have them) and the rest.
    ``strict=False``: flags are dropped unchecked (BuildKit never checks ARG's, STOPSIGNAL's and
    ``HEALTHCHECK NONE``'s)."""
    spec = _FLAGS.get(line.name, {})
    flags: dict[str, list[str]] = {}
    pos = 0
    while True:
        while pos < len(rest) and rest[pos] in " \t":
            pos += 1
        if not rest.startswith("--", pos):
            break
        word = first_raw_word(rest[pos:], escape="\x00")
        pos += len(word)
        if word == "--":
            break
        name, eq, value = word[2:].partition("=")
        kind = spec.get(name.lower())
        if not strict:
            continue
        if kind is None:
            close = difflib.get_close_matches(name, list(spec), n=1)
            raise line.error(f"unknown flag: --{name}", word, hint=f"did you mean --{close[0]}?" if close else None)
        name = name.lower()
        if kind == "bool":
            if eq and value.lower() not in ("true", "false"):
                raise line.error(f"expecting boolean value for flag --{name}, not: {value}", word)
            value = "true" if not eq else value.lower()
        elif not eq:
            raise line.error(f"missing a value on flag: --{name}", word)
        if name in flags and kind != "multi":
            raise line.error(f"duplicate flag specified: --{name}", word)
        flags.setdefault(name, []).append(_strip_quotes(value))
    return flags, rest[pos:].strip()


def _json_list(text: str) -> list[str] | None:
    text = text.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _command(line: Line, rest: str, *, allow_empty: bool = False) -> ins.Command:
    args = _json_list(rest)
    if args is not None:
        return ins.Command(tuple(args), shell_form=False)
    if not rest and not allow_empty:
        raise line.error(f"{line.name} requires at least one argument")
    return ins.Command((rest,), shell_form=True)


def _pairs(line: Line, rest: str, escape: str) -> tuple[tuple[ins.KeyValue, ...], bool]:
    words = split_raw_words(rest, escape=escape)
    if not words:
        raise line.error(f"{line.name} requires at least one argument")
    if "=" not in words[0]:
        key = words[0]
        value = rest[len(key):].strip()
        if not value and line.name == "ENV":
            raise line.error("ENV must have two arguments", key)
        return (ins.KeyValue(key, value),), True
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise line.error(f"syntax error - can't find = in {word!r}. Must be of the form: name=value", word)
        if not key:
            raise line.error(f"{line.name} names can not be blank", word)
        pairs.append(ins.KeyValue(key, value))
    return tuple(pairs), False


def _copy(line: Line, src: ins.Source, flags: dict[str, list[str]], rest: str, escape: str) -> ins.Copy:
    args = _json_list(rest)
    json_form = args is not None
    words = args if args is not None else split_raw_words(rest, escape=escape)
    if len(words) < 2:
        raise line.error(f"{line.name} requires at least two arguments, but only {len(words)} was provided. "
                         "Destination could not be determined.")
    if not json_form and heredoc_marker(words[-1]) is not None:
        raise line.error(f"{line.name} cannot accept a heredoc as a destination", words[-1])
    one = {k: v[-1] for k, v in flags.items()}
    from_ = one.get("from", "")
    if from_ and expand_word(from_, {}).value != from_:
        raise line.error("variable expansion is not supported for --from, define a new stage with FROM using ARG "
                         "from global scope as a workaround", "--from")
    cls = ins.Add if line.name == "ADD" else ins.Copy
    return cls(src, tuple(words[:-1]), words[-1], from_=one.get("from", ""), chown=one.get("chown", ""),
               chmod=one.get("chmod", ""), link=one.get("link") == "true", parents=one.get("parents") == "true",
               exclude=tuple(flags.get("exclude", ())), checksum=one.get("checksum", ""),
               keep_git_dir=one.get("keep-git-dir") == "true",
               unpack=None if "unpack" not in one else one["unpack"] == "true",
               json_form=json_form, heredocs=line.heredocs)


def _healthcheck(line: Line, src: ins.Source, flags: dict[str, list[str]], rest: str) -> ins.Healthcheck:
    kind, _, body = rest.partition(" ")
    if not kind:
        raise line.error("HEALTHCHECK requires at least one argument")
    if kind.upper() == "NONE":
        if body.strip() or flags:
            raise line.error("HEALTHCHECK NONE takes no arguments or flags")
        return ins.Healthcheck(src, ("NONE",))
    if kind.upper() != "CMD":
        raise line.error(f'unknown type "{kind}" in HEALTHCHECK (try CMD)', kind)
    cmd = _command(line, body.strip())
    test = ("CMD-SHELL", cmd.args[0]) if cmd.shell_form else ("CMD", *cmd.args)
    values: dict[str, int] = {}
    for name in ("interval", "timeout", "start-period", "start-interval"):
        if name in flags:
            try:
                values[name] = parse_duration(flags[name][-1])
            except ParseError as exc:
                raise line.error(f"--{name}: {exc.message}", f"--{name}") from None
            if 0 < values[name] < 1_000_000:
                raise line.error(f"--{name} cannot be less than 1ms", f"--{name}")
    retries = 0
    if "retries" in flags:
        try:
            retries = int(flags["retries"][-1])
        except ValueError:
            raise line.error(f"--retries: invalid number {flags['retries'][-1]!r}", "--retries") from None
        if retries < 0:
            raise line.error("--retries cannot be negative", "--retries")
    return ins.Healthcheck(src, test, values.get("interval", 0), values.get("timeout", 0),
                           values.get("start-period", 0), values.get("start-interval", 0), retries)


def _from(line: Line, src: ins.Source, flags: dict[str, list[str]], rest: str, escape: str) -> ins.From:
    words = split_raw_words(rest, escape=escape)
    platform = flags.get("platform", [""])[-1]
    if len(words) == 1:
        return ins.From(src, words[0], platform=platform)
    if len(words) != 3 or words[1].lower() != "as":
        raise line.error("FROM requires either one or three arguments: FROM <image> [AS <name>]",
                         words[1] if len(words) > 1 else "")
    name = words[2]
    if not _STAGE_NAME_RE.match(name.lower()):
        raise line.error(f"invalid name for build stage: {name!r}, name can't start with a number or contain "
                         "symbols", name)
    return ins.From(src, words[0], stage_name=name.lower(), platform=platform, as_keyword=words[1],
                    stage_name_as_written=name)


def _simple(line: Line, rest: str, what: str) -> str:
    if not rest:
        raise line.error(f"{line.name} requires exactly one argument ({what})")
    return rest


def parse_line(line: Line, escape: str = "\\") -> ins.Instruction:
    """One logical line → its typed instruction.

    :raises ParseError: with the line's span, for any malformed instruction.
    """
    src = ins.Source(line.filename, line.start_line, line.end_line, line.keyword, line.original)
    name = line.name
    if line.rest.startswith("--"):
        lenient = name in ("ARG", "STOPSIGNAL") or (name == "HEALTHCHECK" and line.rest.split()[-1].upper() == "NONE")
        flags, rest = _take_flags(line, line.rest, strict=not lenient)
    else:
        flags, rest = {}, line.rest
    handler = _HANDLERS.get(name)
    if handler is not None:
        return handler(line, src, rest, escape)
    if name == "FROM":
        return _from(line, src, flags, rest, escape)
    if name == "RUN":
        mounts = tuple(flags.get("mount", ()))
        for m in mounts:
            try:
                check_mount(m)
            except ParseError as exc:
                raise line.error(f"--mount: {exc.message}", m) from None
        network = flags.get("network", [""])[-1]
        if network and network not in ("default", "none", "host"):
            raise line.error(f"unsupported network mode {network!r} (want default, none or host)", network)
        security = flags.get("security", [""])[-1]
        if security and security not in ("sandbox", "insecure"):
            raise line.error(f"unsupported security mode {security!r} (want sandbox or insecure)", security)
        for device in flags.get("device", ()):
            raise line.error(f"RUN --device={device}: CDI devices are not supported by polyarch", device,
                             hint="remove --device, or build with BuildKit on a host with the device's CDI spec")
        return ins.Run(src, _command(line, rest), mounts, network, security, line.heredocs)
    if name in ("COPY", "ADD"):
        return _copy(line, src, flags, rest, escape)
    if name == "HEALTHCHECK":
        return _healthcheck(line, src, flags, rest)
    raise line.error(f"unknown instruction: {line.keyword}")  # pragma: no cover - lexer rejects these


def _onbuild(line: Line, src: ins.Source, rest: str, escape: str) -> ins.Instruction:
    if not rest:
        raise line.error("ONBUILD requires at least one argument")
    keyword, _, more = rest.partition(" ")
    span = line.span(keyword, occurrence_from=len(line.keyword))
    if keyword.upper() == "ONBUILD":
        raise ParseError("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed", span)
    if keyword.upper() in ("FROM", "MAINTAINER"):
        raise ParseError(f"{keyword.upper()} isn't allowed as an ONBUILD trigger", span)
    inner = Line(keyword, more.strip(), line.start_line, line.end_line, line.physical, line.heredocs, (),
                 line.filename)
    if inner.name not in _KNOWN:
        raise ParseError(f"unknown instruction in ONBUILD: {keyword}", span)
    return ins.Onbuild(src, parse_line(inner, escape), rest)


def _shell(line: Line, src: ins.Source, rest: str, escape: str) -> ins.Instruction:
    args = _json_list(rest)
    if not args:
        raise line.error("SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]")
    return ins.Shell(src, tuple(args))


def _arg(line: Line, src: ins.Source, rest: str, escape: str) -> ins.Instruction:
    words = split_raw_words(rest, escape=escape)
    if not words:
        raise line.error("ARG requires at least one argument")
    decls = []
    for word in words:
        key, eq, value = word.partition("=")
        if not key:
            raise line.error("ARG names can not be blank", word)
        decls.append(ins.ArgDecl(key, value if eq else None))
    return ins.Arg(src, tuple(decls), line.comments)


def _volume(line: Line, src: ins.Source, rest: str, escape: str) -> ins.Instruction:
    args = _json_list(rest)
    paths = args if args is not None else split_raw_words(rest, escape=escape)
    if not paths or any(not p.strip() for p in paths):
        raise line.error("VOLUME specified can not be an empty string")
    return ins.Volume(src, tuple(paths), args is not None)


def _expose(line: Line, src: ins.Source, rest: str, escape: str) -> ins.Instruction:
    ports = split_raw_words(rest, escape=escape)
    if not ports:
        raise line.error("EXPOSE requires at least one argument")
    return ins.Expose(src, tuple(ports))


_Handler = Callable[[Line, ins.Source, str, str], ins.Instruction]
_HANDLERS: dict[str, _Handler] = {
    "CMD": lambda ln, s, r, e: ins.Cmd(s, _command(ln, r, allow_empty=True)),
    "ENTRYPOINT": lambda ln, s, r, e: ins.Entrypoint(s, _command(ln, r, allow_empty=True)),
    "SHELL": _shell,
    "ENV": lambda ln, s, r, e: ins.Env(s, *_pairs(ln, r, e)),
    "LABEL": lambda ln, s, r, e: ins.Label(s, *_pairs(ln, r, e)),
    "ARG": _arg,
    "EXPOSE": _expose,
    "VOLUME": _volume,
    "USER": lambda ln, s, r, e: ins.User(s, _simple(ln, r, "user[:group]")),
    "WORKDIR": lambda ln, s, r, e: ins.Workdir(s, _simple(ln, r, "a path")),
    "STOPSIGNAL": lambda ln, s, r, e: ins.StopSignal(s, _simple(ln, r, "a signal")),
    "MAINTAINER": lambda ln, s, r, e: ins.Maintainer(s, _simple(ln, r, "a name")),
    "ONBUILD": _onbuild,
}
_KNOWN = frozenset(_HANDLERS) | frozenset(_FLAGS)


def parse_dockerfile(text: str, filename: str = "Dockerfile") -> ins.Dockerfile:
    """Parse a whole Dockerfile into directives, global ARGs and stages.

    :raises ParseError: with file, line and column, for any syntax error.
    """
    lexed = lex(text, filename)
    escape = lexed.directives.escape
    global_args: list[ins.Arg] = []
    stages: list[ins.Stage] = []
    current: tuple[ins.From, list[ins.Instruction], tuple[str, ...]] | None = None
    every: list[ins.Instruction] = []
    comments: dict[int, tuple[str, ...]] = {}
    for line in lexed.lines:
        inst = parse_line(line, escape)
        every.append(inst)
        if line.comments:
            comments[inst.src.start_line] = line.comments
        if isinstance(inst, ins.From):
            if current is not None:
                stages.append(ins.Stage(len(stages), current[0], tuple(current[1]), current[2]))
            current = (inst, [], line.comments)
        elif current is None:
            if not isinstance(inst, ins.Arg):
                raise line.error(f"no build stage in current context: {line.name} must come after a FROM",
                                 hint="only ARG instructions may precede the first FROM")
            global_args.append(inst)
        else:
            current[1].append(inst)
    if current is not None:
        stages.append(ins.Stage(len(stages), current[0], tuple(current[1]), current[2]))
    if not stages:
        from polyarch.errors import SourceSpan

        raise ParseError("the Dockerfile has no FROM instruction", SourceSpan(filename, 1, 1, 1, ""),
                         hint="a Dockerfile needs at least one FROM")
    return ins.Dockerfile(filename, lexed.directives, tuple(global_args), tuple(stages), tuple(every),
                          lexed.source_lines, lexed.empty_continuations, comments)
