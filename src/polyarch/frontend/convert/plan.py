"""Dockerfile + target platforms → a ``BuildPlan``: per platform, the final vertex of the target stage, the image
config it produces, and the layers to diff. This is the frontend's one entry point for the build.

Recipe (BuildKit's ``toDispatchState`` as small steps): parse → resolve ``--target`` (with "did you mean") →
for each target platform: evaluate global ARGs with the eight automatic platform args (``scope``) → convert the
target stage depth first (``stage``: stages it reaches through ``FROM``, ``COPY --from`` and
``RUN --mount=from=``; unreachable stages are skipped; a cycle is an error) → freeze the image configs. The frontend does no I/O: base-image configs
come from the injected ``resolve_image(ref, platform)``.

Result, per target platform (``PlatformPlan``):

* ``result``: the final vertex (see ``polyarch.ops``); ``root``: the ImageSource/Scratch its filesystem starts
  from; ``layers``: the vertices each adding one layer on top of ``root``'s layers, in order (a vertex's layer is
  diff(vertex, its ``root`` input); a WORKDIR or COPY layer may turn out empty);
* ``image``: an ``ImageConfig`` with the platform of the stage, the accumulated run-time config and the history
  (base image history first; one entry per instruction, ``empty_layer`` for config-only ones; the non-empty
  entries after the base's correspond one to one to ``layers``); ``diff_ids`` holds the base image's only: the
  build appends one per layer, drops empty layers and sets ``created``.
* ``stages``: every converted stage with its ``steps`` (instruction text, line, vertex or None, history).

``BuildPlan.vertices()`` lists every vertex once (inputs first), ``shared()`` the digests used by more than one
target platform (compute them once), ``findings`` the semantic check findings (UndefinedVar, …) and
``unused_build_args`` the ``--build-arg`` names nothing declared.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyarch import ops
from polyarch.errors import UsageError
from polyarch.frontend.convert.capture import Capture
from polyarch.frontend.convert.diagnostics import Finding
from polyarch.frontend.convert.scope import BUILTIN_ARGS, check_source_date_epoch, platform_context
from polyarch.frontend.convert.stage import convert_stage
from polyarch.frontend.convert.state import BuildInputs, ConvertedStage, Progress, ResolveImage
from polyarch.frontend.dockerfile.instructions import Dockerfile
from polyarch.frontend.dockerfile.parse import parse_dockerfile
from polyarch.oci.spec import History, ImageConfig
from polyarch.platform import Platform, host, runs_natively

__all__ = ["BuildPlan", "PlatformPlan", "StagePlan", "Step", "plan_build", "plan_to_json"]

@dataclass(frozen=True, slots=True)
class Step:
    stage: str
    number: int  # 1-based; the FROM is step 1
    instruction: str  # the logical line as written
    line: int
    vertex: ops.Vertex | None  # None for config-only instructions
    history: History | None  # None for FROM


@dataclass(frozen=True, slots=True)
class StagePlan:
    index: int
    name: str  # the stage name, or ``stage-N``
    platform: Platform  # the platform the stage runs as (FROM --platform, else the target)
    base: str  # ``scratch``, the image ref after expansion, or ``stage:<name>``
    steps: tuple[Step, ...]
    result: ops.Vertex
    image: ImageConfig
    layers: tuple[ops.Vertex, ...]
    root: ops.Vertex


@dataclass(frozen=True, slots=True)
class PlatformPlan:
    platform: Platform  # the target platform
    target: StagePlan
    stages: tuple[StagePlan, ...]  # dispatched stages, in dispatch order (dependencies first)

    @property
    def result(self) -> ops.Vertex:
        return self.target.result

    @property
    def image(self) -> ImageConfig:
        return self.target.image

    @property
    def layers(self) -> tuple[ops.Vertex, ...]:
        return self.target.layers

    @property
    def root(self) -> ops.Vertex:
        return self.target.root


@dataclass(frozen=True, slots=True)
class BuildPlan:
    dockerfile: Dockerfile
    build_platform: Platform
    target: str  # the target stage's name
    platforms: tuple[PlatformPlan, ...]
    findings: tuple[Finding, ...] = ()
    unused_build_args: tuple[str, ...] = ()
    capture: Capture | None = None  # declared/used args, secrets, ssh (for outline)

    def vertices(self) -> tuple[ops.Vertex, ...]:
        """Every vertex of every platform, once, inputs first."""
        return ops.walk(p.result for p in self.platforms)

    def shared(self) -> frozenset[str]:
        """Digests of vertices that more than one target platform uses."""
        counts: dict[str, int] = {}
        for p in self.platforms:
            for v in ops.walk([p.result]):
                counts[v.digest] = counts.get(v.digest, 0) + 1
        return frozenset(d for d, n in counts.items() if n > 1)


def plan_build(
    dockerfile: Dockerfile | str,
    *,
    platforms: Sequence[Platform] = (),
    target: str = "",
    build_args: Mapping[str, str] | None = None,
    resolve_image: ResolveImage | None = None,
    build_platform: Platform | None = None,
    is_native: Callable[[Platform], bool] | None = None,
    context_excludes: Sequence[str] = (),
    build_contexts: Mapping[str, str] | None = None,
    filename: str = "Dockerfile",
    strict: bool = True,
    run_options: ops.RunOptions | None = None,
) -> BuildPlan:
    """Plan a build for each of ``platforms`` (default: the build platform).

    ``build_platform`` defaults to ``platform.host()`` and ``is_native`` to ``platform.runs_natively``; pass both
    for host-independent results. ``context_excludes`` are the ``.dockerignore`` patterns (as written) of the
    build context. ``build_contexts`` maps ``--build-context`` names to ``docker-image://REF`` or a local path.
    ``strict=False`` (for ``--check``) lets an invalid base-image reference through; the checks report it.
    ``run_options`` (``--add-host``, ``--ulimit``, ``--shm-size``, ``--cgroup-parent``) go into every RUN.

    :raises ParseError: syntax or semantic error, with file, line and column.
    :raises UsageError: unknown ``--target``.
    """
    df = parse_dockerfile(dockerfile, filename) if isinstance(dockerfile, str) else dockerfile
    build = build_platform or host()
    targets = tuple(platforms) or (build,)
    by_name: dict[str, int] = {}
    for stage in df.stages:
        if stage.name and stage.name not in by_name:
            by_name[stage.name] = stage.index
    target_index = _target_index(df, by_name, target)
    inputs = BuildInputs(df=df, build_args=dict(build_args or {}), resolve_image=resolve_image, build_platform=build,
                         is_native=is_native or runs_natively,
                         context=ops.LocalContext(name="context", exclude=tuple(context_excludes)),
                         build_contexts=dict(build_contexts or {}), stage_by_name=by_name, strict=strict,
                         run_options=run_options or ops.RunOptions())
    progress = Progress()
    results = []
    for p in targets:
        ctx, progress = platform_context(inputs, p, progress.next_platform(), convert_stage)
        if not results:
            check_source_date_epoch(ctx)
        _, progress = convert_stage(ctx, progress, target_index)
        plans = {i: _stage_plan(progress.built[i]) for i in progress.order}
        results.append(PlatformPlan(p, plans[target_index], tuple(plans.values())))
    capture = progress.capture
    unused = sorted(k for k in inputs.build_args if k not in capture.consumed and k not in BUILTIN_ARGS
                    and not k.startswith("BUILDKIT_"))
    return BuildPlan(df, build, df.stages[target_index].display_name, tuple(results),
                     tuple(sorted(progress.findings.values())), tuple(unused), capture)


def _stage_plan(built: ConvertedStage) -> StagePlan:
    steps = tuple(Step(built.name, i + 1, inst.src.original, inst.src.start_line, vertex, history)
                  for i, (inst, vertex, history) in enumerate(built.steps))
    return StagePlan(built.index, built.name, built.platform, built.base, steps, built.result,
                     built.config.freeze(built.history), built.layers, built.root)


def _target_index(df: Dockerfile, by_name: Mapping[str, int], target: str) -> int:
    if not target:
        return len(df.stages) - 1
    index = by_name.get(target.lower())
    if index is None:
        close = difflib.get_close_matches(target.lower(), list(by_name), n=1, cutoff=0.6)
        raise UsageError(f"target stage {target!r} could not be found",
                         hint=f"did you mean {close[0]!r}?" if close else
                         ("stages: " + ", ".join(by_name) if by_name else "the Dockerfile has no named stages"))
    return index


def plan_to_json(plan: BuildPlan) -> dict[str, Any]:
    """The canonical JSON of a plan (goldens, ``--call=plan --format=json``): vertices once, platforms by digest."""
    shared = plan.shared()
    platforms = []
    for p in plan.platforms:
        stages = []
        for s in p.stages:
            stages.append({
                "name": s.name, "platform": str(s.platform), "base": s.base, "result": s.result.digest,
                "steps": [{"number": st.number, "line": st.line, "instruction": st.instruction,
                           **({"vertex": st.vertex.digest} if st.vertex is not None else {})} for st in s.steps],
            })
        platforms.append({
            "platform": str(p.platform), "target": p.target.name, "result": p.result.digest,
            "root": p.root.digest, "layers": [v.digest for v in p.layers], "image": p.image.to_dict(),
            "stages": stages,
        })
    return {
        "build_platform": str(plan.build_platform),
        "target": plan.target,
        "vertices": [ops.vertex_to_json(v) | ({"shared": True} if v.digest in shared else {})
                     for v in plan.vertices()],
        "platforms": platforms,
        "findings": [{"rule": f.rule, "line": f.start_line, "message": f.message} for f in plan.findings],
        "unused_build_args": list(plan.unused_build_args),
    }
