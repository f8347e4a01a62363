"""Values the solver hands around: a layer, and the result of one vertex (a ``State``).

A ``State`` is a filesystem tree described either by a stack of layers (images, COPY/RUN/WORKDIR results) or by
a host directory (the build context, inline files). ``added`` is the layer the vertex put on top of its root
(None when it added nothing, or for sources); ``config`` the image config of an ``ImageSource``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyarch.digest import Digest
from polyarch.oci.spec import Descriptor, ImageConfig

__all__ = ["Layer", "State"]


@dataclass(frozen=True, slots=True)
class Layer:
    descriptor: Descriptor  # the compressed blob in the content store
    diff_id: Digest
    uncompressed_size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"descriptor": self.descriptor.to_dict(), "diff_id": str(self.diff_id),
                "size": self.uncompressed_size}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Layer:
        return cls(Descriptor.from_dict(doc["descriptor"]), Digest.parse(doc["diff_id"]), int(doc.get("size", 0)))


@dataclass(frozen=True, slots=True)
class State:
    key: str  # the persistent cache key of this result
    layers: tuple[Layer, ...] = ()
    directory: Path | None = None  # a host tree (context, inline files) instead of layers
    exclude: tuple[str, ...] = ()  # .dockerignore-style patterns applied when reading ``directory``
    added: Layer | None = None
    config: ImageConfig | None = None  # ImageSource only
    manifest: Descriptor | None = None  # ImageSource only: the resolved image manifest
    cached: bool = False
