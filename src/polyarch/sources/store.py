"""The local store (or any content store) as a ``ContentSource``; its blobs were verified when written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from polyarch.content.images import REF_NAME, Image, ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import BuildError, NotFound
from polyarch.oci.reference import Reference
from polyarch.oci.spec import Descriptor
from polyarch.platform import Platform

from .protocol import MAX_DOCUMENT, ContentSource, Opened, check_limit, verified

__all__ = ["StoreSource", "open_name", "without_ref_name"]


class StoreSource:
    """Blobs of a content store; ``image`` answers build ``FROM`` from the store's names."""

    def __init__(self, store: ContentStore | ImageStore, *, name: str | None = None) -> None:
        self.images = store if isinstance(store, ImageStore) else ImageStore(store)
        self.store = self.images.store
        self._name = name or str(self.store.root)

    @property
    def name(self) -> str:
        return self._name

    @property
    def repository(self) -> Reference | None:
        return None

    def read(self, desc: Descriptor, *, limit: int = MAX_DOCUMENT) -> bytes:
        if desc.data is not None and len(desc.data) == desc.size and \
                Digest.of(desc.data, desc.digest.algorithm) == desc.digest:
            return desc.data
        check_limit(desc, limit)
        return verified(self.store.read(desc.digest, limit=limit), desc, self.name)

    def has_blob(self, desc: Descriptor) -> bool:
        return self.store.stat(desc.digest) == desc.size

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        with self.store.open(desc.digest) as f:
            yield f

    @contextmanager
    def blob_file(self, desc: Descriptor) -> Iterator[Path]:
        size = self.store.stat(desc.digest)
        if size != desc.size:
            raise NotFound(f"blob {desc.digest} is not in {self.name}" if size is None else
                           f"blob {desc.digest} in {self.name} has {size} bytes, descriptor says {desc.size}")
        yield self.store.blob_path(desc.digest)

    def route(self, child: Descriptor) -> ContentSource:
        return self

    def close(self) -> None:
        pass

    def image(self, ref: str, platform: Platform) -> Image:
        """The store's image for ``ref`` and ``platform`` (build ``FROM``).

        :raises BuildError: the store has no such image or platform.
        """
        try:
            return self.images.images(self.images.lookup(ref), [platform])[0]
        except NotFound as exc:
            raise BuildError(f"base image {ref!r} for {platform}: {exc.message}",
                             hint=f"run 'polyarch pull --platform {platform} {ref}' or 'polyarch import' first"
                             ) from exc


def without_ref_name(desc: Descriptor) -> Descriptor:
    """``desc`` without the index.json ``ref.name`` annotation (not part of the image)."""
    return desc.with_annotations({k: v for k, v in desc.annotations.items() if k != REF_NAME})


def open_name(images: ImageStore, name: str, label: str) -> Opened:
    """The image ``name`` of the store. :raises NotFound: no such name (with the store's hint)."""
    source = StoreSource(images)
    desc = without_ref_name(images.lookup(name))
    return Opened(source, desc, source.read(desc), label)
