"""What the database records of a manifest: its ``ManifestRow`` and the digests it references, read from its bytes.

One reading for a manifest pushed by a client (``manifests.put_manifest``) and one fetched from an upstream by the
pull-through mirror (``proxy``): an image manifest references its config and layers, an index its children; the
artifact type of an image manifest without one is its config's media type (distribution-spec 1.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from polyarch.digest import Digest
from polyarch.oci.spec import Index, Manifest, parse_document

from .metastore import ManifestRow

__all__ = ["Described", "describe"]


@dataclass(frozen=True, slots=True)
class Described:
    doc: Manifest | Index
    row: ManifestRow
    refs: tuple[str, ...]


def describe(repo: str, raw: bytes, digest: Digest, content_type: str | None) -> Described:
    """Parse ``raw`` (whose digest the caller checked). :raises InvalidManifest:"""
    doc = parse_document(raw, content_type)
    if isinstance(doc, Manifest):
        refs = (str(doc.config.digest), *(str(layer.digest) for layer in doc.layers))
        artifact = doc.artifact_type or doc.config.media_type  # an image's artifact type is its config's
    else:
        refs = tuple(str(m.digest) for m in doc.manifests)
        artifact = doc.artifact_type
    subject = str(doc.subject.digest) if doc.subject is not None else None
    row = ManifestRow(repo, str(digest), doc.media_type, len(raw), artifact, subject, dict(doc.annotations))
    return Described(doc, row, refs)
