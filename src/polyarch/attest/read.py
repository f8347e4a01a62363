"""Reading an image's attestations back, wherever it is: referrers (store or registry) and buildx index entries.

API::

    Attestation(platform, subject, kind, predicate_type, manifest, layer, attached)
    list_attestations(opened) -> [Attestation]                                # per platform, SBOM then provenance
    read_statement(opened, att) -> dict                                       # the in-toto statement, parsed

``attached`` says how: ``referrer`` (OCI 1.1 subject) or ``index`` (buildx's ``unknown/unknown`` entries).
Referrers come from where the image is (``sources.referrers.source_referrers``): the ``index.json`` of a store,
layout or OCI archive, a registry's referrers API or else its tag schema; only in-toto ones (``artifactType``
``application/vnd.in-toto+json`` or none) are read. A statement is at most ``MAX_STATEMENT`` bytes and must be a JSON
object with a ``predicateType``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from polyarch.digest import Digest
from polyarch.errors import InvalidManifest
from polyarch.oci.spec import Descriptor, Index, Manifest, MediaType, is_manifest, parse_document
from polyarch.sources.protocol import Opened
from polyarch.sources.referrers import source_referrers

from .attach import REFERENCE_DIGEST
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
    if isinstance(doc, Manifest):  # one image: its platform is its config's
        desc = opened.descriptor
        if desc.platform is None and doc.config.media_type in (MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG):
            desc = desc.with_platform(opened.platforms()[0])
        return [desc], []
    assert isinstance(doc, Index)
    images = [m for m in doc.manifests if is_manifest(m.media_type) and REFERENCE_DIGEST not in m.annotations
              and not (m.platform is not None and m.platform.os == "unknown")]
    atts = [m for m in doc.manifests if REFERENCE_DIGEST in m.annotations]
    return images, atts


def list_attestations(opened: Opened) -> list[Attestation]:
    """Every attestation of every platform manifest of ``opened``."""
    entries, in_index = _platform_entries(opened)
    out: list[Attestation] = []
    for entry in entries:
        label = str(entry.platform) if entry.platform is not None else "?"
        found = [(d, "referrer") for d in source_referrers(opened.source, entry.digest)
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
