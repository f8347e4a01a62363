"""A build without RUN steps never loads the RUN machinery (``worker.runc`` and what only it needs: mounts setup,
network, seccomp, users, emulation checks): ``pipeline.runexec.make_runner`` and ``cli.wiring``'s runnable check
load them with the first RUN step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

RUN_ONLY = ("polyarch.worker.runc", "polyarch.worker.network", "polyarch.worker.seccomp", "polyarch.worker.users",
            "polyarch.worker.emulation", "polyarch.worker.binfmt")

PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(m for m in sys.modules if m.startswith("polyarch.")))))
from polyarch.cli.main import main
sys.argv = ["polyarch", *sys.argv[1:]]
main()
"""


def _build_modules(tmp_path: Path, dockerfile: str) -> list[str]:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "hello.txt").write_text("hello\n")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    out = subprocess.run([sys.executable, "-c", PROBE, "--root", str(tmp_path / "root"), "build", str(ctx),
                          "--platform", "linux/amd64,linux/arm64", "-t", "imports:1", "--load", "--progress", "quiet"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_copy_only_build_never_imports_the_run_machinery(tmp_path: Path) -> None:
    modules = _build_modules(tmp_path, "FROM scratch\nWORKDIR /srv\nCOPY hello.txt ./\n")
    assert "polyarch.pipeline.runexec" in modules  # the probe saw the build's modules
    assert [m for m in RUN_ONLY if m in modules] == []
