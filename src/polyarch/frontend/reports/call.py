"""``polyarch build --call outline|targets|plan|check``: text reports over a parsed and planned Dockerfile.

``outline`` and ``targets`` print like buildx; ``plan`` is polyarch's own: per target platform, every step of
every converted stage, where it runs (native or emulated) and which vertices are shared between platforms;
``check`` runs the build checks (``polyarch.frontend.reports.checks``; a plan error is reported after the
warnings found so far). With ``fmt="json"`` every call returns one JSON document instead: BuildKit's subrequest
shapes for outline, targets and check (``polyarch.frontend.reports.subrequests``), polyarch's plan JSON for plan.
Pure: text in, text out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyarch import ops
from polyarch.errors import ParseError, UsageError
from polyarch.frontend.convert.plan import BuildPlan, plan_build, plan_to_json
from polyarch.frontend.convert.state import ResolveImage
from polyarch.frontend.dockerfile.parse import parse_dockerfile
from polyarch.frontend.reports.checks import format_report, run_checks
from polyarch.frontend.reports.subrequests import lint_doc, outline_doc, targets_doc
from polyarch.platform import Platform

__all__ = ["CALLS", "CallResult", "call", "run_call", "tabulate"]

CALLS = ("outline", "targets", "plan", "check")


@dataclass(frozen=True, slots=True)
class CallResult:
    text: str
    exit_code: int = 0


def tabulate(rows: Sequence[Sequence[str]], padding: int = 3) -> list[str]:
    """Go tabwriter-style columns (the last column is not padded); trailing blanks stripped."""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    out = []
    for r in rows:
        cells = [c.ljust(widths[i] + padding) if i < len(r) - 1 else c for i, c in enumerate(r)]
        out.append("".join(cells).rstrip())
    return out


def _outline(doc: dict[str, Any]) -> str:
    """BuildKit's outline text (as buildx prints it) from an ``outline_doc``."""
    lines: list[str] = []
    if doc.get("name") or doc.get("description"):
        head = [["TARGET:", doc.get("name") or "(default)"]]
        if doc.get("description"):
            head.append(["DESCRIPTION:", doc["description"]])
        lines += [*tabulate(head, padding=1), ""]
    if doc.get("args"):
        lines += [*tabulate([["BUILD ARG", "VALUE", "DESCRIPTION"],
                             *([a["name"], a.get("value", ""), a.get("description", "")] for a in doc["args"])]),
                  ""]
    for key, title in (("secrets", "SECRET"), ("ssh", "SSH")):
        if doc.get(key):
            lines += [*tabulate([[title, "REQUIRED", "DESCRIPTION"],
                                 *([e["name"], "true" if e.get("required") else "", ""] for e in doc[key])]), ""]
    return "\n".join(lines)


def _targets(doc: dict[str, Any]) -> str:
    """BuildKit's targets text from a ``targets_doc``: every stage, unnamed ones with an empty name."""
    rows = [["TARGET", "DESCRIPTION"]]
    for t in doc["targets"]:
        name = t.get("name", "")
        if t.get("default"):
            name = f"{name} (default)" if name else "(default)"
        rows.append([name, t.get("description", "")])
    return "\n".join(tabulate(rows, padding=3)) + "\n"


def _mode(v: ops.Vertex | None) -> str:
    if v is None:
        return "config"
    if isinstance(v, ops.Exec):
        return "emulated" if v.emulated else "native"
    if isinstance(v, ops.ImageSource | ops.Scratch):
        return "source"
    return "file"


def _plan_text(plan: BuildPlan) -> str:
    shared = plan.shared()
    n = len(plan.platforms)
    lines = [f"target: {plan.target}    build platform: {plan.build_platform}    "
             f"platforms: {', '.join(str(p.platform) for p in plan.platforms)}", ""]
    for p in plan.platforms:
        lines.append(f"{p.platform}")
        rows = [["  STEP", "RUNS AS", "MODE", "DIGEST", "SHARED"]]
        for stage in p.stages:
            for step in stage.steps:
                v = step.vertex
                label = f"  [{stage.name} {step.number}/{len(stage.steps)}] {_short(step.instruction)}"
                runs = str(v.platform) if isinstance(v, ops.Exec | ops.ImageSource) else \
                    ("any" if getattr(v, "platform_independent", False) else str(stage.platform))
                if v is None:
                    runs = ""
                share = ""
                if v is not None and v.digest in shared:
                    share = "all platforms" if n > 1 and _used_by_all(plan, v.digest) else "shared"
                rows.append([label, runs, _mode(v), v.digest[7:19] if v is not None else "", share])
        lines += [*tabulate(rows, padding=2), ""]
    every = plan.vertices()
    emulated = sum(1 for v in every if isinstance(v, ops.Exec) and v.emulated)
    n_exec = sum(1 for v in every if isinstance(v, ops.Exec))
    lines.append(f"{len(every)} vertices ({len(shared)} shared between platforms); "
                 f"{n_exec} RUN steps, {emulated} emulated")
    if plan.unused_build_args:
        lines.append(f"[Warning] One or more build-args [{' '.join(plan.unused_build_args)}] were not consumed")
    return "\n".join(lines) + "\n"


