"""Exporter test fixtures: a build context and a polyarch registry served on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline.conftest import write_tree


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nWORKDIR /srv\nCOPY app.sh ./\n",
                                         "app.sh": "echo hi\n"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """``polyarch registry serve`` on 127.0.0.1:PORT (its own store under tmp_path); yields ``host:port``."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "polyarch", "--root", str(tmp_path / "reg"), "registry", "serve",
                             "--addr", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"registry did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
