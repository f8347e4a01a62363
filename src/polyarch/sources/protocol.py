"""The seam every image reader goes through: ``ContentSource`` (read-only content at one place), ``Location`` (a
parsed location string) and ``Opened`` (what a location names: a source and the root document in it).

Every read is checked against its descriptor: ``read`` hashes the whole small blob, ``open_blob`` streams a
blob whose bytes are checked as they are read (``DigestMismatch`` at the latest at EOF) unless the source
verified them when they were written (the local store on ingest, a registry download before use).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Protocol

from polyarch.content.images import MAX_CONFIG, MAX_MANIFEST, check_config_size
from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, LimitExceeded
from polyarch.oci.reference import Reference
from polyarch.oci.spec import Descriptor, Index, Manifest, is_manifest, parse_config, parse_document
from polyarch.platform import Platform

__all__ = ["MAX_DOCUMENT", "ContentSource", "Location", "Opened", "Scheme", "check_limit", "read_config", "verified"]

MAX_DOCUMENT = MAX_MANIFEST


class ContentSource(Protocol):
    """Read-only image content at one place (the local store, an OCI layout, an archive, a registry repository)."""

    @property
    def name(self) -> str:
        """How messages call the place (a path, a repository, "local store")."""
        ...

    @property
    def repository(self) -> Reference | None:
        """The registry repository the blobs live in (for cross-repository mounts), None when local."""
        ...

    def read(self, desc: Descriptor, *, limit: int = MAX_DOCUMENT) -> bytes:
        """A small blob (manifest, index, config) whole, checked against ``desc``'s digest and size.

        :raises NotFound: absent. :raises DigestMismatch: not ``desc``'s bytes.
        :raises LimitExceeded: ``desc.size`` over ``limit`` (before anything is fetched).
        """
        ...

    def has_blob(self, desc: Descriptor) -> bool:
        """Whether the blob (a config or layer; documents are ``read``) is there with ``desc``'s size."""
        ...

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[IO[bytes]]:
        """A stream of a (layer) blob's stored bytes, checked as read. :raises NotFound: absent."""
        ...

    def blob_file(self, desc: Descriptor) -> AbstractContextManager[Path]:
        """A file holding the verified blob (push uploads from files); a temporary one is removed on exit."""
        ...

    def route(self, child: Descriptor) -> ContentSource:
        """The source holding ``child``'s tree: itself, except for composites."""
        ...

    def close(self) -> None:
        """Release what the source holds (an archive's open file); never the collaborators it was given."""
        ...


class Scheme(StrEnum):
    """The location syntaxes (``polyarch.sources.location``); ``BARE`` is a string without a scheme."""

    BARE = ""
    LOCAL = "local"
    LAYOUT = "oci-layout"
    OCI_ARCHIVE = "oci-archive"
    DOCKER_ARCHIVE = "docker-archive"
    IMAGE = "docker-image"


@dataclass(frozen=True, slots=True)
class Location:
    """A parsed location string (``location.parse_location``); ``str()`` gives it back."""

    scheme: Scheme
    target: str  # NAME, PATH[:TAG] or REF as written
    digest: Digest | None = None  # @DIGEST of a layout or archive

    def __str__(self) -> str:
        if self.scheme is Scheme.BARE:
            return self.target
        if self.scheme is Scheme.LOCAL:
            return f"local:{self.target}"
        tail = f"@{self.digest}" if self.digest is not None else ""
        return f"{self.scheme.value}://{self.target}{tail}"


def check_limit(desc: Descriptor, limit: int) -> None:
    """:raises LimitExceeded: when ``desc`` declares more than ``limit`` bytes."""
    if desc.size > limit:
        raise LimitExceeded(f"blob {desc.digest} of {desc.size} bytes exceeds {limit}")


def verified(raw: bytes, desc: Descriptor, where: str) -> bytes:
    """``raw`` when it is ``desc``'s bytes. :raises DigestMismatch: naming ``where``."""
    if len(raw) != desc.size:
        raise DigestMismatch(f"{where}: blob {desc.digest} has {len(raw)} bytes, its descriptor says {desc.size}")
    got = Digest.of(raw, desc.digest.algorithm)
    if got != desc.digest:
        raise DigestMismatch(f"{where}: blob {desc.digest} hashes to {got}")
    return raw


def read_config(source: ContentSource, desc: Descriptor) -> bytes:
    """An image config from any source, refused before it is fetched when declared over ``MAX_CONFIG``."""
    check_config_size(desc)
    return source.read(desc, limit=MAX_CONFIG)


@dataclass(frozen=True, slots=True)
class Opened:
    """What a location names: the source, its root document (manifest or index) and how to call it."""

    source: ContentSource
    descriptor: Descriptor  # the root, without the layout's ref.name annotation
    raw: bytes  # the root document's bytes, verified
    name: str  # how messages (and ``imagetools inspect``) call it
    ref: Reference | None = None  # set for registry locations

    @property
    def document(self) -> Manifest | Index:
        return parse_document(self.raw, self.descriptor.media_type)

    def platforms(self) -> list[Platform]:
        """The platforms the image offers: an index's image children with a known platform, else the config's."""
        doc = self.document
        if isinstance(doc, Index):
            return [m.platform for m in doc.manifests if m.platform is not None and is_manifest(m.media_type)
                    and m.platform.os != "unknown" and m.platform.architecture != "unknown"]
        return [parse_config(read_config(self.source, doc.config)).platform]

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

