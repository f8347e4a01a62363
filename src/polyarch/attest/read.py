"""Reading an image's attestations back, wherever it is: referrers (store or registry) and buildx index entries.

API::

    Attestation(platform, subject, kind, predicate_type, manifest, layer, attached)
    list_attestations(opened, *, images=None, client=None) -> [Attestation]   # per platform, SBOM then provenance
    read_statement(opened, att) -> dict                                       # the in-toto statement, parsed

``attached`` says how: ``referrer`` (OCI 1.1 subject) or ``index`` (buildx's ``unknown/unknown`` entries). Store
referrers are found in the source's own ``index.json`` (store, layout, OCI archive), registry ones with ``client``
(the referrers API, else the tag schema). A statement is at most ``MAX_STATEMENT`` bytes and must be a JSON
object with a ``predicateType``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyarch.content.images import ImageStore
from polyarch.digest import Digest
from polyarch.errors import InvalidManifest
from polyarch.oci.spec import Descriptor, Index, Manifest, is_manifest, parse_document
from polyarch.sources.protocol import Opened
from polyarch.sources.referrers import SUBJECT_ANNOTATION, registry_referrers
from polyarch.sources.store import StoreSource
from polyarch.sources.tarball import TarballSource

from .attach import REFERENCE_DIGEST

if TYPE_CHECKING:
    from polyarch.registry.client import RegistryClient
from .statement import ANNOTATION_PREDICATE, INTOTO_MEDIA_TYPE, kind_of

__all__ = ["MAX_STATEMENT", "Attestation", "list_attestations", "read_statement"]

MAX_STATEMENT = 64 << 20


@dataclass(frozen=True, slots=True)
class Attestation:
    platform: str
    subject: Digest
    kind: str  # sbom | provenance | "" (another predicate)
    predicate_type: str
    manifest: Descriptor
    layer: Descriptor
    attached: str  # referrer | index


def _layers(opened: Opened, desc: Descriptor) -> list[Descriptor]:
    doc = parse_document(opened.source.read(desc), desc.media_type)
    if not isinstance(doc, Manifest):
        return []
    return [x for x in doc.layers if x.media_type == INTOTO_MEDIA_TYPE]


def _platform_entries(opened: Opened) -> tuple[list[Descriptor], list[Descriptor]]:
    doc = opened.document
    if isinstance(doc, Manifest):
        return [opened.descriptor], []
    assert isinstance(doc, Index)
    images = [m for m in doc.manifests if is_manifest(m.media_type) and REFERENCE_DIGEST not in m.annotations
              and not (m.platform is not None and m.platform.os == "unknown")]
    atts = [m for m in doc.manifests if REFERENCE_DIGEST in m.annotations]
    return images, atts


def _index_entries(opened: Opened, images: ImageStore | None) -> list[Descriptor] | None:
    """The entries of the index.json of a store, layout or OCI archive source (None for a registry)."""
    source = opened.source
    if isinstance(source, StoreSource):
        return source.images.entries()
    if isinstance(source, TarballSource):
        reader = source.reader
        if "index.json" not in reader.members:
            return []
        doc = reader.read_json("index.json")
        raw = doc.get("manifests") if isinstance(doc, dict) else None
        return [Descriptor.from_dict(d, "index.json") for d in raw if isinstance(d, dict)] \
            if isinstance(raw, list) else []
    return None if opened.ref is not None else (images.entries() if images is not None else [])


def list_attestations(opened: Opened, *, images: ImageStore | None = None,
                      client: RegistryClient | None = None) -> list[Attestation]:
    """Every attestation of every platform manifest of ``opened``."""
    entries, in_index = _platform_entries(opened)
    out: list[Attestation] = []
    for entry in entries:
        label = str(entry.platform) if entry.platform is not None else "?"
        found: list[tuple[Descriptor, str]] = []
        local = _index_entries(opened, images)
        if local is not None:
            found += [(d, "referrer") for d in local if d.annotations.get(SUBJECT_ANNOTATION) == str(entry.digest)]
        elif client is not None and opened.ref is not None:
            found += [(d, "referrer") for d in registry_referrers(client, opened.ref, entry.digest)
                      if d.artifact_type in ("", INTOTO_MEDIA_TYPE)]
        found += [(d, "index") for d in in_index if d.annotations.get(REFERENCE_DIGEST) == str(entry.digest)]
        for desc, how in found:
            for layer in _layers(opened, desc):
                ptype = layer.annotations.get(ANNOTATION_PREDICATE, "")
                out.append(Attestation(label, entry.digest, kind_of(ptype), ptype, desc, layer, how))
    order = {"sbom": 0, "provenance": 1}
    out.sort(key=lambda a: (entries.index(next(e for e in entries if e.digest == a.subject)), order.get(a.kind, 2)))
    return out


def read_statement(opened: Opened, att: Attestation) -> dict[str, Any]:
    """The statement ``att`` names, parsed.

    :raises InvalidManifest: not a JSON object with a predicateType.
    """
    raw = opened.source.read(att.layer, limit=MAX_STATEMENT)
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InvalidManifest(f"attestation {att.layer.digest} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("predicateType"), str):
        raise InvalidManifest(f"attestation {att.layer.digest} is not an in-toto statement")
    return doc
