"""Fixtures of the audit tests: an empty image store."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore


@pytest.fixture
def images(tmp_path: Path) -> ImageStore:
    return ImageStore(ContentStore(tmp_path / "store"))
