"""Build-time names and where they come from: the eight automatic platform args, the global ARGs evaluated for one
target platform (``platform_context``), and the two instructions that set a stage's scope: ``FROM`` (``from_``:
platform, base image or parent stage, the config it starts with) and ``ARG`` (``arg``)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import replace

from polyarch import ops
from polyarch.errors import InvalidPlatform, InvalidReference, ParseError
from polyarch.frontend.convert.capture import GLOBAL, ArgInfo, describe
from polyarch.frontend.convert.imageconfig import ConfigState
from polyarch.frontend.convert.state import (
    BuildInputs,
    PlatformContext,
    Progress,
    StageConverter,
    StageState,
    config_step,
    desc,
    error,
    expand,
    expand_in,
    named_context,
    source_span,
    variables,
)
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.dockerfile.shell import expand_word
from polyarch.oci import reference
from polyarch.platform import Platform
from polyarch.platform import parse as parse_platform

__all__ = ["BUILD_ARGS", "BUILTIN_ARGS", "PLATFORM_ARGS", "TARGET_ARGS", "arg", "check_source_date_epoch", "from_",
           "platform_args", "platform_context"]

TARGET_ARGS = frozenset({"TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"})
BUILD_ARGS = frozenset({"BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT"})
PLATFORM_ARGS = TARGET_ARGS | BUILD_ARGS
BUILTIN_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy",
    "ALL_PROXY", "all_proxy", "SOURCE_DATE_EPOCH",
})


def platform_args(target: Platform, build: Platform) -> dict[str, str]:
    return {
        "TARGETPLATFORM": str(target), "TARGETOS": target.os, "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant,
        "BUILDPLATFORM": str(build), "BUILDOS": build.os, "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant,
    }


def _uses(word: str, names: frozenset[str] | set[str]) -> bool:
    return any(f"${n}" in word or f"${{{n}" in word for n in names)


def platform_context(inputs: BuildInputs, target: Platform, progress: Progress,
                     converter: StageConverter) -> tuple[PlatformContext, Progress]:
    """Evaluate the global ARGs for ``target`` (``--build-arg``, else the default, else an automatic arg)."""
    escape = inputs.df.directives.escape
    auto = platform_args(target, inputs.build_platform)
    env: dict[str, str] = dict(auto)
    declared: set[str] = set()
    tainted: set[str] = set()
    # expand_in needs a context for its escape and error spans only
    partial = PlatformContext(inputs, target, escape, auto, {}, frozenset(), frozenset(), converter)
    capture = progress.capture
    for inst in inputs.df.global_args:
        for decl in inst.args:
            deps: frozenset[str] = frozenset()
            if decl.name in inputs.build_args:
                value: str | None = inputs.build_args[decl.name]
            elif decl.default is not None:
                value, deps, _ = expand_in(partial, decl.default, env, inst.src)
                if decl.name in deps:  # ARG A=${A}-x: A keeps what its earlier value read
                    old = capture.args.get((GLOBAL, decl.name))
                    deps = (deps - {decl.name}) | (old.deps if old is not None else frozenset())
            else:
                value = auto.get(decl.name)
            if value is not None:
                env[decl.name] = value
            if decl.name in TARGET_ARGS or (decl.default is not None and decl.name not in inputs.build_args
                                            and _uses(decl.default, TARGET_ARGS | tainted)):
                tainted.add(decl.name)
            declared.add(decl.name)
            capture = capture.declare(GLOBAL, ArgInfo(decl.name, value, describe(inst.comments, decl.name),
                                                      inst.src.start_line, deps=frozenset(deps)))
    ctx = replace(partial, global_env=env, global_declared=frozenset(declared), global_tainted=frozenset(tainted))
    return ctx, progress.with_capture(capture)


_EPOCH_RE = re.compile(r"^[+-]?[0-9]+$")


def check_source_date_epoch(ctx: PlatformContext) -> None:
    """BuildKit resolves a non-empty ``SOURCE_DATE_EPOCH`` (``--build-arg``, else the global ARG's value) that is
    not a Unix time from ``context``, a named context or a stage; anything else is refused.

    :raises ParseError: ``invalid SOURCE_DATE_EPOCH`` (pointing at the global ARG when it gave the value), or one
        naming the stage/context form, which polyarch does not resolve.
    """
    inputs = ctx.inputs
    value = inputs.build_args.get("SOURCE_DATE_EPOCH")
    src: ins.Source | None = None
    if value is None:
        value = ctx.global_env.get("SOURCE_DATE_EPOCH", "")
        src = next((inst.src for inst in reversed(inputs.df.global_args)
                    if any(d.name == "SOURCE_DATE_EPOCH" for d in inst.args)), None)
    if not value or (_EPOCH_RE.match(value) and -(2 ** 63) <= int(value) < 2 ** 63):
        return
    span = source_span(inputs.df, src, value) if src is not None else None
    if value == "context" or value in inputs.build_contexts or value.lower() in inputs.stage_by_name:
        raise ParseError(f"SOURCE_DATE_EPOCH={value}: taking the epoch from a context or a stage is not "
                         "supported by polyarch", span, hint="pass the Unix time (e.g. $(git log -1 --format=%ct))")
    raise ParseError(f"invalid SOURCE_DATE_EPOCH: {value}", span)


def _from_expand(st: StageState, word: str, src: ins.Source) -> tuple[str, frozenset[str], StageState]:
    """Expand a FROM word in the global scope; an undefined name is an ``UndefinedArgInFrom`` finding."""
    ctx = st.ctx
    value, used, missing = expand_in(ctx, word, ctx.global_env, src)
    progress = st.progress
    for name in sorted(missing):
        close = difflib.get_close_matches(name, [*ctx.global_declared, *PLATFORM_ARGS], n=1, cutoff=0.7)
        progress = progress.find("UndefinedArgInFrom", f"FROM argument '{name}' is not declared"
                                 + (f" (did you mean {close[0]}?)" if close else ""), src)
    progress = progress.with_capture(progress.capture.use(used, in_from=True))
    return value, used, replace(st, progress=progress)


def _check_default_base(st: StageState, f: ins.From) -> StageState:
    """``InvalidDefaultArgInFrom``: the base name the global ARG defaults give is empty or invalid."""
    if "$" not in f.image:
        return st
    ctx = st.ctx
    defaults: dict[str, str] = dict(ctx.auto)
    for inst in ctx.inputs.df.global_args:
        for decl in inst.args:
            if decl.default is not None:
                try:
                    defaults[decl.name] = expand_word(decl.default, defaults, escape=ctx.escape).value
                except ParseError:
                    return st
    try:
        value = expand_word(f.image, defaults, escape=ctx.escape).value
        if value.lower() != "scratch" and value.lower() not in ctx.inputs.stage_by_name:
            reference.parse(value)
    except (ParseError, InvalidReference):
        return replace(st, progress=st.progress.find(
            "InvalidDefaultArgInFrom", f"Default value for ARG {f.image} results in empty or invalid base image name",
            f.src))
    return st


def from_(st: StageState, f: ins.From) -> StageState:
    """FROM: the platform the stage runs as, and what it starts from (scratch, a stage, a context or an image)."""
    ctx = st.ctx
    inputs = ctx.inputs
    platform, platform_tainted = ctx.target, True
    if f.platform:
        text, used, st = _from_expand(st, f.platform, f.src)
        try:
            platform = parse_platform(text)
        except InvalidPlatform as exc:
            raise error(st, f, f"FROM --platform: {exc.message}", f.platform) from None
        platform_tainted = bool(used & (TARGET_ARGS | ctx.global_tainted))
    ref, used, st = _from_expand(st, f.image, f.src)
    if not ref:
        raise error(st, f, f"base name ({f.image}) should not be blank", f.image)
    st = _check_default_base(st, f)
    lower = ref.lower()
    index = inputs.stage_by_name.get(lower)
    if lower == "scratch":
        root: ops.Vertex = ops.Scratch()
        st = replace(st, platform=platform, platform_tainted=platform_tainted, root=root, vertex=root,
                     cfg=ConfigState.start(None, platform), history=(), tainted=False, base="scratch")
    elif index is not None and index < st.stage.index:  # only an earlier stage: a later name is an image
        parent, progress = ctx.stage(st.progress, index, f.src)
        st = replace(st, progress=progress, root=parent.root, vertex=parent.result, layers=parent.layers,
                     cfg=parent.config.child(), history=parent.history, platform=parent.platform, platform_tainted=parent.platform_tainted,
                     tainted=parent.tainted, base=f"stage:{parent.name}", args=parent.args,
                     tainted_args=parent.tainted_args)
    else:
        st = replace(st, platform=platform, platform_tainted=platform_tainted)
        if ref in inputs.build_contexts:
            root = named_context(st, ref)
        else:
            try:
                reference.parse(ref)
            except InvalidReference as exc:
                if inputs.strict:
                    raise error(st, f, f"invalid base image {ref!r}: {exc.message}", f.image) from None
            root = ops.ImageSource(ref=ref, platform=platform, description=desc(st, f))
        resolved = inputs.resolve_image(ref, platform) if inputs.resolve_image else None
        st = replace(st, root=root, vertex=root, cfg=ConfigState.start(resolved, platform),
                     history=tuple(resolved.history) if resolved is not None else (),
                     tainted=platform_tainted or bool(used & (TARGET_ARGS | ctx.global_tainted)), base=ref)
    return replace(st, config_tainted=st.tainted, variables=variables(st.args, st.cfg.env),
                   steps=(*st.steps, (f, st.vertex, None)))


def arg(st: StageState, inst: ins.Arg) -> StageState:
    """Declare build args for the stage; history gets ``ARG NAME[=default as written]``."""
    ctx = st.ctx
    build_args: Mapping[str, str] = ctx.inputs.build_args
    shown = []
    for decl in inst.args:
        tainted_args = st.tainted_args
        inherited = False
        if decl.name in build_args:
            value: str | None = build_args[decl.name]
        elif decl.default is not None:
            value, st = expand(replace(st, inst_tainted=False), decl.default, inst.src)
            if st.inst_tainted:
                tainted_args = tainted_args | {decl.name}
        elif decl.name in ctx.global_declared:
            value, inherited = ctx.global_env.get(decl.name), True
            if decl.name in ctx.global_tainted:
                tainted_args = tainted_args | {decl.name}
        else:
            value = ctx.auto.get(decl.name)
            inherited = decl.name in ctx.auto
            if decl.name in TARGET_ARGS:
                tainted_args = tainted_args | {decl.name}
        args = {**st.args, decl.name: value}
        capture = st.progress.capture.declare(st.stage.index, ArgInfo(
            decl.name, value, describe(inst.comments, decl.name), inst.src.start_line, inherited))
        st = replace(st, args=args, variables=variables(args, st.cfg.env), tainted_args=tainted_args,
                     progress=st.progress.with_capture(capture))
        shown.append(decl.name if decl.default is None else f"{decl.name}={decl.default}")
    if any(d.name in st.tainted_args for d in inst.args):
        st = replace(st, config_tainted=True)
    # the history line is the declaration as written (Docker's classic builder): a --build-arg value, or a default
    # expanded from one, never reaches it (BuildKit writes the value here; RUN lines show it in both, see run.py)
    return config_step(st, inst, "ARG " + " ".join(shown))
