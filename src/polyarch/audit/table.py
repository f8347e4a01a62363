"""The audit table: image uses × hosts → an ``AuditReport``, each image looked up once through a
``PlatformLookup`` (the one seam to image sources; the CLI gives the concrete one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from polyarch.audit.decide import decide
from polyarch.audit.model import AuditReport, AuditRow, Host, ImageUse, Verdict
from polyarch.errors import PolyarchError
from polyarch.platform import Platform

__all__ = ["PlatformLookup", "audit"]


class PlatformLookup(Protocol):
    def platforms(self, ref: str) -> list[Platform] | None:
        """The platforms of the image ``ref`` names (attestation entries left out), or None when it does not
        exist. :raises PolyarchError: when it cannot be learnt (registry unreachable)."""
        ...


def audit(uses: Sequence[ImageUse], hosts: Sequence[Host], lookup: PlatformLookup,
          skipped: Sequence[str] = ()) -> AuditReport:
    """The table. An image the lookup fails on (registry unreachable) is missing everywhere, with the error
    as the note, and listed in ``errors``."""
    rows = []
    cache: dict[str, list[Platform] | None] = {}
    errors: dict[str, str] = {}
    for use in uses:
        if use.ref not in cache:
            try:
                cache[use.ref] = lookup.platforms(use.ref)
            except PolyarchError as exc:
                cache[use.ref] = None
                errors[use.ref] = exc.message
        available = cache[use.ref]
        cells = tuple(decide(available, h.platform, use.pinned) for h in hosts)
        if use.ref in errors:
            cells = tuple(Verdict("missing", note=f"cannot resolve: {errors[use.ref]}") if c.status == "missing"
                          else c for c in cells)
        rows.append(AuditRow(use, tuple(available) if available is not None else None, cells))
    return AuditReport(tuple(hosts), tuple(rows), tuple(skipped), tuple(f"{r}: {e}" for r, e in errors.items()))
