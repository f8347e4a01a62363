"""Where verify reads an image from: a small seam (``BlobSource``) and its content-store implementation.

Any OCI image layout is a ``ContentStore`` (``ContentStore(path, create=False)``), so the local store and a
``type=oci,tar=false`` export are read the same way. A registry-backed source implements the same two methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, TYPE_CHECKING, Protocol

from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, LimitExceeded
from polyarch.oci.spec import Descriptor, is_index, is_manifest

if TYPE_CHECKING:
    from polyarch.oci.reference import Reference
    from polyarch.registry.client import RegistryClient

__all__ = ["BlobSource", "RegistryBlobSource", "StoreSource"]


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


class RegistryBlobSource:
    """Blobs of a registry repository, through the registry client (with the user's credentials).

    Manifests come from the manifests endpoint; configs and layers are downloaded one at a time by the client
    (digest-checked, resumed on failure) into a temporary file that is streamed and removed: compressed bytes of
    one layer touch the disk, nothing is ever unpacked.
    """

    def __init__(self, client: RegistryClient, ref: Reference, documents: dict[str, bytes] | None = None, *,
                 owns_client: bool = False) -> None:
        from polyarch.registry.sources import RegistrySource

        self._client = client
        self._owns = owns_client
        self._remote = RegistrySource(client, ref)
        self._documents = dict(documents or {})

    def close(self) -> None:
        if self._owns:
            self._client.close()

    def read(self, desc: Descriptor, *, limit: int) -> bytes:
        raw = self._documents.get(str(desc.digest))
        if raw is None and (is_manifest(desc.media_type) or is_index(desc.media_type)):
            raw = self._remote.read_document(desc)
        if raw is None:
            if desc.size > limit:
                raise LimitExceeded(f"blob {desc.digest} of {desc.size} bytes exceeds {limit}")
            with self._remote.blob_file(desc) as path:
                raw = path.read_bytes()
        if len(raw) != desc.size or Digest.of(raw, desc.digest.algorithm) != desc.digest:
            raise DigestMismatch(f"blob {desc.digest} does not match its descriptor")
        return raw

    @contextmanager
    def open(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        with self._remote.blob_file(desc) as path, open(path, "rb") as f:
            yield f
