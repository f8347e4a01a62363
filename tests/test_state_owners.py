"""The build's on-disk state has one owner each: ``solver/cache.py`` alone opens ``buildcache.db`` and runs SQL
on it, ``worker/snapshot.py`` alone builds paths under ``<root>/snapshots`` (and the build lock there),
``content/origins.py`` alone opens ``blobsources.db`` (where blobs were pulled from or pushed to). Everything
else — ``polyarch prune`` included — asks them. Checked over the AST of every module in src/.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "polyarch"
CACHE_OWNER = "solver/cache.py"
SNAPSHOT_OWNER = "worker/snapshot.py"
ORIGINS_OWNER = "content/origins.py"
# sqlite3 is imported where a database is owned (and by the migration runner both owners use); the registry app
# only names sqlite3.OperationalError to recognise a full disk. The SBOM's rpm reader opens no file: it queries an
# image's rpmdb.sqlite from bytes deserialized into a ":memory:" database, and may connect to nothing else.
IMAGE_DATA_READER = "attest/rpmdb.py"
SQLITE_MODULES = {CACHE_OWNER, ORIGINS_OWNER, "registry/server/metadata.py", "sqlschema.py", "registry/server/app.py",
                  IMAGE_DATA_READER}
SQLITE_CONNECTORS = {CACHE_OWNER, ORIGINS_OWNER, "registry/server/metadata.py"}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        yield str(path.relative_to(SRC)), ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (text, not paths)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _strings(tree: ast.Module) -> Iterator[str]:
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.value


def _imports(tree: ast.Module) -> set[str]:
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return names


def _calls(tree: ast.Module) -> set[str]:
    return {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}


def _snapshot_path_part(text: str) -> bool:
    return text in ("snapshots", "build.lock") or text.startswith("snapshots/")


def test_only_the_build_cache_names_its_database() -> None:
    owners = {rel for rel, tree in _modules() if any("buildcache.db" in s for s in _strings(tree))}
    assert owners == {CACHE_OWNER}


def test_only_the_origins_module_names_its_database() -> None:
    owners = {rel for rel, tree in _modules() if any("blobsources.db" in s for s in _strings(tree))}
    assert owners == {ORIGINS_OWNER}


def test_sqlite_is_used_only_by_the_database_owners() -> None:
    importing = {rel for rel, tree in _modules() if "sqlite3" in _imports(tree)}
    assert importing <= SQLITE_MODULES, importing - SQLITE_MODULES
    connecting = {rel for rel, tree in _modules() if any(c.endswith("sqlite3.connect") for c in _calls(tree))}
    assert connecting == SQLITE_CONNECTORS | {IMAGE_DATA_READER}


def test_the_image_data_reader_connects_only_to_memory() -> None:
    tree = next(tree for rel, tree in _modules() if rel == IMAGE_DATA_READER)
    connects = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("sqlite3.connect")]
    assert connects
    for call in connects:
        target = call.args[0] if call.args else next(k.value for k in call.keywords if k.arg == "database")
        assert isinstance(target, ast.Constant) and target.value == ":memory:", ast.unparse(call)


def test_only_the_snapshot_module_builds_snapshot_paths() -> None:
    builders = {rel for rel, tree in _modules() if any(_snapshot_path_part(s) for s in _strings(tree))}
    assert builders == {SNAPSHOT_OWNER}


def test_the_checks_see_what_they_look_for() -> None:
    """The scanners find a forbidden path in a module that has one (so the tests above can fail)."""
    tree = ast.parse('"""snapshots/ in a docstring is text"""\n'
                     'def f(root):\n    return root / "snapshots" / "overlay", root / "buildcache.db"\n')
    found = list(_strings(tree))
    assert any(_snapshot_path_part(s) for s in found) and any("buildcache.db" in s for s in found)
    assert not any(s.startswith("snapshots/ in") for s in found)
    assert "sqlite3.connect" in _calls(ast.parse("import sqlite3\nsqlite3.connect('x')\n"))
