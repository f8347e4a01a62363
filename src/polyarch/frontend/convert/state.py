"""The values a stage conversion folds over, and the helpers every instruction handler shares.

* ``BuildInputs``: what ``plan_build`` was given (read only);
* ``PlatformContext``: the inputs plus one target platform's global ARG values and the stage converter, through
  which a handler gets a stage it refers to (``stage``);
* ``Progress``: what the conversion has learned so far across stages and platforms, in time order: the
  ``Capture``, the findings, the stages converted for the current platform (``built``, ``order``) and the
  stages being converted (``active``, to catch a cycle);
* ``StageState``: one stage being converted: its scope, image config, vertex, layers, steps and target-platform
  taint, plus the ``PlatformContext`` and ``Progress``;
* ``ConvertedStage``: a stage once all its instructions are applied.

All are frozen; mappings are dicts built for one value and never changed after. The helpers (``expand``,
``config_step``, ``add_layer``, ``reference``, …) take a state and return values and a new state.

Target-platform dependence ("taint"): a vertex depends on the target platform when it is pulled for it, or uses a
TARGET* arg, or builds on something that does; COPY and WORKDIR layers that do not are marked
``platform_independent`` (computed once, shared by every platform).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from polyarch import ops
from polyarch.errors import ParseError, SourceSpan
from polyarch.frontend.convert.capture import Capture
from polyarch.frontend.convert.diagnostics import DOCS_URL, Finding
from polyarch.frontend.convert.imageconfig import ConfigState, history_entry
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.dockerfile.shell import expand_word, expand_words
from polyarch.oci.spec import History, ImageConfig
from polyarch.platform import Platform

__all__ = [
    "BuildInputs", "ConvertedStage", "PlatformContext", "Progress", "ResolveImage", "StageConverter", "StageState",
    "StepRecord", "add_layer", "config_step", "desc", "error", "expand", "expand_in", "expand_list", "layer_step",
    "named_context", "record", "reference", "source_span", "variables",
]

ResolveImage = Callable[[str, Platform], ImageConfig | None]
StepRecord = tuple[ins.Instruction, ops.Vertex | None, History | None]  # FROM has no history entry


def source_span(df: ins.Dockerfile, src: ins.Source, needle: str = "") -> SourceSpan:
    """A span inside ``src``'s lines: the first occurrence of ``needle``, else the keyword."""
    lines = df.source_lines
    if needle:
        for no in range(src.start_line, min(src.end_line, len(lines)) + 1):
            col = lines[no - 1].find(needle)
            if col >= 0:
                return SourceSpan(df.filename, no, col + 1, len(needle), lines[no - 1])
    text = lines[src.start_line - 1] if 0 < src.start_line <= len(lines) else ""
    col = max(text.find(src.keyword), 0)
    return SourceSpan(df.filename, src.start_line, col + 1, len(src.keyword), text)


@dataclass(frozen=True, slots=True)
class BuildInputs:
    df: ins.Dockerfile
    build_args: Mapping[str, str]
    resolve_image: ResolveImage | None
    build_platform: Platform
    is_native: Callable[[Platform], bool]
    context: ops.LocalContext
    build_contexts: Mapping[str, str]
    stage_by_name: Mapping[str, int]
    strict: bool = True  # False for --check: an invalid base reference is a finding's business, not an error
    run_options: ops.RunOptions = field(default_factory=ops.RunOptions)  # the build's --add-host/--ulimit/--shm-size/--cgroup-parent


def _kebab(rule: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "-", rule).replace("JSONArgs", "JSON-Args").lower()


@dataclass(frozen=True, slots=True)
class ConvertedStage:
    index: int
    name: str
    platform: Platform  # the platform the stage runs as
    base: str  # ``scratch``, the image ref after expansion, or ``stage:<name>``
    steps: tuple[StepRecord, ...]
    result: ops.Vertex
    config: ConfigState
    history: tuple[History, ...]  # the base's, then one entry per instruction
    layers: tuple[ops.Vertex, ...]
    root: ops.Vertex
    tainted: bool
    platform_tainted: bool
    args: Mapping[str, str | None] = field(default_factory=dict)  # its ARGs: a ``FROM <stage>`` child inherits them
    tainted_args: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Progress:
    capture: Capture = field(default_factory=Capture)
    findings: Mapping[tuple[int, str, str], Finding] = field(default_factory=dict)
    built: Mapping[int, ConvertedStage] = field(default_factory=dict)  # this platform's converted stages
    order: tuple[int, ...] = ()  # their indexes, in conversion order (dependencies first)
    active: tuple[int, ...] = ()  # stages being converted, outermost first

    def find(self, rule: str, message: str, src: ins.Source, *, url: bool = True) -> Progress:
        key = (src.start_line, rule, message)
        if key in self.findings:
            return self
        finding = Finding(src.start_line, src.end_line, rule, message, src.filename,
                          DOCS_URL + _kebab(rule) + "/" if url else "")
        return replace(self, findings={**self.findings, key: finding})

    def with_capture(self, capture: Capture) -> Progress:
        return self if capture is self.capture else replace(self, capture=capture)

    def next_platform(self) -> Progress:
        """Capture and findings carried over; no stage converted yet."""
        return replace(self, built={}, order=(), active=())


