"""Build checks (``polyarch build --check``): BuildKit's Dockerfile rules plus polyarch's multi-arch rules.

Syntactic rules read the parsed Dockerfile; semantic ones (UndefinedVar, UndefinedArgInFrom,
InvalidDefaultArgInFrom) come from the planner's findings, and the emulation rule reads the plan's Exec
vertices. ``# check=skip=Rule1,Rule2;error=true`` (or ``skip=all``) is honoured, as is the
``BUILDKIT_DOCKERFILE_CHECK`` build arg with the same syntax.

polyarch's own rules:

* ``EmulatedCompiler``: a compiler (go build, cargo build, gcc, make, …) runs in a stage that is emulated for
  some target platform → suggest the ``FROM --platform=$BUILDPLATFORM`` cross-compile pattern;
* ``PinnedPlatformArg``: ``ARG TARGETARCH=amd64`` (a default on an automatic platform arg) gives every platform
  the same value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from polyarch.frontend.convert.diagnostics import DOCS_URL, Finding
from polyarch.frontend.convert.plan import BuildPlan
from polyarch.frontend.convert.scope import PLATFORM_ARGS
from polyarch.frontend.dockerfile import instructions as ins

__all__ = ["RULES", "CheckConfig", "CheckReport", "format_report", "parse_check_config", "run_checks"]

RULES = (
    "ConsistentInstructionCasing", "DuplicateStageName", "EmulatedCompiler", "FromAsCasing",
    "FromPlatformFlagConstDisallowed", "InvalidDefaultArgInFrom", "JSONArgsRecommended", "LegacyKeyValueFormat",
    "MaintainerDeprecated", "MultipleInstructionsDisallowed", "NoEmptyContinuation", "PinnedPlatformArg",
    "RedundantTargetPlatform", "ReservedStageName", "SecretsUsedInArgOrEnv", "StageNameCasing",
    "UndefinedArgInFrom", "UndefinedVar", "WorkdirRelativePath",
)
_OWN = frozenset({"EmulatedCompiler", "PinnedPlatformArg"})
_URLS = {
    "ConsistentInstructionCasing": "consistent-instruction-casing", "DuplicateStageName": "duplicate-stage-name",
    "FromAsCasing": "from-as-casing", "FromPlatformFlagConstDisallowed": "from-platform-flag-const-disallowed",
    "InvalidDefaultArgInFrom": "invalid-default-arg-in-from", "JSONArgsRecommended": "json-args-recommended",
    "LegacyKeyValueFormat": "legacy-key-value-format", "MaintainerDeprecated": "maintainer-deprecated",
    "MultipleInstructionsDisallowed": "multiple-instructions-disallowed",
    "NoEmptyContinuation": "no-empty-continuation", "RedundantTargetPlatform": "redundant-target-platform",
    "ReservedStageName": "reserved-stage-name", "SecretsUsedInArgOrEnv": "secrets-used-in-arg-or-env",
    "StageNameCasing": "stage-name-casing", "UndefinedArgInFrom": "undefined-arg-in-from",
    "UndefinedVar": "undefined-var", "WorkdirRelativePath": "workdir-relative-path",
}
_SECRET_RE = re.compile(r"(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)",
                        re.IGNORECASE)
_PUBLIC_RE = re.compile(r"(?:_|^)public(?:_|$)", re.IGNORECASE)
_COMPILER_RE = re.compile(
    r"(?<![\w-])(go (?:build|install|test)|cargo (?:build|install)|rustc|gcc|g\+\+|clang(?:\+\+)?|cc|"
    r"c\+\+|make|cmake|ninja|meson compile|mvn|gradle|dotnet (?:build|publish)|swift build|zig build|ghc|"
    r"cabal build|stack build)(?![\w-])")


@dataclass(frozen=True, slots=True)
class CheckConfig:
    skip: frozenset[str] = frozenset()
    skip_all: bool = False
    error: bool = False


@dataclass(frozen=True, slots=True)
class CheckReport:
    findings: tuple[Finding, ...]
    config: CheckConfig

    @property
    def exit_code(self) -> int:
        return 1 if self.config.error and self.findings else 0


def parse_check_config(value: str) -> CheckConfig:
    """``skip=A,B;error=true`` → CheckConfig (unknown keys are ignored, like BuildKit's experimental=…)."""
    skip: set[str] = set()
    skip_all = error = False
    for part in value.split(";"):
        key, _, val = part.strip().partition("=")
        key = key.strip().lower()
        if key == "skip":
            names = {v.strip() for v in val.split(",") if v.strip()}
            skip_all = "all" in names
            skip |= names
        elif key == "error":
            error = val.strip().lower() == "true"
    return CheckConfig(frozenset(skip), skip_all, error)


def _hit(out: list[Finding], src: ins.Source, rule: str, message: str) -> None:
    url = "" if rule in _OWN else DOCS_URL + _URLS[rule] + "/"
    out.append(Finding(src.start_line, src.end_line, rule, message, src.filename, url))


def _stage_rules(df: ins.Dockerfile, out: list[Finding]) -> None:
    seen: set[str] = set()
    for stage in df.stages:
        f = stage.from_
        if f.stage_name:
            written = f.stage_name_as_written
            if written != written.lower():
                _hit(out, f.src, "StageNameCasing", f"Stage name '{written}' should be lowercase")
            if f.stage_name in seen:
                _hit(out, f.src, "DuplicateStageName",
                     f'Duplicate stage name "{f.stage_name}", stage names should be unique')
            seen.add(f.stage_name)
            if f.stage_name in ("scratch", "context"):
                _hit(out, f.src, "ReservedStageName",
                     f'Stage name should not use the same name as reserved stage "{f.stage_name}"')
            kw, as_kw = f.src.keyword, f.as_keyword
            if (kw.isupper() and not as_kw.isupper()) or (kw.islower() and not as_kw.islower()):
                _hit(out, f.src, "FromAsCasing", f"'{as_kw}' and '{kw}' keywords' casing do not match")
        if f.platform:
            if f.platform in ("$TARGETPLATFORM", "${TARGETPLATFORM}"):
                _hit(out, f.src, "RedundantTargetPlatform", "Setting platform to predefined "
                     f"{f.platform} in FROM is redundant as this is the default behavior")
            elif "$" not in f.platform:
                arch = f.platform.split("/")[1] if "/" in f.platform else f.platform
                if arch not in f.stage_name:
                    _hit(out, f.src, "FromPlatformFlagConstDisallowed",
                         f'FROM --platform flag should not use constant value "{f.platform}"')
        counts: dict[str, list[ins.Instruction]] = {}
        absolute_workdir = False
        for inst in stage.commands:
            if isinstance(inst, ins.Cmd | ins.Entrypoint | ins.Healthcheck):
                counts.setdefault(inst.name, []).append(inst)
            if isinstance(inst, ins.Cmd | ins.Entrypoint) and inst.command.shell_form:
                _hit(out, inst.src, "JSONArgsRecommended", f"JSON arguments recommended for {inst.name} to "
                     "prevent unintended behavior related to OS signals")
            if isinstance(inst, ins.Workdir):
                if inst.path.startswith(("/", "$")):
                    absolute_workdir = True
                elif not absolute_workdir:
                    _hit(out, inst.src, "WorkdirRelativePath",
                         f'Relative workdir "{inst.path}" can have unexpected results if the base image changes')
        for name, items in counts.items():
            for inst in items[:-1]:
                _hit(out, inst.src, "MultipleInstructionsDisallowed", f"Multiple {name} instructions should not "
                     "be used in the same stage because only the last one will be used")


def _instruction_rules(df: ins.Dockerfile, out: list[Finding]) -> None:
    upper = sum(1 for i in df.instructions if i.src.keyword.isupper())
    lower = sum(1 for i in df.instructions if i.src.keyword.islower())
    majority = "uppercase" if upper >= lower else "lowercase"
    for inst in df.instructions:
        kw = inst.src.keyword
        if (majority == "uppercase" and not kw.isupper()) or (majority == "lowercase" and not kw.islower()):
            _hit(out, inst.src, "ConsistentInstructionCasing",
                 f"Command '{kw}' should match the case of the command majority ({majority})")
        if isinstance(inst, ins.Maintainer):
            _hit(out, inst.src, "MaintainerDeprecated", "Maintainer instruction is deprecated in favor of using label")
        if isinstance(inst, ins.Env | ins.Label) and inst.legacy:
            _hit(out, inst.src, "LegacyKeyValueFormat",
                 f'"{inst.name} key=value" should be used instead of legacy "{inst.name} key value" format')
        names: list[str] = []
        if isinstance(inst, ins.Arg):
            names = [d.name for d in inst.args]
            for d in inst.args:
                if d.name in PLATFORM_ARGS and d.default is not None:
                    _hit(out, inst.src, "PinnedPlatformArg",
                         f"ARG {d.name}={d.default} gives every platform the value {d.default!r}; declare "
                         f"'ARG {d.name}' without a value to get each platform's own value")
        elif isinstance(inst, ins.Env):
            names = [p.key for p in inst.pairs]
        for name in names:
            if _SECRET_RE.search(name) and not _PUBLIC_RE.search(name):
                _hit(out, inst.src, "SecretsUsedInArgOrEnv",
                     f'Do not use ARG or ENV instructions for sensitive data ({inst.name} "{name}")')


def _emulation_rule(plan: BuildPlan, out: list[Finding]) -> None:
    from polyarch import ops

    flagged: set[int] = set()
    for p in plan.platforms:
        for stage in p.stages:
            for step in stage.steps:
                v = step.vertex
                if not isinstance(v, ops.Exec) or not v.emulated or step.line in flagged:
                    continue
                m = _COMPILER_RE.search(" ".join(v.args[2:] if len(v.args) > 2 else v.args))
                if not m:
                    continue
                flagged.add(step.line)
                src = ins.Source(plan.dockerfile.filename, step.line, step.line, "RUN", step.instruction)
                _hit(out, src, "EmulatedCompiler",
                     f"'{m.group(1)}' runs under emulation for {v.platform} in stage '{stage.name}'; build on the "
                     "native platform and cross-compile instead: FROM --platform=$BUILDPLATFORM …, "
                     "ARG TARGETOS TARGETARCH, and pass them to the compiler (e.g. GOOS=$TARGETOS "
                     "GOARCH=$TARGETARCH)")


def run_checks(plan: BuildPlan, *, build_args: Mapping[str, str] | None = None) -> CheckReport:
    """Every rule over a planned build; findings sorted by line, skipped rules dropped."""
    df = plan.dockerfile
    config = parse_check_config(df.directives.check)
    override = (build_args or {}).get("BUILDKIT_DOCKERFILE_CHECK")
    if override:
        config = parse_check_config(override)
    out: list[Finding] = list(plan.findings)
    _stage_rules(df, out)
    _instruction_rules(df, out)
    _emulation_rule(plan, out)
    for line in df.empty_continuations:
        src = ins.Source(df.filename, line, line, "", "")
        _hit(out, src, "NoEmptyContinuation", "Empty continuation line")
    if config.skip_all:
        out = []
    kept = sorted({(f.start_line, f.rule, f.message): f for f in out if f.rule not in config.skip}.values())
    return CheckReport(tuple(kept), config)


def format_report(report: CheckReport, source_lines: tuple[str, ...]) -> str:
    """buildx's ``--check`` output: a summary, then per warning the rule, URL, message and source excerpt."""
    n = len(report.findings)
    if not n:
        return "Check complete, no warnings found.\n"
    lines = [f"Check complete, {n} warning{'s' if n != 1 else ''} {'have' if n != 1 else 'has'} been found!", ""]
    for f in report.findings:
        level = "ERROR" if report.config.error else "WARNING"
        lines.append(f"{level}: {f.rule}" + (f" - {f.url}" if f.url else ""))
        lines.append(f.message)
        where = f"{f.filename}:{f.start_line}" + (f"-{f.end_line}" if f.end_line != f.start_line else "")
        lines.append(where)
        lines.append("-" * 20)
        first, last = max(1, f.start_line - 2), min(len(source_lines), f.end_line + 2)
        for no in range(first, last + 1):
            mark = ">>>" if f.start_line <= no <= f.end_line else "   "
            lines.append(f"{no:>4} | {mark} {source_lines[no - 1]}".rstrip())
        lines.append("-" * 20)
        lines.append("")
    if report.config.error:
        rules = sorted({f.rule for f in report.findings})
        lines.append(f"ERROR: lint violation found for rules: {', '.join(rules)}")
    return "\n".join(lines) + "\n"
