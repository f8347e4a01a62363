"""Statements → attestation manifests in the store, attached the OCI 1.1 way (default) or the buildx way.

API::

    attach_referrers(images, statements) -> [Descriptor]        # one referrer manifest per statement
    attach_buildx(images, index, statements) -> Descriptor      # a new index with attestation manifests

**Referrers** (default): each statement is an OCI artifact manifest: ``artifactType``
``application/vnd.in-toto+json``, the empty config (``application/vnd.oci.empty.v1+json``, ``{}``), one layer (the
statement, media type ``application/vnd.in-toto+json``, annotation ``in-toto.io/predicate-type``) and
``subject`` = the platform manifest. They are kept in the store as referrers (``content.referrers``); the index
is unchanged, so it never lists an ``unknown/unknown`` entry.

**buildx** (``--attest-mode=buildx``, BuildKit's attestation storage): per platform one image manifest whose
layers are that platform's statements and whose config is an image config with ``unknown`` os and architecture;
the index lists it after the images with platform ``unknown/unknown`` and the annotations
``vnd.docker.reference.type`` = ``attestation-manifest``, ``vnd.docker.reference.digest`` = the platform manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from polyarch.content.images import ImageStore
from polyarch.content.referrers import add_store_referrers
from polyarch.digest import Digest
from polyarch.oci.spec import REFERENCE_DIGEST, REFERENCE_TYPE, Descriptor, Index, Manifest, MediaType
from polyarch.platform import Platform

from .generate import Statement
from .statement import ANNOTATION_PREDICATE, INTOTO_MEDIA_TYPE

__all__ = ["REFERENCE_DIGEST", "REFERENCE_TYPE", "attach_buildx", "attach_referrers"]

_EMPTY = b"{}"


def _layer(images: ImageStore, st: Statement) -> Descriptor:
    digest, size = images.store.write(st.raw)
    return Descriptor(INTOTO_MEDIA_TYPE, digest, size, annotations={ANNOTATION_PREDICATE: st.predicate_type})


def attach_referrers(images: ImageStore, statements: Sequence[Statement]) -> list[Descriptor]:
    """Write each statement as a referrer of its subject; returns the referrer descriptors."""
    digest, size = images.store.write(_EMPTY)
    config = Descriptor(MediaType.OCI_EMPTY, digest, size)
    out: list[tuple[Descriptor, Digest]] = []
    for st in statements:
        layer = _layer(images, st)
        subject = Descriptor(st.subject.media_type, st.subject.digest, st.subject.size)
        notes = {ANNOTATION_PREDICATE: st.predicate_type}
        manifest = Manifest(config, (layer,), MediaType.OCI_MANIFEST, notes, subject=subject,
                            artifact_type=INTOTO_MEDIA_TYPE)
        desc = images.put_document(manifest)
        desc = Descriptor(desc.media_type, desc.digest, desc.size, annotations=notes, artifact_type=INTOTO_MEDIA_TYPE)
        out.append((desc, st.subject.digest))
    return add_store_referrers(images, out)


def attach_buildx(images: ImageStore, index: Descriptor, statements: Sequence[Statement]) -> Descriptor:
    """A new index: ``index``'s entries, then one attestation manifest per platform manifest that has statements."""
    doc = images.read_document(index).document
    assert isinstance(doc, Index)
    by_subject: dict[Digest, list[Statement]] = {}
    for st in statements:
        by_subject.setdefault(st.subject.digest, []).append(st)
    extra: list[Descriptor] = []
    for child in doc.manifests:
        mine = by_subject.get(child.digest)
        if not mine:
            continue
        layers = tuple(_layer(images, st) for st in mine)
        config = {"architecture": "unknown", "os": "unknown", "config": {},
                  "rootfs": {"type": "layers",
                             "diff_ids": ["sha256:" + hashlib.sha256(st.raw).hexdigest() for st in mine]}}
        cdigest, csize = images.store.write(json.dumps(config, separators=(",", ":"), sort_keys=True).encode())
        manifest = Manifest(Descriptor(MediaType.OCI_CONFIG, cdigest, csize), layers, MediaType.OCI_MANIFEST, {})
        desc = images.put_document(manifest)
        extra.append(Descriptor(desc.media_type, desc.digest, desc.size, Platform("unknown", "unknown"),
                                {REFERENCE_DIGEST: str(child.digest), REFERENCE_TYPE: "attestation-manifest"}))
    return images.put_document(Index((*doc.manifests, *extra), doc.media_type, dict(doc.annotations)))
