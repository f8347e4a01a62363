"""A registry repository as a ``ContentSource``, through a client the caller owns.

Manifests come from the manifests endpoint (by digest, checked); configs and layers are downloaded one at a time
by the client (digest-checked, resumed on failure) into a temporary file that is used and removed: compressed
bytes of one blob touch the disk, nothing is ever unpacked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from polyarch.digest import Digest, Hasher
from polyarch.errors import DigestMismatch
from polyarch.oci import reference
from polyarch.oci.reference import Reference
from polyarch.oci.spec import Descriptor, is_index, is_manifest

from .protocol import MAX_DOCUMENT, ContentSource, Opened, check_limit, verified

if TYPE_CHECKING:
    from polyarch.registry.client import RegistryClient

__all__ = ["RegistrySource", "TempBlob", "open_reference"]


class TempBlob:
    """A ``BlobSink`` writing to a temp file, verified on commit (spool for registry downloads)."""

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
    """A repository of a registry; ``documents`` are manifests already fetched (not asked for again)."""

    def __init__(self, client: RegistryClient, ref: Reference, documents: Mapping[str, bytes] | None = None, *,
                 spool: Path | None = None) -> None:
        self.client = client
        self.ref = ref
        self._documents = dict(documents or {})
        self._spool = spool

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def repository(self) -> Reference | None:
        return self.ref

    def read(self, desc: Descriptor, *, limit: int = MAX_DOCUMENT) -> bytes:
        check_limit(desc, limit)
        raw = self._documents.get(str(desc.digest))
        if raw is None and (is_manifest(desc.media_type) or is_index(desc.media_type)):
            raw = self.client.get_manifest(self.ref.with_digest(desc.digest)).raw
        if raw is None:
            with self.blob_file(desc) as path:
                raw = path.read_bytes()
        return verified(raw, desc, str(self.ref))

    def has_blob(self, desc: Descriptor) -> bool:
        return self.client.blob_size(self.ref, desc.digest) == desc.size

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        with self.blob_file(desc) as path, open(path, "rb") as f:
            yield f

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

    def route(self, child: Descriptor) -> ContentSource:
        return self

    def close(self) -> None:
        pass


def open_reference(registry: Callable[[], RegistryClient], text: str) -> Opened:
    """The image a registry reference names. :raises InvalidReference: ``text`` is not a reference (before any
    client is made). :raises RegistryError: from the registry (404 when it has no such manifest)."""
    ref = reference.parse(text).defaulted()
    client = registry()
    fetched = client.get_manifest(ref)
    source = RegistrySource(client, ref, {str(fetched.digest): fetched.raw})
    return Opened(source, fetched.descriptor, fetched.raw, str(ref), ref)
