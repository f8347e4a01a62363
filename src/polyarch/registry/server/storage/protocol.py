"""The storage seam of the registry server: blob bytes by digest, and the data of upload sessions.

Every method blocks (handlers call them through ``body.run_io``). Blobs are content-addressed and immutable: a
digest's bytes are published once, after verification, and only then become visible to ``stat``/``open``.

An upload session's data is written through an ``UploadWriter``: ``append`` batches of bytes at the writer's
offset, ``checkpoint``/``rollback`` around one request (a failed PATCH leaves the session at its last good
offset), ``flush`` at the end of a successful request (the data so far is durable, and the returned state string
is what the metadata database records beside the offset), ``complete`` to verify and publish, ``abort`` to drop.
``BlobStorage.resume(id, offset, state)`` recreates the writer in another process (after a restart, or on another
replica) from what the database recorded; the running hash is then gone, so ``complete(verified=False)`` re-reads
the data to verify it.

Failures of the backend (unreachable, 5xx) raise ``StorageUnavailable`` (the handlers answer 503); a session the
backend no longer has raises ``SessionGone`` (404 BLOB_UPLOAD_UNKNOWN).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from polyarch.digest import Digest
from polyarch.errors import PolyarchError, StoreError

__all__ = ["BlobReader", "BlobStorage", "SessionGone", "StorageUnavailable", "UploadWriter"]


class StorageUnavailable(StoreError):
    """The storage backend cannot be reached or failed; retrying later may succeed."""


class SessionGone(PolyarchError):
    """The backend no longer has this upload session's data (aborted, expired or purged)."""


class BlobReader(Protocol):
    """A blob (or a range of it) being read: iterate the chunks, then ``close``."""

    def read(self, n: int) -> bytes: ...

    def close(self) -> None: ...


class UploadWriter(Protocol):
    offset: int

    def append(self, chunks: list[bytes]) -> None: ...

    def checkpoint(self) -> object: ...

    def rollback(self, state: object) -> None: ...

    def flush(self) -> str: ...

    def complete(self, expected: Digest, *, verified: bool) -> bool:
        """Publish the data as ``expected``; with ``verified=False`` hash it first. False: the digest does not
        match (the session's data is then dropped)."""
        ...

    def abort(self) -> None: ...


class BlobStorage(Protocol):
    name: str

    def stat(self, digest: Digest) -> int | None: ...

    def read(self, digest: Digest, *, limit: int) -> bytes:
        """A small blob whole (manifests). :raises NotFound: :raises StoreError: when over ``limit``."""
        ...

    def write(self, data: bytes, expected: Digest) -> None:
        """Publish a small blob (manifests) after checking its digest."""
        ...

    def open(self, digest: Digest, start: int, length: int) -> BlobReader:
        """``length`` bytes from ``start``. :raises NotFound:"""
        ...

    def presign(self, digest: Digest, ttl: int) -> str | None:
        """A URL a client may GET the blob from directly for ``ttl`` seconds, or None (no such URLs)."""
        ...

    def delete(self, digest: Digest) -> bool: ...

    def list(self) -> Iterator[tuple[Digest, int]]: ...

    def begin(self, upload_id: str) -> UploadWriter: ...

    def resume(self, upload_id: str, offset: int, state: str) -> UploadWriter:
        """:raises SessionGone: when the backend no longer has the data up to ``offset``."""
        ...

    def forget(self, upload_id: str, state: str) -> None:
        """Drop a session's data known only from the database (expiry, gc); never raises for a missing one."""
        ...

    def sessions(self) -> Iterator[str]:
        """Ids of the upload sessions whose data this backend holds (for purging orphans)."""
        ...

    def modified(self, digest: Digest) -> float | None:
        """When the blob was written (epoch seconds; gc's grace period), or None when it is missing."""
        ...

    def stale_sessions(self, before: float) -> Iterator[tuple[str, str]]:
        """Sessions whose data was last written before ``before``, with a state ``forget`` drops all of it by
        (gc: also data the database has no row for, such as S3 multipart uploads a dead process left)."""
        ...
