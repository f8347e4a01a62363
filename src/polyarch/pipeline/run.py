"""One build, as a library call: plan (frontend) → solve (solver) → images (``assemble``), nothing exported.

The pipeline receives its collaborators (``pipeline.deps.BuildDeps``: cache, runtime, ``FROM`` resolver, registry
client, lock, emulation check) from its caller and never constructs them. ``plan_request`` reads nothing: the CLI
(or bake) gives the Dockerfile text, the ``.dockerignore`` patterns and the context directories. ``solve_plans``
runs the vertices of several platform plans (several targets, for bake) in one solve, so identical work runs once;
a failure is re-raised as one ``BuildError`` that names the platform, stage, instruction and Dockerfile line.
Blobs written by a failed build are removed again (store transaction), so a failed build leaves the store as it
was; the cache keeps only entries whose blobs exist. Cancellation: the caller's ``Cancel`` token (the CLI triggers
it on ^C) reaches the solver and the RUN runner; a cancelled build takes the same path as a failed one (running
steps stopped, temporary state removed, blobs rolled back) and raises ``Cancelled``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from polyarch import ops
from polyarch.cancel import Cancel, Cancelled
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import BuildError, PolyarchError
from polyarch.exporters.assemble import Annotations, BuildResult, assemble
from polyarch.exporters.cache import CacheSpec, export_cache, import_cache
from polyarch.frontend.convert.plan import BuildPlan, PlatformPlan, plan_build
from polyarch.oci.spec import ImageConfig
from polyarch.platform import Platform
from polyarch.progress import Progress
from polyarch.solver.executor import Executor, ExecutorOptions
from polyarch.solver.scheduler import Solver
from polyarch.solver.state import Layer, State

from .deps import BaseImageSource, BuildDeps
from .runexec import check_entitlements

__all__ = ["BuildRequest", "build_image", "build_many", "cache_entries", "plan_request", "solve_plans", "step_labels",
           "uncached_steps"]


@dataclass(frozen=True, slots=True)
class BuildRequest:
    dockerfile: str  # the text
    filename: str = "Dockerfile"
    context: Path = Path(".")
    platforms: tuple[Platform, ...] = ()
    target: str = ""
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    excludes: tuple[str, ...] = ()  # .dockerignore patterns of the context
    build_contexts: Mapping[str, str] = field(default_factory=dict)  # name -> local path or docker-image://REF
    no_cache: bool = False
    epoch: int | None = None  # SOURCE_DATE_EPOCH
    secrets: Mapping[str, bytes] = field(default_factory=dict, repr=False)  # --secret values (never hashed)
    ssh: Mapping[str, str] = field(default_factory=dict)  # --ssh id -> agent socket
    pull: bool = False  # --pull: fetch FROM images even when the store has them
    annotations: tuple[str, ...] = ()  # --annotation values as written
    cache_from: tuple[CacheSpec, ...] = ()
    cache_to: tuple[CacheSpec, ...] = ()
    network: str = "default"  # --network: default, none or host (RUN --network= overrides)
    allow: frozenset[str] = frozenset()  # --allow entitlements: network.host, security.insecure
    run_options: ops.RunOptions = field(default_factory=ops.RunOptions)  # --add-host, --ulimit, --shm-size, --cgroup-parent
    no_cache_filter: tuple[str, ...] = ()  # --no-cache-filter: stages whose steps ignore the cache
    build_platform: Platform | None = None  # BUILDPLATFORM (None: this host); a builder node's own platform


def plan_request(req: BuildRequest, resolve_image: Callable[[str, Platform], ImageConfig | None]) -> BuildPlan:
    """The request's Dockerfile planned for its platforms; ``resolve_image`` gives ``FROM`` configs."""
    return plan_build(req.dockerfile, platforms=req.platforms, target=req.target, build_args=req.build_args,
                      resolve_image=resolve_image, context_excludes=req.excludes,
                      build_contexts=req.build_contexts, filename=req.filename, run_options=req.run_options,
                      build_platform=req.build_platform)


