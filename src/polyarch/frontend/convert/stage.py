"""The stage converter: one stage × one target platform → a ``ConvertedStage`` (BuildKit's ``dispatch``).

``convert_stage`` applies ``from_`` and then, in order, the base image's ONBUILD triggers and the stage's
instructions, each through its handler (``HANDLERS``: pure functions ``(StageState, instruction) →
StageState``). A stage another one refers to is converted on demand, depth first, so only stages the target
reaches are visited and a reference cycle is caught where it closes; ``Progress`` records what is converted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from polyarch import ops
from polyarch.errors import ParseError
from polyarch.frontend.convert import config, copy_add, run, scope
from polyarch.frontend.convert.imageconfig import ConfigState
from polyarch.frontend.convert.state import (
    ConvertedStage,
    PlatformContext,
    Progress,
    StageState,
    error,
    source_span,
)
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.dockerfile.lexer import Line
from polyarch.frontend.dockerfile.parse import parse_line

__all__ = ["HANDLERS", "Handler", "apply", "convert_stage"]

Handler = Callable[[StageState, Any], StageState]

HANDLERS: dict[type[ins.Instruction], Handler] = {
    ins.Copy: copy_add.copy,
    ins.Add: copy_add.copy,
    ins.Run: run.run,
    ins.Arg: scope.arg,
    ins.Env: config.env,
    ins.Label: config.label,
    ins.Workdir: config.workdir,
    ins.User: config.user,
    ins.Expose: config.expose,
    ins.Volume: config.volume,
    ins.StopSignal: config.stopsignal,
    ins.Cmd: config.cmd,
    ins.Entrypoint: config.entrypoint,
    ins.Shell: config.shell,
    ins.Healthcheck: config.healthcheck,
    ins.Onbuild: config.onbuild,
    ins.Maintainer: config.maintainer,
}


def apply(st: StageState, inst: ins.Instruction) -> StageState:
    """Apply one instruction (not FROM) to a stage state."""
    return HANDLERS[type(inst)](replace(st, inst_tainted=False) if st.inst_tainted else st, inst)


def _trigger(st: StageState, trigger: str) -> ins.Instruction:
    """An ONBUILD trigger of the base, parsed at the FROM's location."""
    f = st.stage.from_
    keyword, _, rest = trigger.strip().partition(" ")
    line = Line(keyword, rest.strip(), f.src.start_line, f.src.end_line, (f.src.original,), (), (), f.src.filename)
    try:
        return parse_line(line, st.ctx.escape)
    except ParseError as exc:
        raise error(st, f, f"invalid ONBUILD trigger {trigger!r} of the base image: {exc.message}") from None


def initial_state(ctx: PlatformContext, progress: Progress, stage: ins.Stage) -> StageState:
    """A stage before its FROM: scratch on the target platform."""
    root = ops.Scratch()
    return StageState(ctx=ctx, progress=progress, stage=stage, name=stage.display_name,
                      total=1 + len(stage.commands), platform=ctx.target, platform_tainted=True, root=root,
                      vertex=root, cfg=ConfigState.start(None, ctx.target), tainted=False, base="")


def convert_stage(ctx: PlatformContext, progress: Progress, index: int, via: ins.Source | None = None,
                  needle: str = "") -> tuple[ConvertedStage, Progress]:
    """Stage ``index`` for ``ctx``'s target platform, and ``progress`` with it (and what it reached) converted.

    :raises ParseError: a reference cycle (``via``/``needle`` locate the reference that closes it), or an error in
        the stage.
    """
    done = progress.built.get(index)
    if done is not None:
        return done, progress
    df = ctx.inputs.df
    if index in progress.active:
        names = [df.stages[i].display_name for i in progress.active[progress.active.index(index):]]
        span = source_span(df, via, needle) if via else None
        raise ParseError(f"circular dependency detected on stage: {' -> '.join([*names, names[0]])}", span)
    stage = df.stages[index]
    st = scope.from_(initial_state(ctx, replace(progress, active=(*progress.active, index)), stage), stage.from_)
    triggers = st.cfg.base_onbuild
    for trigger in triggers:
        inst = _trigger(st, trigger)
        st = apply(replace(st, total=st.total + 1), inst)
    if triggers:
        st = replace(st, cfg=replace(st.cfg, base_onbuild=()))
    for inst in stage.commands:
        st = apply(st, inst)
    built = ConvertedStage(index=index, name=st.name, platform=st.platform, base=st.base, steps=st.steps,
                           result=st.vertex, config=st.cfg, history=st.history, layers=st.layers, root=st.root, tainted=st.tainted,
                           platform_tainted=st.platform_tainted, args=st.args, tainted_args=st.tainted_args)
    p = st.progress
    return built, replace(p, built={**p.built, index: built}, order=(*p.order, index), active=progress.active)
