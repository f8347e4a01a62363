"""``read_config``: a config declared over ``MAX_CONFIG`` is refused before any source fetches it (T9)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from polyarch.content.images import MAX_CONFIG
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import LimitExceeded
from polyarch.oci.spec import Descriptor, MediaType
from polyarch.sources.protocol import read_config
from polyarch.sources.store import StoreSource


class _NeverFetch(StoreSource):
    def read(self, desc: Descriptor, *, limit: int = 0) -> bytes:
        raise AssertionError("the blob was fetched")

    @contextmanager
    def blob_file(self, desc: Descriptor) -> Iterator[Path]:
        raise AssertionError("the blob was fetched")
        yield Path()


def test_config_declared_over_the_cap_is_not_fetched(tmp_path: Path) -> None:
    desc = Descriptor(MediaType.OCI_CONFIG, Digest.of(b"x"), MAX_CONFIG + 1)
    with pytest.raises(LimitExceeded, match="limit"):
        read_config(_NeverFetch(ContentStore(tmp_path)), desc)


def test_config_within_the_cap_is_read(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    raw = b'{"architecture":"amd64","os":"linux"}'
    digest, size = store.write(raw)
    assert read_config(StoreSource(store), Descriptor(MediaType.OCI_CONFIG, digest, size)) == raw
