"""``audit.resolve.SourceLookup``: image platforms through ``polyarch.sources`` (local store part; the registry
part is tests/audit/test_remote.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyarch import platform as plat
from polyarch.audit.resolve import SourceLookup
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.errors import PolyarchError

from .images import put_index, tiny


def test_store_images(images: ImageStore) -> None:
    put_index(images, "app/web:1", [tiny(images, p) for p in ("linux/amd64", "linux/arm/v7")])
    images.set_name("legacy:1", tiny(images, "linux/arm64"))
    lookup = SourceLookup(images, None)
    assert lookup.platforms("app/web:1") == [plat.parse("linux/amd64"), plat.parse("linux/arm/v7")]
    assert lookup.platforms("local:legacy:1") == [plat.parse("linux/arm64")]
    assert lookup.platforms("app/gone:1") is None
    assert lookup.platforms("NOT A REF") is None
    with pytest.raises(PolyarchError, match="unknown location scheme"):
        lookup.platforms("ftp://x")


def test_any_location(images: ImageStore, tmp_path: Path) -> None:
    """Audit reads images wherever ``polyarch.sources`` can: here an OCI layout directory."""
    put_index(images, "app/web:1", [tiny(images, "linux/arm64")])
    lookup = SourceLookup(ImageStore(ContentStore(tmp_path / "other")), None)
    assert lookup.platforms("app/web:1") is None
    assert lookup.platforms(f"oci-layout://{images.store.root}:app/web:1") == [plat.parse("linux/arm64")]
