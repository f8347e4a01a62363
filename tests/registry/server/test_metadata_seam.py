"""Rules of the metadata seam, checked over the source tree: psycopg is imported only by
``registry/server/pgmeta.py``, and only lazily (inside a function) by the CLI, so ``polyarch --help`` and a registry
on SQLite never load it; the server's modules use the ``MetadataStore`` protocol, and only ``state.py`` (the default
database) and ``gc.py`` (the store's own ``registry.db``) name the SQLite class."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "polyarch"
SERVER = SRC / "registry" / "server"


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import of ``path``; relative names resolved in its package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    top = {id(n) for n in tree.body}
    for node in tree.body:  # imports under `if TYPE_CHECKING:` count as module level
        if isinstance(node, ast.If):
            top.update(id(n) for n in node.body)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, id(node) in top) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            out.append((base, id(node) in top))
            out.extend((f"{base}.{a.name}", id(node) in top) for a in node.names)
    return out


def test_only_pgmeta_imports_psycopg_and_the_cli_only_lazily() -> None:
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        for name, module_level in _imports(path):
            if name.split(".")[0] == "psycopg":
                assert rel == "registry/server/pgmeta.py", f"{rel} imports psycopg"
            if name == "polyarch.registry.server.pgmeta" and rel != "registry/server/pgmeta.py":
                assert rel.startswith("cli/") and not module_level, f"{rel} imports pgmeta at module level"


def test_server_modules_use_the_protocol_not_the_sqlite_class() -> None:
    allowed = {"state.py", "gc.py", "metadata.py"}
    for path in SERVER.rglob("*.py"):
        rel = path.relative_to(SERVER).as_posix()
        for name, _ in _imports(path):
            if name.startswith("polyarch.registry.server.metadata") and rel not in allowed:
                raise AssertionError(f"registry/server/{rel} imports {name}: use metastore.MetadataStore")
