"""Findings: check-rule hits with a location, produced by the conversion (semantic rules: UndefinedVar, …) and
by ``polyarch.frontend.reports.checks``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DOCS_URL", "Finding"]

DOCS_URL = "https://docs.docker.com/go/dockerfile/rule/"


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """One rule violation. ``url`` is empty for polyarch's own rules."""

    start_line: int
    end_line: int
    rule: str
    message: str
    filename: str = "Dockerfile"
    url: str = ""