def _used_by_all(plan: BuildPlan, digest: str) -> bool:
    return all(any(v.digest == digest for v in ops.walk([p.result])) for p in plan.platforms)


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def call(
    what: str,
    dockerfile_text: str,
    filename: str = "Dockerfile",
    platforms: Sequence[Platform] = (),
    target: str = "",
    build_args: Mapping[str, str] | None = None,
    *,
    resolve_image: ResolveImage | None = None,
    build_platform: Platform | None = None,
    is_native: Callable[[Platform], bool] | None = None,
    context_excludes: Sequence[str] = (),
    fmt: str = "text",
) -> CallResult:
    """Run one ``--call`` and return its text and exit status.

    :raises UsageError: unknown call or target; :raises ParseError: Dockerfile errors.
    """
    if what not in CALLS:
        raise UsageError(f"unknown --call {what!r}", hint="available: " + ", ".join(CALLS))
    if what == "targets":
        doc = targets_doc(parse_dockerfile(dockerfile_text, filename), dockerfile_text)
        return CallResult(_json(doc) if fmt == "json" else _targets(doc))
    if what == "check":
        return _check(dockerfile_text, filename, platforms, target, build_args, fmt,
                      resolve_image=resolve_image, build_platform=build_platform, is_native=is_native,
                      context_excludes=context_excludes)
    plan = plan_build(dockerfile_text, platforms=platforms, target=target, build_args=build_args,
                      resolve_image=resolve_image, build_platform=build_platform, is_native=is_native,
                      context_excludes=context_excludes, filename=filename)
    if what == "plan":
        if fmt == "json":
            return CallResult(json.dumps(plan_to_json(plan), indent=2, sort_keys=True) + "\n")
        return CallResult(_plan_text(plan))
    outline = outline_doc(plan, dockerfile_text)
    return CallResult(_json(outline) if fmt == "json" else _outline(outline))


def _check(text: str, filename: str, platforms: Sequence[Platform], target: str,
           build_args: Mapping[str, str] | None, fmt: str, *, context_excludes: Sequence[str],
           **plan_options: Any) -> CallResult:
    """``--check``: the report of every enabled rule; when planning fails (BuildKit's ``buildError``) the
    warnings the parsed Dockerfile already shows, then the error (exit 1)."""
    df = parse_dockerfile(text, filename)
    try:
        plan: BuildPlan | None = plan_build(df, platforms=platforms, target=target, build_args=build_args,
                                            context_excludes=context_excludes, filename=filename, strict=False,
                                            **plan_options)
        report = run_checks(plan, build_args=build_args, context_excludes=context_excludes)
    except ParseError as exc:
        report = run_checks(None, build_args=build_args, context_excludes=context_excludes, dockerfile=df,
                            error=exc)
    if fmt == "json":
        err = report.error
        failed = None if err is None else (err.message, err.span.line if isinstance(err, ParseError) and err.span
                                           else 0)
        return CallResult(_json(lint_doc(report.findings, text, filename, failed)), report.exit_code)
    return CallResult(format_report(report, df.source_lines), report.exit_code)


def _json(doc: object) -> str:
    return json.dumps(doc, indent=2) + "\n"


def run_call(
    call_name: str,
    dockerfile_text: str,
    filename: str = "Dockerfile",
    platforms: Sequence[Platform] = (),
    target: str = "",
    build_args: Mapping[str, str] | None = None,
    **options: object,
) -> str:
    """The text of ``call(...)`` (see there for options)."""
    return call(call_name, dockerfile_text, filename, platforms, target, build_args, **options).text  # type: ignore[arg-type]
