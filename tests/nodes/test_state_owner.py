"""``builders.json`` has one owner: only ``nodes/store.py`` names the file (checked over the AST of src/)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "polyarch"


def _names_file(tree: ast.Module) -> bool:
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return any(isinstance(n, ast.Constant) and isinstance(n.value, str) and "builders.json" in n.value
               and id(n) not in docs for n in ast.walk(tree))


def test_only_the_builder_store_names_its_file() -> None:
    owners = {str(p.relative_to(SRC)) for p in sorted(SRC.rglob("*.py"))
              if _names_file(ast.parse(p.read_text(encoding="utf-8")))}
    assert owners == {"nodes/store.py"}
