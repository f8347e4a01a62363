"""How OCI 1.1 referrers (manifests with a ``subject``: attestations, signatures) are kept in an image layout's
``index.json`` — the local store, an OCI layout directory, an OCI archive.

API::

    SUBJECT_ANNOTATION                                  # the subject digest of a referrer entry
    is_referrer(entry) -> bool                          # an index.json entry that is a referrer, not an image
    referrer_entry(desc, subject) -> Descriptor         # the entry that keeps ``desc`` as a referrer of ``subject``
    plain_referrer(entry) -> Descriptor                 # the entry as a referrers list names it (annotation dropped)
    referrers_in(entries, subject) -> [Descriptor]      # the referrer entries of ``subject`` (index.json order)
    store_referrers(images, subject) -> [Descriptor]    # the same, of a store or layout
    referrers_under(images, root) -> [Descriptor]       # of every manifest and index under ``root``, each once
    add_store_referrers(images, [(desc, subject)])      # keep them (one index.json update; none twice)

A referrer is an unnamed ``index.json`` entry (the layout's own way to keep an untagged manifest reachable, so gc
keeps it) whose descriptor carries ``artifactType`` and the annotation ``io.polyarch.referrer.subject`` = the
subject's digest. Listing commands leave such entries out (``images``, a layout's image choice, ``load``'s
report). Referrers of a removed image stay until removed by hand (``polyarch prune`` does not drop them yet).
"""

from __future__ import annotations

from collections.abc import Sequence

from polyarch.digest import Digest
from polyarch.oci.spec import Descriptor, is_index, is_manifest

from .images import ImageStore

__all__ = ["SUBJECT_ANNOTATION", "add_store_referrers", "is_referrer", "plain_referrer", "referrer_entry",
           "referrers_in", "referrers_under", "store_referrers"]

SUBJECT_ANNOTATION = "io.polyarch.referrer.subject"


def is_referrer(entry: Descriptor) -> bool:
    """Whether an ``index.json`` entry is a kept referrer (not an image)."""
    return SUBJECT_ANNOTATION in entry.annotations


def referrer_entry(desc: Descriptor, subject: Digest) -> Descriptor:
    """The ``index.json`` entry keeping ``desc`` as a referrer of ``subject``."""
    return desc.with_annotations({**desc.annotations, SUBJECT_ANNOTATION: str(subject)})


def plain_referrer(entry: Descriptor) -> Descriptor:
    """``entry`` as a referrers list names it: without the store's subject annotation."""
    return entry.with_annotations({k: v for k, v in entry.annotations.items() if k != SUBJECT_ANNOTATION})


def referrers_in(entries: Sequence[Descriptor], subject: Digest) -> list[Descriptor]:
    """The referrer entries of ``subject`` among ``entries`` (index.json order, annotation kept)."""
    return [d for d in entries if d.annotations.get(SUBJECT_ANNOTATION) == str(subject)]


def store_referrers(images: ImageStore, subject: Digest) -> list[Descriptor]:
    """The store's referrers of ``subject`` (index.json order)."""
    return referrers_in(images.entries(), subject)


def referrers_under(images: ImageStore, root: Descriptor) -> list[Descriptor]:
    """The store's referrers of every manifest under ``root`` (itself and its children), each once."""
    subjects = [d.digest for d in images.walk(root) if is_manifest(d.media_type) or is_index(d.media_type)]
    out: dict[Digest, Descriptor] = {}
    if subjects:
        wanted = {str(s) for s in subjects}
        for d in images.entries():
            if d.annotations.get(SUBJECT_ANNOTATION) in wanted:
                out.setdefault(d.digest, d)
    return list(out.values())


def add_store_referrers(images: ImageStore, items: Sequence[tuple[Descriptor, Digest]]) -> list[Descriptor]:
    """Keep each ``(desc, subject)`` (``desc`` already in the store) as a referrer of ``subject``, in one
    index.json update; one already kept is not added twice. Returns the entries."""
    entries = [referrer_entry(d, subject) for d, subject in items]

    def change(current: list[Descriptor]) -> list[Descriptor]:
        have = {(str(e.digest), e.annotations.get(SUBJECT_ANNOTATION)) for e in current}
        out = list(current)
        for e in entries:
            key = (str(e.digest), e.annotations[SUBJECT_ANNOTATION])
            if key not in have:
                have.add(key)
                out.append(e)
        return out

    if entries:
        images.update(change)
    return entries
