"""Build checks: one Dockerfile per rule, the check directive, and the buildx-style report."""

from __future__ import annotations

import pytest

from polyarch.frontend.convert.plan import plan_build
from polyarch.frontend.reports.checks import CheckReport, format_report, parse_check_config, run_checks
from tests.frontend.fakes import AMD64, ARM64, is_native, resolve_image


def _check(text: str, excludes: tuple[str, ...] = (), **kw: object) -> CheckReport:
    plan = plan_build(text, platforms=[AMD64, ARM64], build_platform=AMD64, is_native=is_native,
                      resolve_image=resolve_image, strict=False, context_excludes=excludes,
                      **kw)  # type: ignore[arg-type]
    return run_checks(plan, context_excludes=excludes)


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
    ("ExposeProtoCasing", "FROM alpine\nEXPOSE 80/TCP\n",
     "Defined protocol '80/TCP' in EXPOSE instruction should be lowercase", 2),
    ("ExposeInvalidFormat", "FROM alpine\nEXPOSE 127.0.0.1:8080:80/tcp\n",
     "EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:8080:80/tcp'", 2),
    ("InvalidDefinitionDescription", "# check=experimental=InvalidDefinitionDescription\n# foo this is\n"
     "FROM alpine AS base\n", "Comment for FROM should follow the format: `# base <description>`", 3),
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


def test_copy_ignored_file() -> None:
    text = "FROM alpine\nCOPY secret.txt /\nADD ./logs/a.log /\nCOPY ok /\nCOPY --from=alpine secret.txt /x\n"
    hits = [(f.start_line, f.message) for f in _check(text, excludes=("secret.txt", "logs")).findings
            if f.rule == "CopyIgnoredFile"]
    assert hits == [(2, 'Attempting to Copy file "secret.txt" that is excluded by .dockerignore'),
                    (3, 'Attempting to Add file "logs/a.log" that is excluded by .dockerignore')]
    # a re-including pattern: BuildKit does not judge
    assert not [f for f in _check(text, excludes=("secret.txt", "!keep")).findings if f.rule == "CopyIgnoredFile"]


def test_check_comment_above_an_instruction_skips_there_only() -> None:
    text = "FROM alpine\n# check=skip=JSONArgsRecommended\nCMD echo a\nENTRYPOINT echo b\n"
    assert [(f.rule, f.start_line) for f in _check(text).findings] == [("JSONArgsRecommended", 4)]


def test_experimental_rule_needs_naming_and_skip_all_keeps_nothing() -> None:
    text = "# foo this is\nFROM alpine AS base\n"
    assert not [f for f in _check(text).findings if f.rule == "InvalidDefinitionDescription"]
    assert [f.rule for f in _check("# check=experimental=all\n" + text).findings] == ["InvalidDefinitionDescription"]


def test_json_args_recommended_respects_a_custom_shell() -> None:
    text = 'FROM alpine AS a\nSHELL ["/bin/bash", "-c"]\nCMD echo a\nFROM a\nENTRYPOINT echo b\nFROM alpine\nCMD x\n'
    assert [f.start_line for f in _check(text).findings if f.rule == "JSONArgsRecommended"] == [7]


def test_secret_names_as_buildkit() -> None:
    text = "FROM alpine\nARG API_KEY_FILE\nENV TOKEN_VERSION=1 PUBLIC_KEY=x AUTH=1 MY_PASSWORD=2\n"
    hits = [f.message for f in _check(text).findings if f.rule == "SecretsUsedInArgOrEnv"]
    assert hits == ['Do not use ARG or ENV instructions for sensitive data (ENV "AUTH")',
                    'Do not use ARG or ENV instructions for sensitive data (ENV "MY_PASSWORD")']


def test_expose_with_host_port_plans_the_container_port() -> None:
    plan = plan_build("FROM alpine\nEXPOSE 127.0.0.1:8080:80/TCP 9000:90\n", platforms=[AMD64],
                      build_platform=AMD64, is_native=is_native, resolve_image=resolve_image)
    assert plan.platforms[0].target.image.config.exposed_ports == ("80/tcp", "90/tcp")


def test_base_image_env_is_known_when_resolved() -> None:
    text = "FROM golang:1.22\nENV A=$GOPATH B=$NOPE\n"
    assert [f.message for f in _check(text).findings if f.rule == "UndefinedVar"] == [
        "Usage of undefined variable '$NOPE'"]


@pytest.mark.parametrize("value", ["skip", "bogus=1", "error=yes"])
def test_bad_check_options_are_refused(value: str) -> None:
    from polyarch.errors import ParseError

    with pytest.raises(ParseError, match="failed to parse check options"):
        parse_check_config(value)
