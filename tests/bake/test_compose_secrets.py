"""Compose build secrets keep the source the top-level ``secrets`` section gives them, as buildx passes them on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

COMPOSE = """services:
  app:
    build:
      context: .
      secrets:
        - token
        - source: npmrc
          target: /root/.npmrc
secrets:
  token:
    environment: GH_TOKEN
  npmrc:
    file: ./npmrc.txt
"""


def _bake(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "polyarch", "bake", *args], cwd=cwd, capture_output=True, text=True)


def test_secret_sources_reach_the_target(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    proc = _bake(tmp_path, "--print")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["target"]["app"]["secret"] == ["id=token,env=GH_TOKEN", "id=npmrc,src=./npmrc.txt"]


def test_an_undefined_secret_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(COMPOSE.replace("  token:\n    environment: GH_TOKEN\n", ""))
    proc = _bake(tmp_path, "--print")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "undefined build secret token" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
