"""New documents held in memory over other sources (``imagetools create``/``copy`` merging images)."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from polyarch.oci.reference import Reference
from polyarch.oci.spec import Descriptor

from .protocol import MAX_DOCUMENT, ContentSource, check_limit, verified

__all__ = ["CompositeSource"]


class CompositeSource:
    """``documents`` (digest → bytes) in memory; each child's tree read from the source ``routes`` names for it,
    or ``default``; blobs from ``default``."""

    def __init__(self, documents: Mapping[str, bytes], routes: Mapping[str, ContentSource],
                 default: ContentSource) -> None:
        self.documents = dict(documents)
        self.routes = dict(routes)
        self.default = default

    @property
    def name(self) -> str:
        return self.default.name

    @property
    def repository(self) -> Reference | None:
        return self.default.repository

    def read(self, desc: Descriptor, *, limit: int = MAX_DOCUMENT) -> bytes:
        raw = self.documents.get(str(desc.digest))
        if raw is not None:
            check_limit(desc, limit)
            return verified(raw, desc, "new document")
        return self.route(desc).read(desc, limit=limit)

    def has_blob(self, desc: Descriptor) -> bool:
        return self.default.has_blob(desc)

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[IO[bytes]]:
        return self.default.open_blob(desc)

    def blob_file(self, desc: Descriptor) -> AbstractContextManager[Path]:
        return self.default.blob_file(desc)

    def route(self, child: Descriptor) -> ContentSource:
        return self.routes.get(str(child.digest), self.default)

    def close(self) -> None:
        self.default.close()
