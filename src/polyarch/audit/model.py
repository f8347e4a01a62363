"""The values of an audit: hosts, image uses, one verdict per image × host, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from polyarch.platform import Platform

__all__ = ["AuditReport", "AuditRow", "Host", "ImageUse", "Verdict"]


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    platform: Platform | None  # None when it could not be learnt
    source: str = "file"  # "file" or the ssh target it was asked over
    error: str = ""


@dataclass(frozen=True, slots=True)
class ImageUse:
    ref: str
    services: tuple[str, ...] = ()  # "compose.yaml:web"; empty for image lists
    pinned: Platform | None = None  # compose ``platform:``


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # native | emulated | missing | unknown
    platform: Platform | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "native"

    def text(self) -> str:
        return f"{self.status} {self.platform}" if self.platform is not None else self.status

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.platform is not None:
            out["platform"] = str(self.platform)
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class AuditRow:
    use: ImageUse
    platforms: tuple[Platform, ...] | None
    cells: tuple[Verdict, ...]


@dataclass(frozen=True, slots=True)
class AuditReport:
    hosts: tuple[Host, ...]
    rows: tuple[AuditRow, ...]
    skipped: tuple[str, ...] = field(default=())  # services with no image to audit, and why
    errors: tuple[str, ...] = field(default=())  # images that could not be resolved, and why

    @property
    def ok(self) -> bool:
        return all(c.ok for row in self.rows for c in row.cells) and all(h.platform for h in self.hosts)
