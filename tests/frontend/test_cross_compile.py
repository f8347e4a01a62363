"""The cross-compile pattern vs. the emulated builder, planned for linux/amd64 + linux/arm64 on an amd64 host."""

from __future__ import annotations

from polyarch import ops
from polyarch.frontend.convert.plan import BuildPlan, plan_build
from polyarch.frontend.reports.call import call
from polyarch.frontend.reports.checks import run_checks
from tests.frontend.fakes import AMD64, ARM64, is_native, resolve_image

CROSS = """\
# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM golang:1.22 AS builder
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS TARGETARCH
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH CGO_ENABLED=0 go build -o /out/app .

FROM alpine:3.20
COPY --from=builder /out/app /usr/local/bin/app
ENTRYPOINT ["app"]
"""
EMULATED = CROSS.replace("FROM --platform=$BUILDPLATFORM golang:1.22", "FROM golang:1.22")


def _plan(text: str) -> BuildPlan:
    return plan_build(text, platforms=[AMD64, ARM64], build_platform=AMD64, is_native=is_native,
                      resolve_image=resolve_image)


def _stage(plan: BuildPlan, platform_index: int, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in plan.platforms[platform_index].stages if s.name == name)


def _execs(stage) -> list[ops.Exec]:  # type: ignore[no-untyped-def]
    return [st.vertex for st in stage.steps if isinstance(st.vertex, ops.Exec)]


def test_builder_runs_natively_once_per_target() -> None:
    plan = _plan(CROSS)
    amd_builder, arm_builder = _stage(plan, 0, "builder"), _stage(plan, 1, "builder")
    for stage in (amd_builder, arm_builder):
        assert stage.platform == AMD64
        assert all(e.platform == AMD64 and not e.emulated for e in _execs(stage))
    # steps before ARG TARGETOS/TARGETARCH are the same vertices for both targets: planned once, shared
    shared = plan.shared()
    download_amd, build_amd = _execs(amd_builder)
    download_arm, build_arm = _execs(arm_builder)
    assert download_amd.digest == download_arm.digest and download_amd.digest in shared
    # the compile step gets the target's GOOS/GOARCH: one per target, still native
    assert build_amd.digest != build_arm.digest
    assert "TARGETARCH=amd64" in build_amd.env and "TARGETARCH=arm64" in build_arm.env
    assert build_arm.args == ("/bin/sh", "-c", "GOOS=$TARGETOS GOARCH=$TARGETARCH CGO_ENABLED=0 go build -o "
                              "/out/app .")


def test_final_stage_per_target_platform() -> None:
    plan = _plan(CROSS)
    for i, platform in enumerate((AMD64, ARM64)):
        p = plan.platforms[i]
        assert p.target.name == "stage-1" and p.target.platform == platform
        assert isinstance(p.root, ops.ImageSource) and p.root.platform == platform
        assert (p.image.architecture, p.image.os) == (platform.architecture, platform.os)
        assert p.image.config.entrypoint == ("app",)
        copy = p.layers[-1]
        assert isinstance(copy, ops.Copy) and copy.paths == ("/out/app",)
        assert not copy.platform_independent  # the binary differs per target
    assert not any(isinstance(v, ops.Exec) and v.emulated for v in plan.vertices())
    text = call("plan", CROSS, platforms=[AMD64, ARM64], build_platform=AMD64, is_native=is_native,
                resolve_image=resolve_image).text
    assert "emulated" not in text.split("vertices")[0]
    assert "0 emulated" in text


def test_context_copies_are_platform_independent_and_shared() -> None:
    plan = _plan(CROSS)
    copies = [st.vertex for st in _stage(plan, 0, "builder").steps if isinstance(st.vertex, ops.Copy)]
    assert copies and all(c.platform_independent for c in copies)
    assert all(c.digest in plan.shared() for c in copies)


def test_without_platform_flag_arm64_builder_is_emulated() -> None:
    plan = _plan(EMULATED)
    amd_build = _execs(_stage(plan, 0, "builder"))[-1]
    arm_build = _execs(_stage(plan, 1, "builder"))[-1]
    assert not amd_build.emulated and amd_build.platform == AMD64
    assert arm_build.emulated and arm_build.platform == ARM64
    text = call("plan", EMULATED, platforms=[AMD64, ARM64], build_platform=AMD64, is_native=is_native,
                resolve_image=resolve_image).text
    arm_section = text.split("\nlinux/arm64\n", 1)[1]
    assert "emulated" in arm_section.split("\n\n")[0]


def test_check_suggests_cross_compile_pattern() -> None:
    report = run_checks(_plan(EMULATED))
    hits = [f for f in report.findings if f.rule == "EmulatedCompiler"]
    assert len(hits) == 1
    assert hits[0].start_line == 8
    assert "go build" in hits[0].message and "linux/arm64" in hits[0].message
    assert "--platform=$BUILDPLATFORM" in hits[0].message
    assert not [f for f in run_checks(_plan(CROSS)).findings if f.rule == "EmulatedCompiler"]
