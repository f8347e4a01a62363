"""Every test file under tests/ is collected by the project's own pytest settings.

pytest skips folders named ``build``, ``dist`` and others unless ``norecursedirs`` says otherwise; tests/build went
unrun in CI that way for several sessions. This asks a fresh pytest what it collects and compares it with what is
on disk.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_test_file_is_collected() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    collected = {line.split("::", 1)[0] for line in proc.stdout.splitlines() if "::" in line}
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")}
    assert on_disk - collected == set(), "test files pytest does not collect (norecursedirs? a syntax error?)"
