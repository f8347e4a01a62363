"""The one-way flow of docs/architecture.md, checked: a package imports only packages of a lower layer (or itself).

Every import counts (module level, inside functions, under ``TYPE_CHECKING``): a lazy import is still a
dependency. Packages of one layer are siblings and never import each other (solver and registry know nothing of
one another; verify, imagetools, audit and the exporters neither).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "polyarch"

#: top-level package or module of polyarch → layer (docs/architecture.md, "Layers")
LAYERS: dict[str, int] = {
    "polyarch": 0, "__main__": 10,
    "errors": 0, "digest": 0, "platform": 0, "oci": 0, "ops": 0, "progress": 0, "cancel": 0, "fsutil": 0, "libpatches": 0, "sqlschema": 0,
    "frontend": 1, "ci": 1,
    "content": 2,
    "worker": 3,
    "solver": 4, "registry": 4,
    "sources": 5,
    "exporters": 6, "verify": 6, "imagetools": 6, "audit": 6, "attest": 6,
    "pipeline": 7,
    "nodes": 8,
    "cli": 9,
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {t for t in out if t == "polyarch" or t.startswith("polyarch.")}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "polyarch"


def test_every_package_has_a_layer() -> None:
    tops = {_top(_module(p)) for p in SRC.rglob("*.py")}
    assert tops - LAYERS.keys() == set(), "new top-level package: give it a layer here and in docs/architecture.md"


def _allowed(here: str, there: str) -> bool:
    """Down the layers, or within one package; the core modules (layer 0) may use one another."""
    if here == there:
        return True
    low, high = LAYERS.get(there, 99), LAYERS.get(here, -1)
    return low < high or low == high == 0


def test_imports_only_go_down() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        here = _top(_module(path))
        for target in sorted(_imports(path)):
            there = _top(target)
            if not _allowed(here, there):
                wrong.append(f"{_module(path)} imports {target} ({here}: layer {LAYERS.get(here)}, "
                             f"{there}: layer {LAYERS.get(there)})")
    assert wrong == []


def test_the_rule() -> None:
    assert _allowed("solver", "worker") and _allowed("cli", "pipeline") and _allowed("digest", "errors")
    assert not _allowed("worker", "solver")  # up
    assert not _allowed("solver", "registry") and not _allowed("verify", "audit")  # siblings
    assert not _allowed("content", "newpackage")  # a package without a layer
