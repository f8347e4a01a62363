"""Every test function under tests/ is collected by the project's own pytest settings, and no folder carries a
build-output name.

pytest skips folders named ``build``, ``dist`` and others unless ``norecursedirs`` says otherwise; the old
``tests/build`` went unrun in CI that way for several sessions. This asks a fresh pytest what it collects and
compares it with the test functions found on disk by parsing every ``test_*.py``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD_OUTPUT_NAMES = {"build", "dist", "out", "_build", "target"}


def _is_test(node: ast.stmt) -> bool:
    return (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
            and not any("fixture" in ast.unparse(d) for d in node.decorator_list))


def _functions_on_disk() -> set[str]:
    """``path::[Class::]test_name`` of every test function pytest's default rules would pick up."""
    found: set[str] = set()
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        rel = str(path.relative_to(REPO))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for node in tree.body:
            if _is_test(node):
                found.add(f"{rel}::{node.name}")
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                for item in node.body:
                    if _is_test(item):
                        found.add(f"{rel}::{node.name}::{item.name}")
    return found


def test_every_test_function_is_collected() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    collected = {line.split("[", 1)[0] for line in proc.stdout.splitlines() if "::" in line}
    on_disk = _functions_on_disk()
    assert len(on_disk) > 400, "the test tree looks truncated"
    assert on_disk - collected == set(), "test functions pytest does not collect (norecursedirs? a syntax error?)"


def test_no_folder_has_a_build_output_name() -> None:
    """pytest, .gitignore files and code-structure tools treat these names as build output."""
    offenders = [str(p.relative_to(REPO)) for top in ("src", "tests") for p in (REPO / top).rglob("*")
                 if p.is_dir() and p.name in BUILD_OUTPUT_NAMES]
    assert offenders == []
