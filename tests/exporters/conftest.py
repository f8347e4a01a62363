"""Exporter test fixtures: a build context and a polyarch registry served on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import serve_registry
from tests.pipeline.conftest import write_tree


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nWORKDIR /srv\nCOPY app.sh ./\n",
                                         "app.sh": "echo hi\n"})


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """``polyarch registry serve`` on 127.0.0.1:PORT (its own store under tmp_path); yields ``host:port``."""
    with serve_registry(tmp_path / "reg") as address:
        yield address
