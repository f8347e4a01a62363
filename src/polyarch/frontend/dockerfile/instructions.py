"""Typed Dockerfile instructions: one frozen value per instruction, each with its ``Source`` (file, line range,
keyword as written, original text).

Arguments are kept *as written* (quotes, escapes and ``$VAR`` intact) wherever BuildKit expands them later with
the build-time environment; ``polyarch.frontend.convert`` does that expansion. Exec-form (JSON) arguments are final.
Parsing from lexed lines lives in ``polyarch.frontend.dockerfile.parse``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from polyarch.frontend.dockerfile.lexer import Directives, Heredoc

__all__ = [
    "Add", "Arg", "ArgDecl", "Cmd", "Command", "Copy", "Dockerfile", "Entrypoint", "Env", "Expose", "From",
    "Healthcheck", "Instruction", "KeyValue", "Label", "Maintainer", "Onbuild", "Run", "Shell", "Source",
    "Stage", "StopSignal", "User", "Volume", "Workdir",
]


@dataclass(frozen=True, slots=True)
class Source:
    filename: str
    start_line: int
    end_line: int
    keyword: str  # as written (``run`` or ``RUN``), for casing checks
    original: str  # the logical line, continuations joined


@dataclass(frozen=True, slots=True)
class Command:
    """RUN/CMD/ENTRYPOINT/HEALTHCHECK arguments: ``shell_form`` → ``args == (script,)``, else exec form."""

    args: tuple[str, ...]
    shell_form: bool


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str  # raw
    value: str  # raw


@dataclass(frozen=True, slots=True)
class ArgDecl:
    name: str
    default: str | None = None  # raw; None: declared without a value


@dataclass(frozen=True, slots=True)
class Instruction:
    src: Source

    @property
    def name(self) -> str:
        return self.src.keyword.upper()


@dataclass(frozen=True, slots=True)
class From(Instruction):
    image: str  # raw
    stage_name: str = ""  # lowercased, "" when unnamed
    platform: str = ""  # raw value of --platform
    as_keyword: str = ""  # ``AS`` as written, for casing checks
    stage_name_as_written: str = ""


@dataclass(frozen=True, slots=True)
class Run(Instruction):
    command: Command
    mounts: tuple[str, ...] = ()  # raw ``--mount`` values (CSV checked), expanded and validated at plan time
    network: str = ""
    security: str = ""
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, slots=True)
class Cmd(Instruction):
    command: Command


@dataclass(frozen=True, slots=True)
class Entrypoint(Instruction):
    command: Command


@dataclass(frozen=True, slots=True)
class Shell(Instruction):
    shell: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Copy(Instruction):
    sources: tuple[str, ...]  # raw words (or heredoc markers such as ``<<EOF``)
    dest: str  # raw
    from_: str = ""
    chown: str = ""
    chmod: str = ""
    link: bool = False
    parents: bool = False
    exclude: tuple[str, ...] = ()
    checksum: str = ""  # ADD only
    keep_git_dir: bool = False  # ADD only
    unpack: bool | None = None  # ADD only
    json_form: bool = False
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, slots=True)
class Add(Copy):
    pass


@dataclass(frozen=True, slots=True)
class Env(Instruction):
    pairs: tuple[KeyValue, ...]
    legacy: bool = False  # ``ENV key value``


@dataclass(frozen=True, slots=True)
class Label(Instruction):
    pairs: tuple[KeyValue, ...]
    legacy: bool = False


@dataclass(frozen=True, slots=True)
class Arg(Instruction):
    args: tuple[ArgDecl, ...]
    comments: tuple[str, ...] = ()  # comment lines right above, for outline descriptions


@dataclass(frozen=True, slots=True)
class Expose(Instruction):
    ports: tuple[str, ...]  # raw words


@dataclass(frozen=True, slots=True)
class Volume(Instruction):
    paths: tuple[str, ...]
    json_form: bool = False


@dataclass(frozen=True, slots=True)
class User(Instruction):
    user: str


@dataclass(frozen=True, slots=True)
class Workdir(Instruction):
    path: str


@dataclass(frozen=True, slots=True)
class StopSignal(Instruction):
    signal: str


@dataclass(frozen=True, slots=True)
class Healthcheck(Instruction):
    """``test`` is ``("NONE",)``, ``("CMD", arg…)`` or ``("CMD-SHELL", script)``; durations in nanoseconds."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class Onbuild(Instruction):
    trigger: Instruction
    expression: str  # the trigger text as written, stored in the image config's OnBuild


@dataclass(frozen=True, slots=True)
class Maintainer(Instruction):
    maintainer: str


@dataclass(frozen=True, slots=True)
class Stage:
    index: int
    from_: From
    commands: tuple[Instruction, ...]
    comments: tuple[str, ...] = ()  # comment lines right above FROM, for target descriptions

    @property
    def name(self) -> str:
        return self.from_.stage_name

    @property
    def display_name(self) -> str:
        return self.from_.stage_name or f"stage-{self.index}"


@dataclass(frozen=True, slots=True)
class Dockerfile:
    filename: str
    directives: Directives
    global_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    instructions: tuple[Instruction, ...]  # every instruction in file order (global ARGs included)
    source_lines: tuple[str, ...]
    empty_continuations: tuple[int, ...] = ()
    comments: Mapping[int, tuple[str, ...]] = field(default_factory=dict)  # start line → comment lines above