StageConverter = Callable[["PlatformContext", Progress, int, "ins.Source | None", str],
                          tuple[ConvertedStage, Progress]]


@dataclass(frozen=True, slots=True)
class PlatformContext:
    inputs: BuildInputs
    target: Platform
    escape: str
    auto: Mapping[str, str]  # the eight automatic platform args
    global_env: Mapping[str, str]  # global ARG values (automatic args included)
    global_declared: frozenset[str]
    global_tainted: frozenset[str]  # global ARGs whose value comes from the target platform
    converter: StageConverter

    def stage(self, progress: Progress, index: int, via: ins.Source | None = None,
              needle: str = "") -> tuple[ConvertedStage, Progress]:
        """Stage ``index``, converted now unless ``progress`` already holds it."""
        return self.converter(self, progress, index, via, needle)


@dataclass(frozen=True, slots=True)
class StageState:
    ctx: PlatformContext
    progress: Progress
    stage: ins.Stage
    name: str
    total: int  # steps shown in descriptions: FROM, base-image triggers, instructions
    platform: Platform
    platform_tainted: bool
    root: ops.Vertex
    vertex: ops.Vertex
    cfg: ConfigState
    tainted: bool
    base: str
    args: Mapping[str, str | None] = field(default_factory=dict)  # the stage's ARGs (None: declared, no value)
    variables: Mapping[str, str] = field(default_factory=dict)  # args with a value, then ENV: the word scope
    history: tuple[History, ...] = ()  # the image history: the base's, then one entry per instruction
    steps: tuple[StepRecord, ...] = ()
    layers: tuple[ops.Vertex, ...] = ()
    cmd_set: bool = False
    config_tainted: bool = False
    inst_tainted: bool = False  # the instruction being applied read a target-dependent name
    tainted_args: frozenset[str] = frozenset()  # args whose value comes from the target platform
    workdir_tainted: bool = False
    user_tainted: bool = False


def variables(args: Mapping[str, str | None], env: Mapping[str, str]) -> dict[str, str]:
    """The word scope: ARGs with a value, overridden by ENV."""
    merged = {k: v for k, v in args.items() if v is not None}
    merged.update(env)
    return merged


def expand_in(ctx: PlatformContext, word: str, env: Mapping[str, str],
              src: ins.Source) -> tuple[str, frozenset[str], frozenset[str]]:
    """Expand one word in ``env``: (value, names used, names undefined); errors point into ``src``."""
    try:
        r = expand_word(word, env, escape=ctx.escape)
    except ParseError as exc:
        raise ParseError(exc.message, source_span(ctx.inputs.df, src, word)) from None
    return r.value, r.used, r.missing


def _note(st: StageState, used: frozenset[str], missing: frozenset[str], src: ins.Source,
          scope: Mapping[str, str]) -> StageState:
    progress = st.progress.with_capture(st.progress.capture.use(used))
    for name in sorted(missing.difference(st.args)):  # a declared ARG, even without a value, is not undefined
        close = difflib.get_close_matches(name, list(scope), n=1, cutoff=0.7)
        progress = progress.find("UndefinedVar", f"Usage of undefined variable '${name}'"
                                 + (f" (did you mean ${close[0]}?)" if close else ""), src)
    tainted = st.inst_tainted or bool(used & st.tainted_args)
    if progress is st.progress and tainted == st.inst_tainted:
        return st
    return replace(st, progress=progress, inst_tainted=tainted)


def expand(st: StageState, word: str, src: ins.Source,
           scope: Mapping[str, str] | None = None) -> tuple[str, StageState]:
    """Expand one word in the stage scope (or ``scope``), noting used and undefined names."""
    scope = st.variables if scope is None else scope
    value, used, missing = expand_in(st.ctx, word, scope, src)
    return value, _note(st, used, missing, src, scope)


