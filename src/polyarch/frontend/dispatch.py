"""Dispatch: one stage × one target platform → vertices, image config, history (BuildKit's ``dispatch``).

``PlatformDispatcher`` evaluates the global ARGs for one target platform and dispatches stages on demand,
depth first, so only stages the target reaches are visited and a reference cycle is caught where it closes.
``StageDispatch`` walks one stage's instructions; COPY/ADD live in ``dispatch_copy``.

Target-platform dependence is tracked alongside ("taint"): a vertex depends on the target platform when it is
pulled for it, or uses a TARGET* arg, or builds on something that does. COPY and WORKDIR layers that do not are
marked ``platform_independent``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from polyarch import ops
from polyarch.errors import InvalidPlatform, InvalidReference, ParseError
from polyarch.frontend.diagnostics import DOCS_URL, Finding
from polyarch.frontend.dispatch_config import CONFIG_HANDLERS
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.dockerfile.lexer import Line
from polyarch.frontend.dockerfile.mounts import parse_mount
from polyarch.frontend.dockerfile.parse import parse_line
from polyarch.frontend.dockerfile.shell import expand_word, expand_words
from polyarch.frontend.imageconfig import ConfigState
from polyarch.frontend.scope import PLATFORM_ARGS, TARGET_ARGS, Capture, platform_args, source_span
from polyarch.oci import reference
from polyarch.platform import Platform
from polyarch.platform import parse as parse_platform

if TYPE_CHECKING:
    from polyarch.frontend.plan import ResolveImage, StagePlan

__all__ = ["Built", "PlanContext", "PlatformDispatcher", "StageDispatch"]



@dataclass(slots=True)
class PlanContext:
    df: ins.Dockerfile
    build_args: Mapping[str, str]
    resolve_image: ResolveImage | None
    build_platform: Platform
    is_native: Callable[[Platform], bool]
    context: ops.LocalContext
    build_contexts: Mapping[str, str]
    stage_by_name: dict[str, int]
    capture: Capture = field(default_factory=Capture)
    findings: dict[tuple[int, str, str], Finding] = field(default_factory=dict)
    strict: bool = True  # False for --check: an invalid base reference is a finding's business, not an error

    def find(self, rule: str, message: str, src: ins.Source, *, url: bool = True) -> None:
        key = (src.start_line, rule, message)
        if key not in self.findings:
            self.findings[key] = Finding(src.start_line, src.end_line, rule, message, src.filename,
                                         DOCS_URL + _kebab(rule) + "/" if url else "")


def _kebab(rule: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "-", rule).replace("JSONArgs", "JSON-Args").lower()


@dataclass(frozen=True, slots=True)
class Built:
    plan: StagePlan
    config: ConfigState
    tainted: bool
    platform_tainted: bool


class PlatformDispatcher:
    def __init__(self, ctx: PlanContext, target: Platform) -> None:
        self.ctx = ctx
        self.target = target
        self.escape = ctx.df.directives.escape
        self.auto = platform_args(target, ctx.build_platform)
        env: dict[str, str] = dict(self.auto)
        self.global_declared: set[str] = set()
        self.global_tainted: set[str] = set()
        for arg in ctx.df.global_args:
            for decl in arg.args:
                if decl.name in ctx.build_args:
                    value: str | None = ctx.build_args[decl.name]
                elif decl.default is not None:
                    value = self.expand(decl.default, env, arg.src)[0]
                else:
                    value = self.auto.get(decl.name)
                if value is not None:
                    env[decl.name] = value
                if decl.name in TARGET_ARGS or (decl.default is not None and decl.name not in ctx.build_args
                                                and _uses(decl.default, TARGET_ARGS | self.global_tainted)):
                    self.global_tainted.add(decl.name)
                self.global_declared.add(decl.name)
                ctx.capture.declare(decl.name, value, arg.comments, arg.src.start_line)
        self.global_env = env
        self.built: dict[int, Built] = {}
        self.order: list[int] = []
        self._active: list[int] = []

    def expand(self, word: str, env: Mapping[str, str], src: ins.Source) -> tuple[str, frozenset[str],
                                                                                   frozenset[str]]:
        try:
            r = expand_word(word, env, escape=self.escape)
        except ParseError as exc:
            raise ParseError(exc.message, source_span(self.ctx.df, src, word)) from None
        return r.value, r.used, r.missing

    def stage(self, index: int, via: ins.Source | None = None, needle: str = "") -> Built:
        done = self.built.get(index)
        if done is not None:
            return done
        if index in self._active:
            names = [self.ctx.df.stages[i].display_name for i in self._active[self._active.index(index):]]
            span = source_span(self.ctx.df, via, needle) if via else None
            raise ParseError(f"circular dependency detected on stage: {' -> '.join([*names, names[0]])}", span)
        self._active.append(index)
        try:
            built = StageDispatch(self, self.ctx.df.stages[index]).run()
        finally:
            self._active.pop()
        self.built[index] = built
        self.order.append(index)
        return built


def _uses(word: str, names: frozenset[str] | set[str]) -> bool:
    return any(f"${n}" in word or f"${{{n}" in word for n in names)


class StageDispatch:
    def __init__(self, pd: PlatformDispatcher, stage: ins.Stage) -> None:
        self.pd = pd
        self.ctx = pd.ctx
        self.stage = stage
        self.name = stage.display_name
        self.args: dict[str, str | None] = {}
        self._scope: dict[str, str] | None = None
        self.steps: list[tuple[ins.Instruction, ops.Vertex | None, object]] = []
        self.layers: list[ops.Vertex] = []
        self.cmd_set = False
        self.config_tainted = False
        self.inst_tainted = False
        self.total = 1 + len(stage.commands)
        self.tainted_args: set[str] = set()  # args whose value comes from the target platform
        self.workdir_tainted = False
        self.user_tainted = False
        # set by _from:
        self.platform: Platform = pd.target
        self.platform_tainted = True
        self.root: ops.Vertex = ops.Scratch()
        self.vertex: ops.Vertex = self.root
        self.cfg: ConfigState = ConfigState(None, pd.target)
        self.tainted = False
        self.base = ""

    # --- helpers ------------------------------------------------------------------------------------------
    def scope(self) -> dict[str, str]:
        if self._scope is None:
            merged = {k: v for k, v in self.args.items() if v is not None}
            merged.update(self.cfg.env)
            self._scope = merged
        return self._scope

    def x(self, word: str, src: ins.Source, env: Mapping[str, str] | None = None) -> str:
        """Expand one word in the stage scope, noting used and undefined names."""
        scope = self.scope() if env is None else env
        value, used, missing = self.pd.expand(word, scope, src)
        self._note(used, missing, src, scope)
        return value

    def xs(self, text: str, src: ins.Source) -> tuple[str, ...]:
        scope = self.scope()
        try:
            r = expand_words(text, scope, escape=self.pd.escape)
        except ParseError as exc:
            raise ParseError(exc.message, source_span(self.ctx.df, src, text)) from None
        self._note(r.used, r.missing, src, scope)
        return r.words

    def _note(self, used: frozenset[str], missing: frozenset[str], src: ins.Source, scope: Mapping[str, str]) -> None:
        if used & self.tainted_args:
            self.inst_tainted = True
        self.ctx.capture.used.update(used)
        for name in sorted(missing):
            close = difflib.get_close_matches(name, list(scope), n=1, cutoff=0.7)
            self.ctx.find("UndefinedVar", f"Usage of undefined variable '${name}'"
                          + (f" (did you mean ${close[0]}?)" if close else ""), src)

    def desc(self, number: int, inst: ins.Instruction) -> str:
        return f"[{self.name} {number}/{self.total}] {inst.src.original}"

    def error(self, inst: ins.Instruction, message: str, needle: str = "") -> ParseError:
        return ParseError(message, source_span(self.ctx.df, inst.src, needle))

    def reference(self, name: str, inst: ins.Instruction) -> tuple[ops.Vertex, bool]:
        """``--from`` / ``from=``: a stage (name or index), a named context, or an image."""
        lower = name.lower()
        index = self.ctx.stage_by_name.get(lower)
        if index is None and name.isdigit():
            index = int(name)
            if index >= len(self.ctx.df.stages):
                raise self.error(inst, f"invalid from flag value {name}: no stage with index {index}", name)
        if index is not None:
            built = self.pd.stage(index, inst.src, name)
            return built.plan.result, built.tainted
        if name in self.ctx.build_contexts:
            return self.named_context(name), False
        return ops.ImageSource(ref=name, platform=self.platform, description=f"[{self.name}] {name}"), \
            self.platform_tainted

    def named_context(self, name: str) -> ops.Vertex:
        value = self.ctx.build_contexts[name]
        if value.startswith("docker-image://"):
            return ops.ImageSource(ref=value[len("docker-image://"):], platform=self.platform)
        return ops.LocalContext(name=name)

    # --- the stage ----------------------------------------------------------------------------------------
    def run(self) -> Built:
        from polyarch.frontend.plan import StagePlan, Step

        self._from(self.stage.from_)
        number = 1
        for trigger in self.cfg.base_onbuild:
            inst = self._parse_trigger(trigger)
            self.total += 1
            number += 1
            self.dispatch(inst, number)
        self.cfg.base_onbuild = ()
        for inst in self.stage.commands:
            number += 1
            self.dispatch(inst, number)
        steps = tuple(Step(self.name, i + 1, inst.src.original, inst.src.start_line, v, h)  # type: ignore[arg-type]
                      for i, (inst, v, h) in enumerate(self.steps))
        plan = StagePlan(self.stage.index, self.name, self.platform, self.base, steps, self.vertex,
                         self.cfg.freeze(), tuple(self.layers), self.root)
        return Built(plan, self.cfg, self.tainted, self.platform_tainted)

    def _parse_trigger(self, trigger: str) -> ins.Instruction:
        f = self.stage.from_.src
        keyword, _, rest = trigger.strip().partition(" ")
        line = Line(keyword, rest.strip(), f.start_line, f.end_line, (f.original,), (), (), f.filename)
        try:
            return parse_line(line, self.pd.escape)
        except ParseError as exc:
            raise self.error(self.stage.from_, f"invalid ONBUILD trigger {trigger!r} of the base image: "
                             f"{exc.message}") from None

    def _from_expand(self, word: str, src: ins.Source) -> tuple[str, frozenset[str]]:
        value, used, missing = self.pd.expand(word, self.pd.global_env, src)
        for name in sorted(missing):
            close = difflib.get_close_matches(name, [*self.pd.global_declared, *PLATFORM_ARGS], n=1, cutoff=0.7)
            self.ctx.find("UndefinedArgInFrom", f"FROM argument '{name}' is not declared"
                          + (f" (did you mean {close[0]}?)" if close else ""), src)
        self.ctx.capture.used.update(used)
        return value, used

    def _from(self, f: ins.From) -> None:
        self.platform = self.pd.target
        self.platform_tainted = True
        if f.platform:
            text, used = self._from_expand(f.platform, f.src)
            try:
                self.platform = parse_platform(text)
            except InvalidPlatform as exc:
                raise self.error(f, f"FROM --platform: {exc.message}", f.platform) from None
            self.platform_tainted = bool(used & (TARGET_ARGS | self.pd.global_tainted))
        ref, used = self._from_expand(f.image, f.src)
        if not ref:
            raise self.error(f, f"base name ({f.image}) should not be blank", f.image)
        self._check_default_base(f)
        lower = ref.lower()
        index = self.ctx.stage_by_name.get(lower)
        if lower == "scratch":
            self.root = self.vertex = ops.Scratch()
            self.cfg = ConfigState(None, self.platform)
            self.tainted = False
            self.base = "scratch"
        elif index is not None and index != self.stage.index:
            parent = self.pd.stage(index, f.src)
            self.root, self.vertex = parent.plan.root, parent.plan.result
            self.layers = list(parent.plan.layers)
            self.cfg = parent.config.copy()
            self.cfg.base_onbuild = tuple(parent.config.onbuild)
            self.platform, self.platform_tainted = parent.plan.platform, parent.platform_tainted
            self.tainted = parent.tainted
            self.base = f"stage:{parent.plan.name}"
        else:
            if ref in self.ctx.build_contexts:
                self.root = self.named_context(ref)
            else:
                try:
                    reference.parse(ref)
                except InvalidReference as exc:
                    if self.ctx.strict:
                        raise self.error(f, f"invalid base image {ref!r}: {exc.message}", f.image) from None
                self.root = ops.ImageSource(ref=ref, platform=self.platform, description=self.desc(1, f))
            self.vertex = self.root
            resolved = self.ctx.resolve_image(ref, self.platform) if self.ctx.resolve_image else None
            self.cfg = ConfigState(resolved, self.platform)
            self.tainted = self.platform_tainted or bool(used & (TARGET_ARGS | self.pd.global_tainted))
            self.base = ref
        self.config_tainted = self.tainted
        self.steps.append((f, self.vertex, None))

    def _check_default_base(self, f: ins.From) -> None:
        if "$" not in f.image:
            return
        defaults: dict[str, str] = dict(self.pd.auto)
        for arg in self.ctx.df.global_args:
            for decl in arg.args:
                if decl.default is not None:
                    try:
                        defaults[decl.name] = expand_word(decl.default, defaults, escape=self.pd.escape).value
                    except ParseError:
                        return
        try:
            value = expand_word(f.image, defaults, escape=self.pd.escape).value
            if value.lower() != "scratch" and value.lower() not in self.ctx.stage_by_name:
                reference.parse(value)
        except (ParseError, InvalidReference):
            self.ctx.find("InvalidDefaultArgInFrom",
                          f"Default value for ARG {f.image} results in empty or invalid base image name", f.src)

    # --- instructions -------------------------------------------------------------------------------------
    def dispatch(self, inst: ins.Instruction, number: int) -> None:
        self.inst_tainted = False
        vertex: ops.Vertex | None
        if isinstance(inst, ins.Copy):
            vertex, history = dispatch_copy(self, inst, number)
        elif isinstance(inst, ins.Run):
            vertex, history = self._run(inst, number)
        else:
            vertex, history = CONFIG_HANDLERS[type(inst)](self, inst, number)
        self.steps.append((inst, vertex, history))

    def _config(self, text: str) -> tuple[None, object]:
        return None, self.cfg.add_history(text, layer=False)

    def _layer(self, vertex: ops.Vertex, text: str, *, suffix: bool = True) -> tuple[ops.Vertex, object]:
        self.vertex = vertex
        self.layers.append(vertex)
        return vertex, self.cfg.add_history(text + (" # buildkit" if suffix else ""), layer=True)

    def run_env(self) -> tuple[tuple[str, ...], list[str]]:
        env = list(self.cfg.env_list())
        shown = []
        for k, v in self.args.items():
            if v is not None and k not in self.cfg.env:
                env.append(f"{k}={v}")
                shown.append(f"{k}={v}")
        return tuple(env), shown

    def _run(self, inst: ins.Run, number: int) -> tuple[ops.Vertex, object]:
        self.ctx.capture.used.update(k for k, v in self.args.items() if v is not None)
        args, mounts = run_args(self, inst)
        for i, raw in enumerate(inst.mounts):
            mounts.append(self._mount(inst, self.x(raw, inst.src), i))
        env, shown = self.run_env()
        tainted = self.tainted or self.config_tainted or self.inst_tainted
        vertex = ops.Exec(root=self.vertex, args=args, env=env, cwd=self.cfg.workdir or "/", user=self.cfg.user,
                          network=inst.network or "default", security=inst.security or "sandbox",
                          mounts=tuple(mounts), platform=self.platform,
                          emulated=not self.ctx.is_native(self.platform), description=self.desc(number, inst))
        self.tainted = tainted
        prefix = f"|{len(shown)} " + " ".join(shown) + " " if shown else ""
        return self._layer(vertex, "RUN " + prefix + " ".join(args))

    def _mount(self, inst: ins.Run, spec: str, index: int) -> ops.ExecMount:
        try:
            m = parse_mount(spec, ssh_index=index)
        except ParseError as exc:
            raise self.error(inst, f"--mount: {exc.message}", spec) from None
        source: ops.Vertex | None = None
        if m.from_:
            source, tainted = self.reference(m.from_, inst)
            self.inst_tainted |= tainted
        elif m.type == "bind":
            source = self.ctx.context
        if m.type == "secret":
            self.ctx.capture.secrets.setdefault(m.id, (m.required, inst.src.start_line))
        elif m.type == "ssh":
            self.ctx.capture.ssh.setdefault(m.id, (m.required, inst.src.start_line))
        return ops.ExecMount(type=m.type, target=m.target, source=source, selector=m.source, readonly=m.readonly,
                             id=m.id, sharing=m.sharing, mode=m.mode, uid=m.uid, gid=m.gid, required=m.required,
                             env=m.env, size=m.size)

from polyarch.frontend.dispatch_copy import dispatch_copy, run_args  # noqa: E402  (the two modules use each other)
