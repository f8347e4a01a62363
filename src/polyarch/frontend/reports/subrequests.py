"""BuildKit's subrequest result shapes (``frontend.outline``, ``frontend.targets``, ``frontend.lint`` 1.0.0) as
plain data, for ``--call outline|targets|check --format json`` and for the text reports built from them.

Field names, omitted empty fields (Go's ``omitempty``) and locations (``{"ranges": [{"start": {"line": N},
"end": {"line": M}}]}``; a zero ``sourceIndex`` is omitted) follow BuildKit; ``sources`` carries the Dockerfile
as base64 as BuildKit's ``[][]byte`` does. Pure: values in, dicts out.
"""

from __future__ import annotations

import base64
from typing import Any

from polyarch.frontend.convert.capture import describe
from polyarch.frontend.convert.diagnostics import Finding
from polyarch.frontend.convert.plan import BuildPlan
from polyarch.frontend.dockerfile import instructions as ins

__all__ = ["RULE_DESCRIPTIONS", "lint_doc", "location", "outline_doc", "targets_doc"]

RULE_DESCRIPTIONS = {
    "StageNameCasing": "Stage names should be lowercase",
    "FromAsCasing": "The 'as' keyword should match the case of the 'from' keyword",
    "NoEmptyContinuation": "Empty continuation lines will become errors in a future release",
    "ConsistentInstructionCasing": "All commands within the Dockerfile should use the same casing (either upper "
                                   "or lower)",
    "DuplicateStageName": "Stage names should be unique",
    "ReservedStageName": "Reserved words should not be used as stage names",
    "JSONArgsRecommended": "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related "
                           "to OS signals",
    "MaintainerDeprecated": "The MAINTAINER instruction is deprecated, use a label instead to define an image "
                            "author",
    "UndefinedArgInFrom": "FROM command must use declared ARGs",
    "WorkdirRelativePath": "Relative workdir without an absolute workdir declared within the build can have "
                           "unexpected results if the base image changes",
    "UndefinedVar": "Variables should be defined before their use",
    "MultipleInstructionsDisallowed": "Multiple instructions of the same type should not be used in the same "
                                      "stage",
    "LegacyKeyValueFormat": "Legacy key/value format with whitespace separator should not be used",
    "RedundantTargetPlatform": "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is "
                               "the default behavior",
    "SecretsUsedInArgOrEnv": "Sensitive data should not be used in the ARG or ENV commands",
    "InvalidDefaultArgInFrom": "Default value for global ARG results in an empty or invalid base image name",
    "FromPlatformFlagConstDisallowed": "FROM --platform flag should not use a constant value",
    "CopyIgnoredFile": "Attempting to Copy file that is excluded by .dockerignore",
    "InvalidDefinitionDescription": "Comment for build stage or argument should follow the format: `# <arg/stage "
                                    "name> <description>`. If this is not intended to be a description comment, "
                                    "add an empty line or comment between the instruction and the comment.",
    "ExposeProtoCasing": "Protocol in EXPOSE instruction should be lowercase",
    "ExposeInvalidFormat": "IP address and host-port mapping should not be used in EXPOSE instruction. This will "
                           "become an error in a future release",
    "EmulatedCompiler": "A compiler should run on the build platform and cross-compile (polyarch)",
    "PinnedPlatformArg": "An automatic platform ARG should not get a default value (polyarch)",
}


def location(start: int, end: int | None = None) -> dict[str, Any]:
    """A ``pb.Location`` with one line range (characters are never set by BuildKit's Dockerfile parser)."""
    return {"ranges": [{"start": {"line": start}, "end": {"line": end if end is not None else start}}]}


def _source(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _omit_empty(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v not in ("", None, [], False)}


def outline_doc(plan: BuildPlan, text: str) -> dict[str, Any]:
    """``outline.Outline``: the target's name and description, its ARGs (every ARG its stages declare and the
    global ARGs they read, final values), secrets and ssh ids, each with its location."""
    target = next(s for s in plan.dockerfile.stages if s.display_name == plan.target)
    doc: dict[str, Any] = {"name": target.name, "description": describe(target.comments, target.name)
                           if target.name else ""}
    cap = plan.capture
    if cap is not None and plan.platforms:
        stages = [s.index for s in plan.platforms[0].stages]
        stages.sort(key=lambda i: i != target.index)  # the target's own declarations first
        doc["args"] = [_omit_empty({"name": a.name, "description": a.description, "value": a.value or "",
                                    "location": location(a.line)}) | {"name": a.name}
                       for a in cap.outline_args(stages)]
        for key, known in (("secrets", cap.secrets), ("ssh", cap.ssh)):
            doc[key] = [_omit_empty({"name": k, "required": req, "location": location(line)}) | {"name": k}
                        for k, (req, line) in sorted(known.items(), key=lambda kv: kv[1][1])]
    doc["sources"] = [_source(text)]
    return _omit_empty(doc)


def targets_doc(df: ins.Dockerfile, text: str) -> dict[str, Any]:
    """``targets.List``: every stage (unnamed ones too), the last one the default, with its base and platform
    as written."""
    last = len(df.stages) - 1
    targets = [_omit_empty({"name": s.name, "default": s.index == last,
                            "description": describe(s.comments, s.name) if s.name else "",
                            "base": s.from_.image, "platform": s.from_.platform,
                            "location": location(s.from_.src.start_line, s.from_.src.end_line)})
               for s in df.stages]
    return {"targets": targets, "sources": [_source(text)]}


def lint_doc(findings: tuple[Finding, ...], text: str, filename: str,
             error: tuple[str, int] | None = None) -> dict[str, Any]:
    """``lint.LintResults``: warnings (ruleName, description, url, detail, location), the one source, and the
    ``buildError`` (message, location) when planning failed."""
    warnings = [_omit_empty({"ruleName": f.rule, "description": RULE_DESCRIPTIONS.get(f.rule, ""), "url": f.url,
                             "detail": f.message, "location": location(f.start_line, f.end_line)})
                for f in findings]
    doc: dict[str, Any] = {"warnings": warnings,
                           "sources": [{"filename": filename, "language": "Dockerfile", "data": _source(text)}]}
    if error is not None:
        message, line = error
        doc["buildError"] = {"message": message, "location": location(line) if line else {}}
    return doc
