"""Benchmark (not a test): parse and plan a generated 1,000-line Dockerfile with 30 stages for 3 platforms.

Run: ``python bench/bench_frontend.py``. Target: under 100 ms for parse + plan.
"""

from __future__ import annotations

import statistics
import time

from polyarch.frontend.convert.plan import plan_build
from polyarch.frontend.dockerfile.parse import parse_dockerfile
from polyarch.platform import Platform

PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm64"), Platform("linux", "arm", "v7"))
STAGES = 30
LINES = 1000


def generate(stages: int = STAGES, lines: int = LINES) -> str:
    """A realistic mix: global ARGs, BUILDPLATFORM builders and target stages, RUN with mounts, COPY --from,
    ENV/LABEL/WORKDIR/ARG with expansions, a few heredocs."""
    out = ["# syntax=docker/dockerfile:1", "ARG BASE=alpine", "ARG VERSION=3.20", "ARG GO_VERSION=1.22"]
    per_stage = (lines - len(out)) // stages
    for s in range(stages):
        builder = s % 3 == 0
        body: list[str] = []
        if builder:
            body.append(f"FROM --platform=$BUILDPLATFORM golang:${{GO_VERSION}} AS stage{s}")
            body.append("ARG TARGETOS TARGETARCH")
        elif s:
            body.append(f"FROM stage{s - 1} AS stage{s}")
        else:
            body.append(f"FROM ${{BASE}}:${{VERSION}} AS stage{s}")
        body.append(f"WORKDIR /src/stage{s}")
        i = 0
        while len(body) < per_stage - 3:
            kind = i % 8
            if kind == 0:
                body.append(f"ENV STAGE{s}_VAR{i}=value-{i} PATH=/opt/s{s}/bin:$PATH")
            elif kind == 1:
                body.append(f"RUN --mount=type=cache,target=/root/.cache/s{s} echo step {i} && \\")
                body.append(f"    test -n \"$STAGE{s}_VAR{i - 1}\"")
            elif kind == 2:
                body.append(f"COPY src/stage{s}/file{i}.txt ./file{i}.txt")
            elif kind == 3:
                body.append(f"LABEL org.example.stage{s}.step{i}=\"${{STAGE{s}_VAR{i - 3}:-none}}\"")
            elif kind == 4:
                body.append(f"ARG OPT{i}=default-{i}")
            elif kind == 5 and s > 0:
                body.append(f"COPY --from=stage{s - 1} /src/stage{s - 1}/ /deps/stage{s - 1}/")
            elif kind == 6:
                body.append("RUN <<EOF")
                body.append(f"echo heredoc {s} {i}")
                body.append("EOF")
            else:
                body.append(f"RUN GOOS=$TARGETOS GOARCH=$TARGETARCH echo build {i}" if builder
                            else f"RUN echo plain {i} > /tmp/{i}")
            i += 1
        body.append(f"USER {1000 + s}")
        body.append('CMD ["/bin/sh"]')
        body.append("")
        out += body
    out = out[:lines]
    out += ["# padding"] * (lines - len(out))
    return "\n".join(out) + "\n"


def main() -> None:
    text = generate()
    n_lines = text.count("\n")
    df = parse_dockerfile(text)
    assert len(df.stages) == STAGES, len(df.stages)
    build = PLATFORMS[0]
    times: list[float] = []
    for _ in range(15):
        t0 = time.perf_counter()
        df = parse_dockerfile(text)
        plan = plan_build(df, platforms=PLATFORMS, build_platform=build, is_native=lambda p: p == build)
        times.append((time.perf_counter() - t0) * 1000)
    vertices = len(plan.vertices())
    shared = len(plan.shared())
    print(f"frontend: {n_lines} lines, {len(df.stages)} stages, {len(PLATFORMS)} platforms -> {vertices} vertices "
          f"({shared} shared)")
    print(f"parse+plan: median {statistics.median(times):.1f} ms, best {min(times):.1f} ms (target < 100 ms)")


if __name__ == "__main__":
    main()
