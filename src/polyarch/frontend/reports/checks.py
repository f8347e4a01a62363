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

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from polyarch.errors import ParseError, PolyarchError
from polyarch.frontend.convert.diagnostics import DOCS_URL, Finding
from polyarch.frontend.convert.plan import BuildPlan
from polyarch.frontend.convert.scope import PLATFORM_ARGS
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.dockerignore import is_excluded, parse_dockerignore

__all__ = ["RULES", "CheckConfig", "CheckReport", "format_report", "parse_check_config", "run_checks"]

RULES = (
    "ConsistentInstructionCasing", "CopyIgnoredFile", "DuplicateStageName", "EmulatedCompiler",
    "ExposeInvalidFormat", "ExposeProtoCasing", "FromAsCasing", "FromPlatformFlagConstDisallowed",
    "InvalidDefaultArgInFrom", "InvalidDefinitionDescription", "JSONArgsRecommended", "LegacyKeyValueFormat",
    "MaintainerDeprecated", "MultipleInstructionsDisallowed", "NoEmptyContinuation", "PinnedPlatformArg",
    "RedundantTargetPlatform", "ReservedStageName", "SecretsUsedInArgOrEnv", "StageNameCasing",
    "UndefinedArgInFrom", "UndefinedVar", "WorkdirRelativePath",
)
EXPERIMENTAL = frozenset({"InvalidDefinitionDescription"})  # only with check=experimental=…
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
    "CopyIgnoredFile": "copy-ignored-file", "ExposeInvalidFormat": "expose-invalid-format",
    "ExposeProtoCasing": "expose-proto-casing", "InvalidDefinitionDescription": "invalid-definition-description",
}
_SECRET_RE = re.compile(r"(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)",
                        re.IGNORECASE)
_PUBLIC_RE = re.compile(r"(?:_|^)(?:public|file|version)(?:_|$)", re.IGNORECASE)
_COMPILER_RE = re.compile(
    r"(?<![\w-])(go (?:build|install|test)|cargo (?:build|install)|rustc|gcc|g\+\+|clang(?:\+\+)?|cc|"
    r"c\+\+|make|cmake|ninja|meson compile|mvn|gradle|dotnet (?:build|publish)|swift build|zig build|ghc|"
    r"cabal build|stack build)(?![\w-])")


@dataclass(frozen=True, slots=True)
class CheckConfig:
    skip: frozenset[str] = frozenset()
    skip_all: bool = False
    error: bool = False
    experimental: frozenset[str] = frozenset()
    experimental_all: bool = False

    def enabled(self, rule: str) -> bool:
        """BuildKit's linter: an experimental rule runs only when named (or ``all``); skip never applies to it."""
        if rule in EXPERIMENTAL:
            return self.experimental_all or rule in self.experimental
        return not self.skip_all and rule not in self.skip

    def merged(self, other: CheckConfig) -> CheckConfig:
        """This config with ``other``'s skips and experiments added (a ``# check=`` comment above an instruction)."""
        return CheckConfig(self.skip | other.skip, self.skip_all or other.skip_all, self.error,
                           self.experimental | other.experimental, self.experimental_all or other.experimental_all)


@dataclass(frozen=True, slots=True)
class CheckReport:
    findings: tuple[Finding, ...]
    config: CheckConfig
    error: PolyarchError | None = None  # the plan failed: the findings are those found before

    @property
    def exit_code(self) -> int:
        return 1 if self.error is not None or (self.config.error and self.findings) else 0


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_check_config(value: str) -> CheckConfig:
    """``skip=A,B;error=true;experimental=C`` (``all`` for every rule) → CheckConfig, as BuildKit's linter reads
    it (``error`` takes Go's booleans).

    :raises ParseError: an unknown option, a part without ``=`` or a bad boolean (BuildKit refuses them too).
    """
    value = value.strip()
    skip: frozenset[str] = frozenset()
    experimental: frozenset[str] = frozenset()
    skip_all = error = experimental_all = False
    if not value:
        return CheckConfig()
    for part in value.split(";", 2):
        key, eq, val = part.partition("=")
        key, val = key.strip(), val.strip()
        if not eq:
            raise ParseError(f"failed to parse check options: invalid check option {part!r}")
        if key in ("skip", "experimental"):
            every = val == "all"
            names = frozenset() if every else frozenset(v.strip() for v in val.split(","))
            if key == "skip":
                skip_all, skip = every, names
            else:
                experimental_all, experimental = every, names
        elif key == "error":
            if val not in _TRUE | _FALSE:
                raise ParseError(f"failed to parse check options: failed to parse check option {part!r}: "
                                 f"invalid syntax {val!r}")
            error = val in _TRUE
        else:
            raise ParseError(f"failed to parse check options: invalid check option {key!r}")
    return CheckConfig(skip, skip_all, error, experimental, experimental_all)


def comment_config(comments: tuple[str, ...]) -> CheckConfig | None:
    """The first ``check=…`` comment above an instruction (BuildKit reads up to the first blank); None if none or
    if it does not parse (BuildKit then ignores it)."""
    for comment in comments:
        m = _CHECK_COMMENT.match(comment)
        if m is None:
            continue
        try:
            return parse_check_config(m.group(1).split(" ", 1)[0])
        except ParseError:
            return None
    return None


_CHECK_COMMENT = re.compile(r"^\s*check\s*=\s*(.*?)\s*$", re.IGNORECASE)


def _hit(out: list[Finding], src: ins.Source, rule: str, message: str) -> None:
    url = "" if rule in _OWN else DOCS_URL + _URLS[rule] + "/"
    out.append(Finding(src.start_line, src.end_line, rule, message, src.filename, url))


