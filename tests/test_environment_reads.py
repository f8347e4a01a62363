"""The CLI is the only composition root: no module under src/polyarch outside ``polyarch.cli`` reads the process
environment (``os.environ``, ``os.environb``, ``os.getenv``, ``os.getenvb``, also when imported by name). The CLI
reads it once (``polyarch.cli.environment``) and passes typed values down."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "polyarch"
_NAMES = {"environ", "environb", "getenv", "getenvb"}

# module (relative to src/polyarch) -> why it may name os.environ
ALLOWED: dict[str, str] = {
    "solver/git.py": "passes its own environment through to the git child process (plus GIT_* settings that keep "
                     "git from prompting or reading user config); it reads no setting of polyarch from it",
}


def _reads(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):  # os.environ, os.getenv(...)
        return node.attr in _NAMES and isinstance(node.value, ast.Name) and node.value.id == "os"
    if isinstance(node, ast.ImportFrom):  # from os import environ
        return node.module == "os" and any(a.name in _NAMES for a in node.names)
    # __import__("os") could fetch os.environ under another name
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__"


def environment_reads(tree: ast.AST) -> list[int]:
    """Line numbers where ``tree`` touches the environment: ``os.environ``/``os.getenv``… as attributes, or the
    same names imported from ``os``."""
    return sorted(node.lineno for node in ast.walk(tree) if _reads(node))  # type: ignore[attr-defined]


def test_no_module_outside_the_cli_reads_the_environment() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("cli/") or rel in ALLOWED:
            continue
        offenders += [f"{rel}:{line}" for line in environment_reads(ast.parse(path.read_text(), rel))]
    assert offenders == [], "read the variable in polyarch/cli/environment.py and pass the value down: " + \
        ", ".join(offenders)


def test_allow_list_is_current() -> None:
    """Every allowed module exists and still needs its exception (else the entry must go)."""
    for rel in ALLOWED:
        path = SRC / rel
        assert path.is_file(), rel
        assert environment_reads(ast.parse(path.read_text(), rel)), f"{rel} no longer reads the environment"


def test_the_checker_sees_every_form() -> None:
    sample = ("import os\nfrom os import getenv\nfrom os import environ as e\na = os.environ.get('X')\n"
              "b = os.getenv('Y')\nc = os.environb\nd = __import__('os')\n")
    assert environment_reads(ast.parse(sample)) == [2, 3, 4, 5, 6, 7]
    assert environment_reads(ast.parse("import os\nx = os.path.join('a', 'b')\nenviron = {}\n")) == []
