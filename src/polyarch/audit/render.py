"""An ``AuditReport`` as text: the table ``polyarch audit`` prints, or its ``--format json`` document."""

from __future__ import annotations

import json
from typing import Any

from polyarch.audit.model import AuditReport, Host

__all__ = ["render_json", "render_table", "to_dict"]


def _host_label(h: Host) -> str:
    return f"{h.name} ({h.platform})" if h.platform is not None else f"{h.name} (?)"


def render_table(report: AuditReport) -> str:
    header = ["IMAGE", *(_host_label(h) for h in report.hosts)]
    body = [[row.use.ref + (f" [{row.use.pinned}]" if row.use.pinned else ""), *(c.text() for c in row.cells)]
            for row in report.rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *body]]
    return "\n".join(lines) + "\n"


def to_dict(report: AuditReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "hosts": [{"name": h.name, "platform": str(h.platform) if h.platform else None, "source": h.source,
                   **({"error": h.error} if h.error else {})} for h in report.hosts],
        "images": [{"ref": row.use.ref, "services": list(row.use.services),
                    "pinned": str(row.use.pinned) if row.use.pinned else None,
                    "found": row.platforms is not None,
                    "platforms": [str(p) for p in row.platforms] if row.platforms is not None else [],
                    "hosts": {h.name: c.to_dict() for h, c in zip(report.hosts, row.cells, strict=True)}}
                   for row in report.rows],
        "skipped": list(report.skipped),
        "errors": list(report.errors),
    }


def render_json(report: AuditReport) -> str:
    return json.dumps(to_dict(report), indent=2) + "\n"
