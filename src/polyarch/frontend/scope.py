"""Build-time names: the eight automatic platform args, build args exempt from the "unused" warning, and the
bookkeeping of which ARGs a build declares and uses (for ``--call=outline`` and the unused-arg warning)."""

from __future__ import annotations

from dataclasses import dataclass, field

from polyarch.errors import SourceSpan
from polyarch.frontend.dockerfile.instructions import Dockerfile, Source
from polyarch.platform import Platform

__all__ = [
    "BUILD_ARGS", "BUILTIN_ARGS", "PLATFORM_ARGS", "TARGET_ARGS", "ArgInfo", "Capture", "describe",
    "platform_args", "source_span",
]

TARGET_ARGS = frozenset({"TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"})
BUILD_ARGS = frozenset({"BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT"})
PLATFORM_ARGS = TARGET_ARGS | BUILD_ARGS
BUILTIN_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy",
    "ALL_PROXY", "all_proxy", "SOURCE_DATE_EPOCH",
})


def platform_args(target: Platform, build: Platform) -> dict[str, str]:
    return {
        "TARGETPLATFORM": str(target), "TARGETOS": target.os, "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant,
        "BUILDPLATFORM": str(build), "BUILDOS": build.os, "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant,
    }


def describe(comments: tuple[str, ...], name: str) -> str:
    """BuildKit's description comments: the line ``# <name> <description>`` right above a definition."""
    for line in comments:
        if line.startswith(name + " "):
            return line[len(name) + 1:].strip()
    return ""


def source_span(df: Dockerfile, src: Source, needle: str = "") -> SourceSpan:
    """A span inside ``src``'s lines: the first occurrence of ``needle``, else the keyword."""
    lines = df.source_lines
    if needle:
        for no in range(src.start_line, min(src.end_line, len(lines)) + 1):
            col = lines[no - 1].find(needle)
            if col >= 0:
                return SourceSpan(df.filename, no, col + 1, len(needle), lines[no - 1])
    text = lines[src.start_line - 1] if 0 < src.start_line <= len(lines) else ""
    col = max(text.find(src.keyword), 0)
    return SourceSpan(df.filename, src.start_line, col + 1, len(src.keyword), text)


@dataclass(slots=True)
class ArgInfo:
    name: str
    value: str | None
    description: str
    line: int


@dataclass(slots=True)
class Capture:
    """What a plan learns on the way: declared and used ARGs, secrets and SSH ids (first platform wins)."""

    args: dict[str, ArgInfo] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    consumed: set[str] = field(default_factory=set)
    secrets: dict[str, tuple[bool, int]] = field(default_factory=dict)
    ssh: dict[str, tuple[bool, int]] = field(default_factory=dict)

    def declare(self, name: str, value: str | None, comments: tuple[str, ...], line: int) -> None:
        self.consumed.add(name)
        if name not in self.args:
            self.args[name] = ArgInfo(name, value, describe(comments, name), line)
