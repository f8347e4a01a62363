"""The metadata seam of the registry server: what the handlers, upload sessions and gc need from a database.

Two implementations: ``metadata.Metadata`` (SQLite ``<root>/registry.db``, the default) and
``pgmeta.PostgresMetadata`` (PostgreSQL, shared by replicas). Both keep repositories, repo→blob links, manifests
with what they reference, tags and upload sessions, and both make every write one transaction: a write that
publishes a name (``put_manifest``) runs its ``check`` (the blobs are in the storage and linked) inside that
transaction, after the blob bytes are durable, so no reader ever sees a tag whose manifest or blobs are missing.

``sweep()`` is gc's delete phase: one transaction that excludes every publishing write for its duration (SQLite:
the one write lock; PostgreSQL: an advisory lock publishing writes hold shared), so a candidate gc re-checks there
cannot gain a reference before it is deleted. ``create_upload`` with ``UploadLimits`` counts a repository's and a
client's open sessions and inserts the new one in one transaction that excludes every other ``create_upload``, so
N replicas on one database share one limit. A database that cannot be reached raises
``storage.StorageUnavailable`` (the handlers answer 503).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = ["ManifestRow", "MetadataStore", "Sweep", "TagRow", "TooManyUploads", "UploadLimits", "UploadRow"]


@dataclass(frozen=True, slots=True)
class ManifestRow:
    repo: str
    digest: str
    media_type: str
    size: int
    artifact_type: str
    subject: str | None
    annotations: dict[str, str]


class TagRow(NamedTuple):
    """A tag with its manifest's media type and size (empty, 0 when the row is missing) and last push time (a
    named tuple: the web page reads tens of thousands at once)."""

    repo: str
    tag: str
    digest: str
    updated: float
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class UploadRow:
    id: str
    repo: str
    algorithm: str
    offset: int
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """Open upload sessions a repository and a client address may have, counted over every process using the
    database; a session idle (its row not written) for ``idle`` seconds no longer counts."""

    per_repo: int
    per_client: int
    idle: float


class TooManyUploads(Exception):
    """``create_upload`` refused a session: ``scope`` (``repository`` or ``client``) already has ``limit`` open."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"{scope} has {limit} open upload sessions")
        self.scope, self.limit = scope, limit


class Sweep(Protocol):
    """gc's view inside its delete transaction (see ``MetadataStore.sweep``)."""

    def is_referenced(self, digest: str) -> bool: ...

    def last_touch(self, digest: str) -> float:
        """Newest link time of ``digest`` in any repository (0.0: none)."""
        ...

    def drop_links(self, digest: str) -> None: ...


class MetadataStore(Protocol):
    """Thread-safe registry metadata; close with ``close()``."""

    shared: bool  # other processes (replicas) may use the same database at once

    def close(self) -> None: ...

    # reads
    def tag(self, repo: str, tag: str) -> str | None: ...

    def manifest(self, repo: str, digest: str) -> ManifestRow | None: ...

    def has_link(self, repo: str, digest: str) -> bool: ...

    def repos_with_blob(self, digest: str) -> list[str]: ...

    def tags(self, repo: str, *, last: str = "", limit: int = 1000) -> list[str]: ...

    def tags_of(self, repo: str, digest: str) -> list[str]: ...

    def tag_rows(self) -> list[TagRow]:
        """Every tag of every repository, ordered by repository and tag, in one query (the web page)."""
        ...

    def repo_exists(self, repo: str) -> bool: ...

    def repos(self, *, last: str = "", limit: int = 1000) -> list[str]: ...

    def referrers(self, repo: str, subject: str) -> list[ManifestRow]: ...

    def upload(self, upload_id: str) -> UploadRow | None: ...

    def uploads(self) -> list[UploadRow]: ...

    def upload_state(self, upload_id: str) -> str | None: ...

    def referenced_digests(self) -> set[str]:
        """Every digest a registry manifest is, or references (config, layers, children): gc's mark."""
        ...

    def last_link_touch(self, digest: str) -> float: ...

    # writes (each one transaction)
    def link(self, repo: str, digest: str) -> None: ...

    def unlink(self, repo: str, digest: str) -> None: ...

    def put_manifest(self, row: ManifestRow, refs: Sequence[str], tags: Sequence[str],
                     check: Callable[[], None]) -> None:
        """Record a manifest and move every tag of ``tags`` to it, all or none; ``check`` runs inside the
        transaction (gc's sweep cannot run between it and the commit)."""
        ...

    def delete_manifest(self, repo: str, digest: str) -> bool: ...

    def delete_tag(self, repo: str, tag: str) -> bool: ...

    def create_upload(self, upload_id: str, repo: str, algorithm: str, client: str = "",
                      limits: UploadLimits | None = None) -> None:
        """Record a new session of ``repo`` for the client at address ``client``. With ``limits``, the open
        sessions of the repository and of the client are counted in the same transaction, serialized with every
        other ``create_upload`` on the database (replicas share the limits). :raises TooManyUploads:"""
        ...

    def advance_upload(self, upload_id: str, offset: int, state: str = "") -> bool: ...

    def finish_upload(self, upload_id: str, repo: str | None = None, digest: str | None = None) -> bool: ...

    def clear_uploads(self) -> list[str]: ...

    def sweep(self) -> AbstractContextManager[Sweep]:
        """gc's delete phase: one transaction excluding every publishing write until it ends."""
        ...

    def gc_lock(self) -> AbstractContextManager[bool]:
        """Held for a whole gc run; yields False when another gc (any process) holds it."""
        ...