def expand_list(st: StageState, text: str, src: ins.Source) -> tuple[tuple[str, ...], StageState]:
    """Expand and split a word list (EXPOSE) in the stage scope."""
    scope = st.variables
    try:
        r = expand_words(text, scope, escape=st.ctx.escape)
    except ParseError as exc:
        raise ParseError(exc.message, source_span(st.ctx.inputs.df, src, text)) from None
    return r.words, _note(st, r.used, r.missing, src, scope)


def desc(st: StageState, inst: ins.Instruction) -> str:
    """The progress description of the instruction applied next: ``[stage N/total] line``."""
    return f"[{st.name} {len(st.steps) + 1}/{st.total}] {inst.src.original}"


def error(st: StageState, inst: ins.Instruction, message: str, needle: str = "") -> ParseError:
    return ParseError(message, source_span(st.ctx.inputs.df, inst.src, needle))


def record(st: StageState, inst: ins.Instruction, vertex: ops.Vertex | None, history: History | None,
           **changes: Any) -> StageState:
    """``st`` with ``changes`` and the step of ``inst`` recorded."""
    return replace(st, steps=(*st.steps, (inst, vertex, history)), **changes)


def config_step(st: StageState, inst: ins.Instruction, text: str, cfg: Mapping[str, Any] | None = None,
                **changes: Any) -> StageState:
    """``st`` with ``changes``, its config with ``cfg`` changes and a config-only history entry ``text``, and the
    step recorded."""
    entry = history_entry(text, layer=False)
    return replace(st, cfg=replace(st.cfg, **cfg) if cfg else st.cfg, history=(*st.history, entry),
                   steps=(*st.steps, (inst, None, entry)), **changes)


def add_layer(st: StageState, vertex: ops.Vertex, text: str, *, suffix: bool = True,
              **changes: Any) -> tuple[StageState, History]:
    """``st`` with ``changes``, ``vertex`` as its new top layer, and the layer's history entry (also returned)."""
    entry = history_entry(text + (" # buildkit" if suffix else ""), layer=True)
    return replace(st, vertex=vertex, layers=(*st.layers, vertex), history=(*st.history, entry), **changes), entry


def layer_step(st: StageState, inst: ins.Instruction, vertex: ops.Vertex, text: str, *, suffix: bool = True,
               cfg: Mapping[str, Any] | None = None, **changes: Any) -> StageState:
    """``add_layer`` (its config with ``cfg`` changes) and the step of ``inst`` recorded, in one new state."""
    entry = history_entry(text + (" # buildkit" if suffix else ""), layer=True)
    return replace(st, vertex=vertex, layers=(*st.layers, vertex), history=(*st.history, entry),
                   cfg=replace(st.cfg, **cfg) if cfg else st.cfg, steps=(*st.steps, (inst, vertex, entry)),
                   **changes)


def named_context(st: StageState, name: str) -> ops.Vertex:
    value = st.ctx.inputs.build_contexts[name]
    if value.startswith("docker-image://"):
        return ops.ImageSource(ref=value[len("docker-image://"):], platform=st.platform)
    return ops.LocalContext(name=name)


def reference(st: StageState, name: str, inst: ins.Instruction) -> tuple[ops.Vertex, bool, StageState]:
    """``--from`` / ``from=``: a stage (name or index), a named context, or an image → (vertex, tainted, state)."""
    inputs = st.ctx.inputs
    index = inputs.stage_by_name.get(name.lower())
    if index is None and name.isdigit():
        index = int(name)
        if index >= len(inputs.df.stages):
            raise error(st, inst, f"invalid from flag value {name}: no stage with index {index}", name)
    if index is not None:
        built, progress = st.ctx.stage(st.progress, index, inst.src, name)  # a cycle is reported first
        if index >= st.stage.index:  # BuildKit dispatches stages in file order
            what = "mount from stage" if isinstance(inst, ins.Run) else "copy from stage"
            raise error(st, inst, f"cannot {what} {name!r}, it needs to be defined before current stage "
                                  f"{st.name!r}", name)
        return built.result, built.tainted, replace(st, progress=progress)
    if name in inputs.build_contexts:
        return named_context(st, name), False, st
    return (ops.ImageSource(ref=name, platform=st.platform, description=f"[{st.name}] {name}"),
            st.platform_tainted, st)
