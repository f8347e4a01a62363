"""Fixtures of the verify tests: real busybox ELF binaries of three architectures, and an empty store."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore

from .build import busybox_from_tar


@pytest.fixture(scope="session")
def elves(busybox_tars: dict[str, Path]) -> dict[str, bytes]:
    """platform → Debian's busybox-static binary for it (amd64, arm64, armhf = arm/v7)."""
    return {p: busybox_from_tar(tar) for p, tar in busybox_tars.items()}


@pytest.fixture
def images(tmp_path: Path) -> ImageStore:
    return ImageStore(ContentStore(tmp_path / "store"))
