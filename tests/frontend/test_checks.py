"""Build checks: one Dockerfile per rule, the check directive, and the buildx-style report."""

from __future__ import annotations

import pytest

from polyarch.frontend.convert.plan import plan_build
from polyarch.frontend.reports.checks import CheckReport, format_report, parse_check_config, run_checks
from tests.frontend.fakes import AMD64, ARM64, is_native, resolve_image


def _check(text: str, **kw: object) -> CheckReport:
    plan = plan_build(text, platforms=[AMD64, ARM64], build_platform=AMD64, is_native=is_native,
                      resolve_image=resolve_image, strict=False, **kw)  # type: ignore[arg-type]
    return run_checks(plan)


RULES = [
    ("StageNameCasing", "FROM alpine AS Builder\n", "Stage name 'Builder' should be lowercase", 1),
    ("FromAsCasing", "FROM alpine as builder\n", "'as' and 'FROM' keywords' casing do not match", 1),
    ("JSONArgsRecommended", "FROM alpine\nCMD echo hi\n",
     "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals", 2),
    ("UndefinedVar", "FROM alpine\nARG VERSION=1\nENV V=$VERSON\n",
     "Usage of undefined variable '$VERSON' (did you mean $VERSION?)", 3),
    ("UndefinedArgInFrom", "ARG VERSION=3\nFROM alpine:$VERSON\n",
     "FROM argument 'VERSON' is not declared (did you mean VERSION?)", 2),
    ("RedundantTargetPlatform", "FROM --platform=$TARGETPLATFORM alpine\n",
     "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior", 1),
    ("FromPlatformFlagConstDisallowed", "FROM --platform=linux/amd64 alpine\n",
     'FROM --platform flag should not use constant value "linux/amd64"', 1),
    ("SecretsUsedInArgOrEnv", "FROM alpine\nARG GITHUB_TOKEN\n",
     'Do not use ARG or ENV instructions for sensitive data (ARG "GITHUB_TOKEN")', 2),
    ("DuplicateStageName", "FROM alpine AS a\nFROM alpine AS a\n",
     'Duplicate stage name "a", stage names should be unique', 2),
    ("ReservedStageName", "FROM alpine AS scratch\n",
     'Stage name should not use the same name as reserved stage "scratch"', 1),
    ("MultipleInstructionsDisallowed", 'FROM alpine\nCMD ["a"]\nCMD ["b"]\n',
     "Multiple CMD instructions should not be used in the same stage because only the last one will be used", 2),
    ("LegacyKeyValueFormat", "FROM alpine\nENV A b\n",
     '"ENV key=value" should be used instead of legacy "ENV key value" format', 2),
    ("WorkdirRelativePath", "FROM alpine\nWORKDIR app\n",
     'Relative workdir "app" can have unexpected results if the base image changes', 2),
    ("ConsistentInstructionCasing", "FROM alpine\nRUN a\nrun b\n",
     "Command 'run' should match the case of the command majority (uppercase)", 3),
    ("MaintainerDeprecated", "FROM alpine\nMAINTAINER me\n",
     "Maintainer instruction is deprecated in favor of using label", 2),
    ("InvalidDefaultArgInFrom", "ARG TAG\nFROM alpine:$TAG\n",
     "Default value for ARG alpine:$TAG results in empty or invalid base image name", 2),
    ("NoEmptyContinuation", "FROM alpine\nRUN a \\\n\n  b\n", "Empty continuation line", 3),
    ("PinnedPlatformArg", "FROM alpine\nARG TARGETARCH=amd64\n",
     "ARG TARGETARCH=amd64 gives every platform the value 'amd64'", 2),
    ("EmulatedCompiler", "FROM rust:1\nRUN cargo build --release\n", "'cargo build' runs under emulation", 2),
]


@pytest.mark.parametrize(("rule", "text", "message", "line"), RULES)
def test_rule(rule: str, text: str, message: str, line: int) -> None:
    hits = [f for f in _check(text).findings if f.rule == rule]
    assert hits, f"{rule} did not fire"
    assert message in hits[0].message and hits[0].start_line == line


def test_clean_dockerfile_has_no_findings() -> None:
    text = ('FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nWORKDIR /src\nARG TARGETOS TARGETARCH\n'
            'RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /app\nFROM alpine\n'
            'COPY --from=build /app /app\nENTRYPOINT ["/app"]\n')
    report = _check(text)
    assert report.findings == () and report.exit_code == 0
    assert format_report(report, ()) == "Check complete, no warnings found.\n"


def test_no_false_positives() -> None:
    text = ("FROM alpine AS base\nARG PUBLIC_KEY\nENV MONKEY=1 KEYBOARD=2\nARG V\nENV X=${V:-dflt}\n"
            "WORKDIR /abs\nWORKDIR rel\nFROM --platform=linux/arm64 alpine AS build-arm64\n")
    rules = {f.rule for f in _check(text).findings}
    assert not rules & {"SecretsUsedInArgOrEnv", "UndefinedVar", "WorkdirRelativePath",
                        "FromPlatformFlagConstDisallowed"}


def test_check_directive_skip_and_error() -> None:
    text = "# check=skip=JSONArgsRecommended;error=true\nFROM alpine as b\nCMD echo\n"
    report = _check(text)
    assert [f.rule for f in report.findings] == ["FromAsCasing"]
    assert report.exit_code == 1
    out = format_report(report, tuple(text.splitlines()))
    assert out.startswith("Check complete, 1 warning has been found!\n")
    assert "ERROR: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/" in out
    assert "   2 | >>> FROM alpine as b" in out
    assert "ERROR: lint violation found for rules: FromAsCasing" in out
    assert _check("# check=skip=all\nFROM alpine as b\n").findings == ()


def test_parse_check_config() -> None:
    cfg = parse_check_config(" skip = A,B ; error = TRUE ; experimental=all")
    assert cfg.skip == {"A", "B"} and cfg.error and not cfg.skip_all


def test_warning_report_without_error_exits_zero() -> None:
    report = _check("FROM alpine as b\n")
    assert report.exit_code == 0
    assert "WARNING: FromAsCasing" in format_report(report, ("FROM alpine as b",))
