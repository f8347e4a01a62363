"""``.ci/run``: the tests, then ``scripts/demo`` (README's main job); it fails when either fails and pytest's
summary stays the last line. Run against stand-ins for ``scripts/test`` and ``scripts/demo`` in a copy of the
layout. And ``scripts/demo`` ends by running each platform it built."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.conftest import REPO


def _run(tmp_path: Path, test_rc: int, demo_rc: int) -> subprocess.CompletedProcess[str]:
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "test").write_text(f'#!/bin/sh\necho "3 passed in 0.1s"\nexit {test_rc}\n')
    (scripts / "demo").write_text(f'#!/bin/sh\necho demo ran\nexit {demo_rc}\n')
    for f in scripts.iterdir():
        f.chmod(0o755)
    return subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("test_rc", "demo_rc", "want"), [(0, 0, 0), (0, 3, 3), (1, 0, 1), (1, 3, 1)])
def test_ci_run_fails_when_tests_or_demo_fail(tmp_path: Path, test_rc: int, demo_rc: int, want: int) -> None:
    proc = _run(tmp_path, test_rc, demo_rc)
    assert proc.returncode == want, proc.stderr
    lines = proc.stdout.splitlines()
    assert "demo ran" in lines and lines.index("demo ran") > lines.index("3 passed in 0.1s")  # demo after the tests
    assert lines[-1] == "3 passed in 0.1s"  # pytest's summary stays last
    assert ("scripts/demo failed" in proc.stderr) == (demo_rc != 0)


def test_demo_ends_by_running_every_platform_it_built() -> None:
    text = (REPO / "scripts" / "demo").read_text()
    built = re.search(r"pa build \S+ --platform (\S+)", text)
    assert built
    platforms = built.group(1).split(",")
    last = text.rstrip().splitlines()[-3:]
    assert last[0] == f"for p in {' '.join(platforms)}; do" and 'pa run --platform "$p"' in last[1] and last[2] == "done"
    assert "| head" not in text  # a pipe cut short under pipefail made the demo exit 141/32 once
