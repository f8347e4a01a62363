"""One way to read an image: the location syntax is parsed in ``polyarch.sources`` only, and no two classes share
a ``…Source`` name (there were two unrelated ``StoreSource`` classes)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import polyarch

SRC = Path(polyarch.__file__).parent
PREFIXES = ("local:", "oci-layout://", "oci-archive://", "docker-archive://")


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(SRC.rglob("*.py"))]


def _docstrings(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def test_location_prefixes_are_parsed_in_sources_only() -> None:
    found = []
    for path, tree in _modules():
        if path.relative_to(SRC).parts[0] == "sources":
            continue
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs \
                    and node.value.startswith(PREFIXES):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value[:40]!r}")
    assert found == [], "parse locations with polyarch.sources.parse_location"


def test_source_class_names_are_unique() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Source"):
                where[node.name].append(str(path.relative_to(SRC)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
