"""The Dockerfile frontend (pure: no I/O): parse → plan (``polyarch.ops`` graph + image config) → reports.

Entry points: ``plan_build`` (the build engineer's), ``parse_dockerfile``, ``run_checks``, ``call``/``run_call``
(``--call``), and the ``.dockerignore`` matcher for the context loader. They are imported on first use, so
importing a submodule (``polyarch.frontend.bake`` …) does not load the Dockerfile parser.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "call": "reports.call", "run_call": "reports.call", "run_checks": "reports.checks",
    "parse_dockerfile": "dockerfile.parse", "ignore_file_candidates": "dockerignore", "is_excluded": "dockerignore",
    "matcher": "dockerignore", "parse_dockerignore": "dockerignore", "BuildPlan": "convert.plan",
    "PlatformPlan": "convert.plan", "StagePlan": "convert.plan", "Step": "convert.plan",
    "plan_build": "convert.plan", "plan_to_json": "convert.plan",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'polyarch.frontend' has no attribute {name!r}")
    return getattr(importlib.import_module(f"polyarch.frontend.{module}"), name)
