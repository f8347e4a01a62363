"""docs/architecture.md stays true as the tree changes: every module of src/polyarch is in its map, and every
module path the map names exists (in src/polyarch, or a repository path such as tests/…)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "polyarch"
DOC = REPO / "docs" / "architecture.md"


def test_every_module_is_on_the_map() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if path.name in ("__init__.py", "__main__.py"):
            continue
        names = {f"`{rel}`", f"`{path.name}`", f"`{'/'.join(rel.parts[-2:])}`"}
        if not any(n in text for n in names):
            missing.append(str(rel))
    assert missing == [], "add these modules to docs/architecture.md"


def test_every_path_on_the_map_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.py)`", text))
    gone = sorted(p for p in named if not (SRC / p).is_file() and not any(SRC.glob(f"*/{p}"))
                  and not (REPO / p).is_file())
    assert gone == [], "docs/architecture.md names modules that are not in src/polyarch"
