"""Where the documents and blobs of an image tree come from when pushing or copying: the local store (or any OCI
layout), a registry repository, or a composite of several (``imagetools create`` merging sources).

Every source returns verified bytes: documents are hashed against their descriptor, blobs come from files that
were verified when written (store) or are spooled to a temp file and verified before use (registry).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from polyarch.content.images import MAX_CONFIG, check_config_size
from polyarch.content.store import ContentStore
from polyarch.digest import Digest, Hasher
from polyarch.errors import DigestMismatch, NotFound
from polyarch.oci.reference import Reference
from polyarch.oci.spec import Descriptor

from .client import RegistryClient

__all__ = ["CompositeSource", "RegistrySource", "Source", "StoreSource", "TempBlob", "read_config"]

MAX_DOCUMENT = 4 << 20


class Source(Protocol):
    @property
    def location(self) -> Reference | None:
        """The registry repository the blobs live in (for cross-repo mounts), or None when local."""
        ...

    def read_document(self, desc: Descriptor) -> bytes: ...
    def has_blob(self, desc: Descriptor) -> bool: ...
    def blob_file(self, desc: Descriptor) -> AbstractContextManager[Path]: ...
    def route(self, child: Descriptor) -> Source:
        """The source holding ``child``'s tree (itself, except for composites)."""
        ...


def read_config(source: Source, desc: Descriptor) -> bytes:
    """An image config from any source, refused before it is fetched when declared over ``MAX_CONFIG`` (the
    blob is verified to be its declared size, and never read past the cap)."""
    check_config_size(desc)
    with source.blob_file(desc) as path, open(path, "rb") as f:
        return f.read(MAX_CONFIG)


def _verified(raw: bytes, desc: Descriptor, where: str) -> bytes:
    if len(raw) != desc.size or Digest.of(raw, desc.digest.algorithm) != desc.digest:
        raise DigestMismatch(f"{where}: document {desc.digest} does not match its descriptor")
    return raw


class StoreSource:
    """A content store or any OCI image layout directory (its ``blobs/`` are read as they are)."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store

    @property
    def location(self) -> Reference | None:
        return None

    def read_document(self, desc: Descriptor) -> bytes:
        if desc.data is not None and Digest.of(desc.data, desc.digest.algorithm) == desc.digest:
            return desc.data
        return _verified(self.store.read(desc.digest, limit=MAX_DOCUMENT), desc, str(self.store.root))

    def has_blob(self, desc: Descriptor) -> bool:
        return self.store.stat(desc.digest) == desc.size

    @contextmanager
    def blob_file(self, desc: Descriptor) -> Iterator[Path]:
        size = self.store.stat(desc.digest)
        if size != desc.size:
            raise NotFound(f"blob {desc.digest} is not in {self.store.root}" if size is None else
                           f"blob {desc.digest} in {self.store.root} has {size} bytes, descriptor says {desc.size}")
        yield self.store.blob_path(desc.digest)

    def route(self, child: Descriptor) -> Source:
        return self


class TempBlob:
    """A ``BlobSink`` writing to a temp file, verified on commit (spool for registry-to-registry copies)."""

    def __init__(self, folder: Path, algorithm: str) -> None:
        fd, name = tempfile.mkstemp(dir=folder, prefix="blob-")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._hasher = Hasher(algorithm)

    def write(self, data: bytes) -> int:
        self._hasher.update(data)
        self._file.write(data)
        return len(data)

    def commit(self, expected: Digest | None = None, size: int | None = None) -> tuple[Digest, int]:
        self._file.close()
        got = self._hasher.digest()
        if (expected is not None and got != expected) or (size is not None and self._hasher.size != size):
            self.abort()
            raise DigestMismatch(f"blob {expected}: received {self._hasher.size} bytes hashing to {got}")
        return got, self._hasher.size

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class RegistrySource:
    """A repository of a registry, through a client."""

    def __init__(self, client: RegistryClient, ref: Reference, spool: Path | None = None) -> None:
        self.client = client
        self.ref = ref
        self._spool = spool

    @property
    def location(self) -> Reference | None:
        return self.ref

    def read_document(self, desc: Descriptor) -> bytes:
        fetched = self.client.get_manifest(self.ref.with_digest(desc.digest))
        return _verified(fetched.raw, desc, str(self.ref))

    def has_blob(self, desc: Descriptor) -> bool:
        return self.client.blob_size(self.ref, desc.digest) == desc.size

    @contextmanager
    def blob_file(self, desc: Descriptor) -> Iterator[Path]:
        folder = Path(tempfile.mkdtemp(prefix="polyarch-spool-", dir=self._spool))
        sinks: list[TempBlob] = []

        def sink() -> TempBlob:
            sinks.append(TempBlob(folder, desc.digest.algorithm))
            return sinks[-1]

        try:
            self.client.fetch_blob(self.ref, desc, sink)
            yield sinks[-1].path
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def route(self, child: Descriptor) -> Source:
        return self


class CompositeSource:
    """New documents held in memory, with children routed to the source they came from."""

    def __init__(self, documents: Mapping[str, bytes], routes: Mapping[str, Source], default: Source) -> None:
        self.documents = dict(documents)
        self.routes = dict(routes)
        self.default = default

    @property
    def location(self) -> Reference | None:
        return self.default.location

    def read_document(self, desc: Descriptor) -> bytes:
        raw = self.documents.get(str(desc.digest))
        if raw is not None:
            return _verified(raw, desc, "new document")
        return self.route(desc).read_document(desc)

    def has_blob(self, desc: Descriptor) -> bool:
        return self.default.has_blob(desc)

    def blob_file(self, desc: Descriptor) -> AbstractContextManager[Path]:
        return self.default.blob_file(desc)

    def route(self, child: Descriptor) -> Source:
        return self.routes.get(str(child.digest), self.default)
