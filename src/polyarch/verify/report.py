"""What verify found, as values, and its two renderings: one line per problem, or JSON with the same facts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "Issue", "PlatformResult", "VerifyReport", "render_json", "render_text"]

# Every kind of issue, with what it means (the JSON ``kind`` field).
KINDS = {
    "elf-mismatch": "an ELF file whose machine, class, byte order or ARM architecture is not the platform's",
    "config-mismatch": "the image config's os/architecture/variant differ from the index descriptor's",
    "missing-platform": "a required or selected platform is not in the index",
    "duplicate-platform": "two index entries for the same platform",
    "attestation-entry": "an unknown/unknown (attestation) manifest listed as an index entry",
    "no-platform": "an index entry without a platform",
    "missing-blob": "a manifest, config or layer blob that cannot be read",
    "integrity": "a blob or uncompressed layer whose digest or size is not what the manifest or config says",
    "invalid-layer": "a layer that is malformed or unsafe",
    "invalid-image": "a manifest or config that is not valid",
}


@dataclass(frozen=True, slots=True)
class Issue:
    platform: str  # "linux/arm64", "unknown/unknown", or "index" for problems of the index itself
    kind: str
    message: str
    path: str = ""
    expected: str = ""
    found: str = ""
    digest: str = ""  # the manifest or layer blob concerned

    def line(self) -> str:
        """``linux/arm64: /usr/bin/app: expected arm64 (aarch64), found x86-64``."""
        return ": ".join(p for p in (self.platform, self.path, self.message) if p)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"platform": self.platform, "kind": self.kind, "message": self.message}
        for key in ("path", "expected", "found", "digest"):
            value = getattr(self, key)
            if value:
                out[key] = value
        out["line"] = self.line()
        return out


@dataclass(frozen=True, slots=True)
class PlatformResult:
    platform: str
    manifest: str
    layers: int = 0
    entries: int = 0  # tar entries read, all layers
    files: int = 0  # regular files read, all layers
    elf_files: int = 0  # ELF files in the merged filesystem (whiteouts applied)
    ignored: int = 0  # ELF files skipped by --ignore patterns
    issues: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"platform": self.platform, "manifest": self.manifest, "layers": self.layers,
                "entries": self.entries, "files": self.files, "elf_files": self.elf_files,
                "ignored": self.ignored, "issues": self.issues, "ok": self.issues == 0}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    subject: str  # what the user named
    digest: str  # of the manifest or index verified
    media_type: str
    platforms: tuple[PlatformResult, ...] = ()
    issues: tuple[Issue, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.issues

    def lines(self) -> list[str]:
        return [issue.line() for issue in self.issues]

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "digest": self.digest, "mediaType": self.media_type, "ok": self.ok,
                "platforms": [p.to_dict() for p in self.platforms],
                "issues": [i.to_dict() for i in self.issues]}


def render_text(report: VerifyReport) -> tuple[str, str]:
    """(stdout, summary for stderr): one line per issue on stdout, a one-line summary for people."""
    checked = ", ".join(f"{p.platform} ({p.elf_files} ELF)" for p in report.platforms) or "no platform"
    if report.ok:
        return "", f"ok: {report.subject} ({report.digest[:19]}…): {checked}"
    n = len(report.issues)
    out = "\n".join(report.lines()) + "\n"
    return out, f"{n} problem{'s' if n != 1 else ''} in {report.subject}: checked {checked}"


def render_json(report: VerifyReport) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"
