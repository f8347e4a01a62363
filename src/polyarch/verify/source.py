"""Where verify reads an image from: a small seam (``BlobSource``) and its content-store implementation.

Any OCI image layout is a ``ContentStore`` (``ContentStore(path, create=False)``), so the local store and a
``type=oci,tar=false`` export are read the same way. A registry-backed source implements the same two methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Protocol

from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import DigestMismatch
from polyarch.oci.spec import Descriptor

__all__ = ["BlobSource", "StoreSource"]


class BlobSource(Protocol):
    def read(self, desc: Descriptor, *, limit: int) -> bytes:
        """A small blob (manifest, config), whole, checked against ``desc``'s digest and size.

        :raises NotFound: when the blob is absent. :raises DigestMismatch: when its bytes are not ``desc``.
        """
        ...

    def open(self, desc: Descriptor) -> AbstractContextManager[IO[bytes]]:
        """A stream of a (layer) blob's stored bytes; the caller checks digest and size as it reads.

        :raises NotFound: when the blob is absent.
        """
        ...


class StoreSource:
    """Blobs of a content store or any OCI image layout."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store

    def read(self, desc: Descriptor, *, limit: int) -> bytes:
        raw = self.store.read(desc.digest, limit=limit)
        got = Digest.of(raw, desc.digest.algorithm)
        if got != desc.digest:
            raise DigestMismatch(f"blob {desc.digest} in {self.store.root} hashes to {got}")
        if len(raw) != desc.size:
            raise DigestMismatch(f"blob {desc.digest} has {len(raw)} bytes, its descriptor says {desc.size}")
        return raw

    @contextmanager
    def open(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        with self.store.open(desc.digest) as f:
            yield f
