"""Rules of the audit package: the environment is read by ``cli/audit.py`` only; the decision, table, model and
rendering modules are pure; compose interpolation has one implementation, shared with bake."""

from __future__ import annotations

import ast
from pathlib import Path

import polyarch

SRC = Path(polyarch.__file__).parent
AUDIT = SRC / "audit"
PURE = ("model.py", "decide.py", "table.py", "render.py")
PURE_IMPORTS = {"__future__", "collections", "dataclasses", "json", "typing", "polyarch.platform",
                "polyarch.errors", "polyarch.audit"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _imports(tree: ast.Module, *, with_typing: bool = True) -> set[str]:
    """Dotted names imported anywhere in ``tree`` (``with_typing=False``: not counting ``if TYPE_CHECKING:``)."""
    skip = set()
    if not with_typing:
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                for stmt in node.body for n in ast.walk(stmt)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_audit_package_reads_no_environment() -> None:
    found = []
    for path in sorted(AUDIT.rglob("*.py")):
        for node in ast.walk(_tree(path)):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
            if name in ("environ", "getenv", "environb", "getenvb"):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {name}")
    assert found == [], "read the environment in cli/audit.py and pass values down"


def test_pure_modules_import_no_io() -> None:
    bad = {}
    for name in PURE:
        extra = {m for m in _imports(_tree(AUDIT / name))
                 if not any(m == p or m.startswith(p + ".") for p in PURE_IMPORTS)}
        if extra:
            bad[name] = sorted(extra)
    assert bad == {}


def test_one_compose_interpolation() -> None:
    users = [str(p.relative_to(SRC)) for p in sorted(SRC.rglob("*.py"))
             if "polyarch.frontend.interpolation.interpolate" in _imports(_tree(p))]
    assert users == ["audit/inputs.py", "frontend/bake/compose.py"]
    copies = [str(p.relative_to(SRC)) for p in sorted(SRC.rglob("*.py")) if p.name != "interpolation.py"
              for node in ast.walk(_tree(p))
              if isinstance(node, ast.Constant) and isinstance(node.value, str) and ":?[-?]" in node.value]
    assert copies == [], "compose's ${VAR:-…} forms are read by frontend/interpolation.py only"


def test_images_read_through_sources_only() -> None:
    """Audit opens images only through ``polyarch.sources`` (no registry client, store or layout code of its own)."""
    bad = {str(p.relative_to(SRC)): sorted(m for m in _imports(_tree(p), with_typing=False)
                                           if m.startswith(("polyarch.registry", "polyarch.content", "polyarch.oci.spec")))
           for p in sorted(AUDIT.rglob("*.py"))}
    assert {k: v for k, v in bad.items() if v} == {}