def _stage_rules(df: ins.Dockerfile, out: list[Finding]) -> None:
    seen: set[str] = set()
    shell_set: dict[str, bool] = {}  # stage name → a SHELL instruction ran in it or its parents
    for stage in df.stages:
        f = stage.from_
        has_shell = shell_set.get(f.image.lower(), False)
        if f.stage_name:
            _definition_description(out, f.src, "FROM", [f.stage_name], stage.comments)
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
            if isinstance(inst, ins.Shell):
                has_shell = True
            if isinstance(inst, ins.Cmd | ins.Entrypoint) and inst.command.shell_form and not has_shell:
                _hit(out, inst.src, "JSONArgsRecommended", f"JSON arguments recommended for {inst.name} to "
                     "prevent unintended behavior related to OS signals")
            if isinstance(inst, ins.Workdir):
                if inst.path.startswith(("/", "$")):
                    absolute_workdir = True
                elif not absolute_workdir:
                    _hit(out, inst.src, "WorkdirRelativePath",
                         f'Relative workdir "{inst.path}" can have unexpected results if the base image changes')
        if f.stage_name:
            shell_set[f.stage_name] = has_shell
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
        if isinstance(inst, ins.Expose):
            _expose_rules(out, inst)
        if isinstance(inst, ins.Arg):
            names = [d.name for d in inst.args]
            _definition_description(out, inst.src, "ARG", names, inst.comments)
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


def _definition_description(out: list[Finding], src: ins.Source, what: str, names: list[str],
                            comments: tuple[str, ...]) -> None:
    """InvalidDefinitionDescription: the comment right above a named stage or an ARG starts with another word."""
    if not comments or not names or comments[-1].split(" ")[0] in names:
        return
    example = names[0] if len(names) == 1 else "<arg_key>"
    _hit(out, src, "InvalidDefinitionDescription",
         f"Comment for {what} should follow the format: `# {example} <description>`")


def _expose_rules(out: list[Finding], inst: ins.Expose) -> None:
    """ExposeProtoCasing (``80/TCP``) and ExposeInvalidFormat (an IP address or a host port) per port word."""
    for word in inst.ports:
        if "$" in word:
            continue
        port, _, proto = word.rpartition("/") if "/" in word else (word, "", "")
        if proto != proto.lower():
            _hit(out, inst.src, "ExposeProtoCasing",
                 f"Defined protocol '{word}' in EXPOSE instruction should be lowercase")
        if ":" in port:
            _hit(out, inst.src, "ExposeInvalidFormat", "EXPOSE instruction should not define an IP address or "
                 f"host-port mapping, found '{word}'")


def _copy_ignored(df: ins.Dockerfile, out: list[Finding], excludes: Sequence[str]) -> None:
    """CopyIgnoredFile: a COPY/ADD source from the context that ``.dockerignore`` leaves out (BuildKit does not
    judge when a pattern re-includes with ``!``)."""
    patterns = parse_dockerignore("\n".join(excludes))
    if not patterns or any(p.exclusion for p in patterns):
        return
    root_ignored = any(p.pattern in ("*", "**", "**/*") for p in patterns)
    for inst in df.instructions:
        if not isinstance(inst, ins.Copy) or inst.from_ or inst.heredocs:
            continue
        for src in inst.sources:
            if "$" in src or "://" in src or src.startswith(("git@", "<<")):
                continue
            path = posixpath.normpath(src).lstrip("/") or "."
            if path == "." and not root_ignored:
                continue
            if is_excluded(path, patterns):
                what = "Add" if isinstance(inst, ins.Add) else "Copy"
                _hit(out, inst.src, "CopyIgnoredFile",
                     f'Attempting to {what} file "{posixpath.normpath(src)}" that is excluded by .dockerignore')


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


def run_checks(plan: BuildPlan | None, *, build_args: Mapping[str, str] | None = None,
               context_excludes: Sequence[str] = (), dockerfile: ins.Dockerfile | None = None,
               error: PolyarchError | None = None) -> CheckReport:
    """Every enabled rule over a planned build; findings sorted by line. Without a plan (``error``: why planning
    failed) only the rules that read the parsed ``dockerfile`` run, and the report carries the error.

    :raises ParseError: the ``check=`` directive or ``BUILDKIT_DOCKERFILE_CHECK`` does not parse.
    """
    df = plan.dockerfile if plan is not None else dockerfile
    assert df is not None, "run_checks needs a plan or a parsed Dockerfile"
    config = parse_check_config(df.directives.check)
    override = (build_args or {}).get("BUILDKIT_DOCKERFILE_CHECK")
    if override:
        config = parse_check_config(override)
    out: list[Finding] = list(plan.findings) if plan is not None else []
    _stage_rules(df, out)
    _instruction_rules(df, out)
    _copy_ignored(df, out, context_excludes)
    if plan is not None:
        _emulation_rule(plan, out)
    for line in df.empty_continuations:
        src = ins.Source(df.filename, line, line, "", "")
        _hit(out, src, "NoEmptyContinuation", "Empty continuation line")
    local: dict[int, CheckConfig] = {}
    for line, comments in df.comments.items():
        extra = comment_config(comments)
        if extra is not None:
            local[line] = config.merged(extra)
    kept = sorted({(f.start_line, f.rule, f.message): f for f in out
                   if local.get(f.start_line, config).enabled(f.rule)}.values())
    return CheckReport(tuple(kept), config, error)


def format_report(report: CheckReport, source_lines: tuple[str, ...]) -> str:
    """buildx's ``--check`` output: a summary, then per warning the rule, URL, message and source excerpt."""
    n = len(report.findings)
    failed = "" if report.error is None else report.error.render() + "\n"
    if not n:
        return failed or "Check complete, no warnings found.\n"
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
    return "\n".join(lines) + "\n" + failed
