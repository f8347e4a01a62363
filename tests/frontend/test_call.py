"""``--call outline|targets|plan`` texts, and ``polyarch build --call/--check`` as a user runs it."""

from __future__ import annotations

from pathlib import Path

from polyarch.frontend.reports.call import call, tabulate
from tests.conftest import run_cli
from tests.frontend.fakes import AMD64, ARM64, is_native, resolve_image

DOCKERFILE = """\
# GO_VERSION picks the toolchain
ARG GO_VERSION=1.22
ARG UNUSED_GLOBAL=x

# builder compiles the binary
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS builder
# LDFLAGS extra linker flags
ARG LDFLAGS=-s
RUN --mount=type=secret,id=netrc,required --mount=type=ssh go build -ldflags "$LDFLAGS" -o /app

FROM alpine:3.20 AS test
RUN echo test

# release is the shipped image
FROM alpine:3.20 AS release
COPY --from=builder /app /app
ENTRYPOINT ["/app"]
"""


def test_targets() -> None:
    assert call("targets", DOCKERFILE).text == (
        "TARGET              DESCRIPTION\n"
        "builder             compiles the binary\n"
        "test\n"
        "release (default)   is the shipped image\n")


def test_outline_lists_used_args_secrets_and_ssh() -> None:
    text = call("outline", DOCKERFILE, platforms=[AMD64], build_platform=AMD64, is_native=is_native).text
    assert text.splitlines() == [
        "TARGET:      release",
        "DESCRIPTION: is the shipped image",
        "",
        "BUILD ARG    VALUE   DESCRIPTION",
        "GO_VERSION   1.22    picks the toolchain",
        "LDFLAGS      -s      extra linker flags",
        "",
        "SECRET   REQUIRED   DESCRIPTION",
        "netrc    true",
        "",
        "SSH       REQUIRED   DESCRIPTION",
        "default",
    ]


def test_plan_text_marks_shared_and_emulated() -> None:
    text = call("plan", DOCKERFILE, platforms=[AMD64, ARM64], build_platform=AMD64, is_native=is_native,
                resolve_image=resolve_image, build_args={"NOPE": "1"}).text
    lines = text.splitlines()
    assert lines[0] == "target: release    build platform: linux/amd64    platforms: linux/amd64, linux/arm64"
    builder_run = [ln for ln in lines if "[builder 3/3] RUN" in ln]
    assert len(builder_run) == 2 and all("native" in ln and "all platforms" in ln for ln in builder_run)
    assert "[test" not in text  # unreachable from the target: not planned
    assert "[Warning] One or more build-args [NOPE] were not consumed" in text


def test_tabulate() -> None:
    assert tabulate([["a", "bb", "c"], ["ccc", "d", ""]]) == ["a     bb   c", "ccc   d"]


def test_cli(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM alpine as x\nCOPY . /src\n")
    (tmp_path / ".dockerignore").write_text("*.log\n")
    root = tmp_path / "store"
    result = run_cli("build", "--call", "targets", str(tmp_path), root=root)
    assert "x (default)" in result.stdout
    result = run_cli("build", "--check", str(tmp_path), root=root)
    assert "FromAsCasing" in result.stdout + result.stderr
    result = run_cli("build", "--call", "plan", "--format", "json", "--platform", "linux/amd64", str(tmp_path),
                     root=root)
    assert '"*.log"' in result.stdout  # .dockerignore reached the context vertex
    (tmp_path / "Dockerfile").write_text("# check=error=true\nFROM alpine as x\n")
    result = run_cli("build", "--check", str(tmp_path), root=root, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr


OUTLINE_ALL = """\
ARG BASE=alpine
ARG TAG=3.20
ARG V=1
ARG V=${V}.2
ARG UNUSED=x
FROM ${BASE}:${TAG} AS base
# FLAVOR which build
ARG FLAVOR=slim
ARG NEVER_USED
ARG FLAVOR=full
ARG V
FROM base AS final
ARG EXTRA=e
FROM alpine:3.20
RUN true
"""


def test_outline_lists_every_stage_arg_with_its_final_value() -> None:
    """BuildKit's outline: all ARGs of the target's stages (used or not; the last declaration's value and line),
    the global ARGs a FROM or a re-declaration reads, none of an unrelated stage's."""
    import json

    doc = json.loads(call("outline", OUTLINE_ALL, platforms=[AMD64], build_platform=AMD64, is_native=is_native,
                          target="final", fmt="json").text)
    assert [(a["name"], a.get("value", "")) for a in doc["args"]] == [
        ("BASE", "alpine"), ("TAG", "3.20"), ("V", "1.2"), ("NEVER_USED", ""), ("FLAVOR", "full"), ("EXTRA", "e")]
    assert doc["name"] == "final" and "description" not in doc
    assert doc["args"][0]["location"] == {"ranges": [{"start": {"line": 1}, "end": {"line": 1}}]}
    assert set(doc) == {"name", "args", "sources"}  # omitempty: no secrets/ssh keys


def test_outline_of_an_unnamed_target_has_no_target_header() -> None:
    text = call("outline", "FROM alpine\nARG X=1\nRUN echo $X\n", platforms=[AMD64], build_platform=AMD64,
                is_native=is_native).text
    assert text.splitlines() == ["BUILD ARG   VALUE   DESCRIPTION", "X           1"]


def test_targets_lists_unnamed_stages_and_json_shape() -> None:
    import json

    df = "FROM alpine AS a\nFROM --platform=$BUILDPLATFORM golang:1.22\nFROM a\n"
    assert call("targets", df).text.splitlines() == ["TARGET      DESCRIPTION", "a", "", "(default)"]
    doc = json.loads(call("targets", df, fmt="json").text)
    assert doc["targets"][1] == {"base": "golang:1.22", "platform": "$BUILDPLATFORM",
                                 "location": {"ranges": [{"start": {"line": 2}, "end": {"line": 2}}]}}
    assert doc["targets"][2]["default"] is True and doc["targets"][0]["name"] == "a"
    assert len(doc["sources"]) == 1


def test_check_json_is_buildkits_lint_result_and_reports_plan_errors() -> None:
    import base64
    import json

    df = "FROM alpine as x\nCOPY --from=nope /a /a\nRUN --mount=type=bogus true\n"
    result = call("check", df, platforms=[AMD64], build_platform=AMD64, is_native=is_native, fmt="json")
    doc = json.loads(result.text)
    assert result.exit_code == 1
    assert doc["warnings"][0]["ruleName"] == "FromAsCasing"
    assert doc["warnings"][0]["description"] == "The 'as' keyword should match the case of the 'from' keyword"
    assert doc["warnings"][0]["location"]["ranges"][0]["start"] == {"line": 1}
    assert base64.b64decode(doc["sources"][0]["data"]).decode() == df
    assert doc["buildError"]["location"]["ranges"][0]["start"]["line"] == 3
    text = call("check", df, platforms=[AMD64], build_platform=AMD64, is_native=is_native).text
    assert "WARNING: FromAsCasing" in text and "error:" in text