def uncached_steps(plan: BuildPlan, stages: Sequence[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """``--no-cache-filter``: the digests of every step of the stages named ``stages`` (``AS`` names, any case,
    as BuildKit), and the names no stage of the Dockerfile has."""
    wanted = {s.lower() for s in stages}
    names = {st.name.lower() for st in plan.dockerfile.stages if st.name}
    digests = {step.vertex.digest for pp in plan.platforms for stage in pp.stages
               if (plan.dockerfile.stages[stage.index].name or "").lower() in wanted
               for step in stage.steps if step.vertex is not None}
    return frozenset(digests), tuple(s for s in stages if s.lower() not in names)


def step_labels(plans: Sequence[PlatformPlan]) -> dict[str, str]:
    """Vertex digest → platform shown in progress names (only when several platforms are built): the stage's
    platform, and ``build->target`` (BuildKit's ``linux/amd64->arm64``) for a step that runs on another
    platform than the one target it serves."""
    if len({str(p.platform) for p in plans}) < 2:
        return {}
    users: dict[str, int] = {}
    for pp in plans:
        for v in ops.walk([pp.result]):
            users[v.digest] = users.get(v.digest, 0) + 1
    labels: dict[str, str] = {}
    for pp in plans:
        target = pp.platform.architecture + (f"/{pp.platform.variant}" if pp.platform.variant else "")
        for stage in pp.stages:
            for step in stage.steps:
                if step.vertex is None or step.vertex.digest in labels:
                    continue
                label = str(stage.platform)
                if stage.platform != pp.platform and users.get(step.vertex.digest, 0) == 1:
                    label += "->" + target
                labels[step.vertex.digest] = label
    return labels


def _where(plans: Sequence[PlatformPlan], vertex: ops.Vertex, filename: str) -> str:
    """The step that failed, or (for a source such as ``ADD URL``) the first step reading it."""
    for match in (lambda v: v.digest == vertex.digest, lambda v: any(i.digest == vertex.digest for i in v.inputs)):
        found = _find_step(plans, match, filename)
        if found:
            return found
    return getattr(vertex, "description", "") or vertex.kind


def _find_step(plans: Sequence[PlatformPlan], match: Callable[[ops.Vertex], bool], filename: str) -> str:
    for pp in plans:
        for stage in pp.stages:
            for step in stage.steps:
                if step.vertex is not None and match(step.vertex):
                    total = len(stage.steps)
                    return (f"{stage.platform} [{stage.name} {step.number}/{total}] {step.instruction} "
                            f"({filename}:{step.line})")
    return ""


def solve_plans(deps: BuildDeps, plans: Sequence[PlatformPlan], *, contexts: Mapping[str, Path],
                progress: Progress, bases: BaseImageSource, no_cache: bool = False, epoch: int | None = None,
                filename: str = "Dockerfile", secrets: Mapping[str, bytes] | None = None,
                ssh: Mapping[str, str] | None = None, network: str = "default",
                cancel: Cancel | None = None, uncached: frozenset[str] = frozenset()) -> dict[str, State]:
    """Solve every platform plan in one run; returns vertex digest → State. The steps whose digests are in
    ``uncached`` run again even when the cache has their result (``--no-cache-filter``).

    :raises BuildError: a step failed (message: platform, stage, instruction, file:line, cause).
    :raises Cancelled: ``cancel`` was triggered (running steps were stopped first).
    """
    cancel = cancel or Cancel()
    cache = deps.open_cache(not no_cache)
    executor = Executor(deps.store, cache, ExecutorOptions(contexts=dict(contexts), epoch=epoch, network=network,
                                                           snapshotter=deps.snapshotter, uncached=uncached),
                        run_exec=deps.exec_runner(secrets or {}, ssh or {}), resolve_image=bases.image,
                        cancel=cancel, pulling=bases.pulling)
    solver = Solver(executor, progress=progress, labels=step_labels(plans), cancel=cancel)
    try:
        # every platform a RUN step needs must work (natively or emulated) before any step runs
        for platform in {str(v.platform): v.platform for v in ops.walk([pp.result for pp in plans])
                         if isinstance(v, ops.Exec)}.values():
            deps.check_runnable(platform)
        with deps.lock():  # 'polyarch prune' leaves snapshots alone while a build runs
            return solver.solve([pp.result for pp in plans])
    except PolyarchError as exc:
        if solver.failed is None:
            raise
        where = _where(plans, solver.failed, filename)
        raise BuildError(f"{where}: {exc.message}", hint=exc.hint) from exc
    finally:
        executor.close()
        cache.close()


def _contexts(req: BuildRequest) -> dict[str, Path]:
    contexts = {"context": req.context.absolute()}
    for name, value in req.build_contexts.items():
        if not value.startswith("docker-image://"):
            contexts[name] = Path(value).absolute()
    return contexts


def _distinct_contexts(reqs: Sequence[BuildRequest], plans: list[BuildPlan]
                       ) -> tuple[list[BuildPlan], list[dict[str, Path]]]:
    """Give every distinct context directory its own vertex name, so requests (bake targets) whose contexts
    differ can be solved in one run: the first directory seen for a name keeps the name (``context``), the
    next ones become ``context#1``…; steps that do not read a context stay identical and run once."""
    assigned: dict[str, dict[Path, str]] = {}
    out_plans: list[BuildPlan] = []
    out_contexts: list[dict[str, Path]] = []
    for req, plan in zip(reqs, plans, strict=True):
        mapping: dict[str, str] = {}
        contexts: dict[str, Path] = {}
        for name, path in _contexts(req).items():
            seen = assigned.setdefault(name, {})
            if path not in seen:
                seen[path] = name if not seen else f"{name}#{len(seen)}"
            mapping[name] = seen[path]
            contexts[seen[path]] = path
        if any(k != v for k, v in mapping.items()):
            def rename(v: ops.Vertex, mapping: dict[str, str] = mapping) -> ops.Vertex:
                if isinstance(v, ops.LocalContext) and v.name in mapping:
                    return dataclasses.replace(v, name=mapping[v.name])
                return v

            plan = dataclasses.replace(plan, platforms=ops.replace_vertices(plan.platforms, rename))
        out_plans.append(plan)
        out_contexts.append(contexts)
    return out_plans, out_contexts


def build_image(deps: BuildDeps, req: BuildRequest, *, progress: Progress, cancel: Cancel | None = None
                ) -> tuple[BuildPlan, BuildResult]:
    """Plan, solve and assemble (config, manifests, index in the store; no names). All or nothing."""
    return build_many(deps, [req], progress=progress, cancel=cancel)[0]


def build_many(deps: BuildDeps, reqs: Sequence[BuildRequest], *, progress: Progress, cancel: Cancel | None = None
               ) -> list[tuple[BuildPlan, BuildResult]]:
    """Several builds (bake targets) as one: every request is planned first, then the requests that share the
    same context directories (and cache and secret settings) are solved together, so identical steps across
    targets and platforms run once; groups run in parallel. All or nothing: if any step of any target fails,
    the first failure is raised and the blobs these builds wrote are deleted again (except any that an image
    name reaches by then: a concurrent build into the same store may share them).

    :raises BuildError: a step failed (named: platform, stage, instruction, file:line).
    :raises Cancelled: ``cancel`` was triggered; the store is rolled back as for a failure.
    """
    import concurrent.futures

    cancel = cancel or Cancel()

    store = deps.store
    bases = deps.base_images(any(r.pull for r in reqs), progress)
    try:
        plans = [plan_request(req, bases.config) for req in reqs]

        for req, plan in zip(reqs, plans, strict=True):
            check_entitlements([pp.result for pp in plan.platforms], req.network, req.allow)
    except BaseException:
        bases.close()
        raise
    plans, contexts = _distinct_contexts(reqs, plans)
    for req, plan in zip(reqs, plans, strict=True):
        for name in uncached_steps(plan, req.no_cache_filter)[1]:
            progress.message(f"--no-cache-filter {name}: the Dockerfile has no stage of that name")
    groups: dict[str, list[int]] = {}
    for i, req in enumerate(reqs):
        ident = repr((req.no_cache, req.epoch, sorted(req.secrets.items()), sorted(req.ssh.items()), req.network))
        groups.setdefault(ident, []).append(i)

    def work() -> list[tuple[BuildPlan, BuildResult]]:
        states: dict[str, State] = {}
        cache_from = [spec for req in reqs for spec in req.cache_from]
        if cache_from and not all(r.no_cache for r in reqs):
            cache = deps.open_cache(True)
            try:
                imported = import_cache(store, cache, cache_from, client_factory=deps.registry,
                                        warn=progress.message)
            finally:
                cache.close()
            progress.message(f"imported {imported} cache entries", level="info")

        def solve(members: list[int]) -> dict[str, State]:
            first = reqs[members[0]]
            platform_plans = [pp for i in members for pp in plans[i].platforms]
            merged = {name: path for i in members for name, path in contexts[i].items()}
            uncached = frozenset().union(*(uncached_steps(plans[i], reqs[i].no_cache_filter)[0] for i in members))
            return solve_plans(deps, platform_plans, contexts=merged, progress=progress, bases=bases,
                               no_cache=first.no_cache, epoch=first.epoch, filename=first.filename,
                               secrets=first.secrets, ssh=first.ssh, network=first.network, cancel=cancel,
                               uncached=uncached)

        if len(groups) == 1:
            states.update(solve(next(iter(groups.values()))))
            by_group = [states]
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(groups)) as pool:
                by_group = list(pool.map(solve, groups.values()))
        results: list[tuple[BuildPlan, BuildResult]] = []
        owner = {i: g for g, members in zip(by_group, groups.values(), strict=True) for i in members}
        for i, req in enumerate(reqs):
            result = assemble(ImageStore(store), plans[i].platforms, owner[i], epoch=req.epoch, labels=req.labels,
                              annotations=Annotations.parse(req.annotations))
            results.append((plans[i], result))
            if req.cache_to:
                export_cache(ImageStore(store), cache_entries(plans[i], owner[i], req.cache_to), req.cache_to,
                             client_factory=deps.registry, warn=progress.message)
        return results

    failure: BaseException | None = None
    doomed: list[Digest] = []
    # the build's blobs share one flush (content/store.py: ambient batches); a name flushes first
    with store.transaction() as created, store.batched():
        try:
            cancel.check()
            done = work()
            cancel.check()  # cancelled while assembling: roll back all the same
            return done
        except BaseException as exc:  # roll back below, carefully, instead of in the transaction
            failure, doomed = exc, list(created)
            created.clear()
        finally:
            bases.close()
    _rollback(store, doomed)
    assert failure is not None
    if cancel.cancelled and not isinstance(failure, Cancelled):
        raise Cancelled() from failure  # a step killed by the cancellation failed because of it
    raise failure


def _rollback(store: ContentStore, created: Sequence[Digest]) -> None:
    """Delete the blobs a failed build wrote, except those a name reaches by now (another build running at the
    same time may have produced the same blob and named an image that uses it): fail cleanly, never corrupt."""
    images = ImageStore(store)
    reachable: set[str] = set()
    try:
        for _, desc in images.names():
            reachable.update(str(d.digest) for d in images.walk(desc))
    except PolyarchError:
        return  # an unreadable store: keep everything rather than guess
    for digest in created:
        if str(digest) not in reachable:
            try:
                store.delete(digest)
            except PolyarchError:
                pass


def cache_entries(plan: BuildPlan, states: Mapping[str, State], specs: Sequence[CacheSpec]
                  ) -> list[tuple[str, Layer | None]]:
    """The cache entries of a build's layer steps: the final images' (``mode=min``) or every stage's (``max``)."""
    if any(s.mode == "max" for s in specs):
        vertices: Sequence[ops.Vertex] = plan.vertices()
    else:
        vertices = [v for pp in plan.platforms for v in pp.layers]
    out: dict[str, Layer | None] = {}
    for v in vertices:
        if isinstance(v, ops.Copy | ops.Mkdir | ops.Exec) and v.digest in states:
            st = states[v.digest]
            out[st.key] = st.added
    return list(out.items())
