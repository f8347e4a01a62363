"""``nodes/model.py`` is pure values: it imports only core modules (layer 0) and nothing that reaches files,
processes or the environment — J2's scheduler and the CLI share it, and tests build it without a machine."""

from __future__ import annotations

import ast
from pathlib import Path

MODEL = Path(__file__).resolve().parents[2] / "src" / "polyarch" / "nodes" / "model.py"
CORE = {"polyarch.errors", "polyarch.platform"}
STDLIB_PURE = {"__future__", "re", "dataclasses", "typing", "collections.abc"}


def test_model_imports_only_core_and_pure_stdlib() -> None:
    tree = ast.parse(MODEL.read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert names <= CORE | STDLIB_PURE, names - CORE - STDLIB_PURE
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert not calls & {"open", "print", "input", "exec", "eval"}
