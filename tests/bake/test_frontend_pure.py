"""``frontend/`` is pure: text and mappings in, plans and definitions out. No module under it reads the
environment, a file or stdin (the CLI does, once, and passes text and an environment mapping down)."""

from __future__ import annotations

import ast
from pathlib import Path

import polyarch.frontend

FRONTEND = Path(polyarch.frontend.__file__).parent
_OS_READS = {"environ", "environb", "getenv", "getenvb", "open", "read", "fdopen"}
_PATH_READS = {"read_text", "read_bytes"}
_STDIO = {"stdin"}


def impure_uses(source: str, filename: str = "<src>") -> list[str]:
    """``file:line: what`` for every environment, file or stdin read in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        what = None
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "os" and node.attr in _OS_READS:
                what = f"os.{node.attr}"
            elif node.value.id == "sys" and node.attr in _STDIO:
                what = f"sys.{node.attr}"
            elif node.value.id == "io" and node.attr == "open":
                what = "io.open"
        if isinstance(node, ast.Attribute) and node.attr in _PATH_READS:
            what = f".{node.attr}()"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("open", "input"):
            what = f"{node.func.id}()"
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "sys", "io"):
            bad = [a.name for a in node.names if a.name in _OS_READS | _STDIO]
            what = f"from {node.module} import {', '.join(bad)}" if bad else None
        if what:
            out.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")
    return out


def test_frontend_reads_no_environment_files_or_stdin() -> None:
    found = [hit for path in sorted(FRONTEND.rglob("*.py"))
             for hit in impure_uses(path.read_text(encoding="utf-8"), str(path.relative_to(FRONTEND.parent)))]
    assert found == []
    assert len(list(FRONTEND.rglob("*.py"))) > 10  # the walk saw the package


def test_the_check_finds_each_kind_of_read() -> None:
    src = """
import os, sys, io
from os import environ
from pathlib import Path
a = os.environ.get("X")
b = os.getenv("X")
c = open("f").read()
d = Path("f").read_text()
e = Path("f").read_bytes()
f = sys.stdin.read()
g = io.open("f")
h = input()
"""
    hits = [h.split(": ", 1)[1] for h in impure_uses(src)]
    assert hits.count("from os import environ") == 1
    for what in ("os.environ", "os.getenv", "open()", ".read_text()", ".read_bytes()", "sys.stdin", "io.open",
                 "input()"):
        assert what in hits, what
    assert impure_uses("x = {'environ': 1}.get('environ')\ntext.splitlines()\n") == []


def test_bake_modules_stay_small() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (FRONTEND / "bake").glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 400} == {}
