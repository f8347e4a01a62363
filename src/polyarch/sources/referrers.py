"""OCI 1.1 referrers (manifests with a ``subject``): where they are kept in the store, how they are pushed and how
they are listed from a registry, with the referrers tag schema where a registry has no referrers API.

API::

    SUBJECT_ANNOTATION                                # index.json entries: the subject digest of a referrer
    store_referrers(images, subject) -> [Descriptor]  # referrers of ``subject`` in the local store
    referrers_under(images, root) -> [Descriptor]     # of every manifest under ``root`` (archives, layouts)
    add_store_referrers(images, [(desc, subject)])    # keep them (unnamed index.json entries, gc roots)
    registry_referrers(client, ref, subject) -> [Descriptor]   # API, else the ``sha256-<hex>`` tag's index
    push_referrers(images, subjects, dest, client) -> int      # every store referrer of ``subjects``

**Store representation.** A referrer is an unnamed entry of the store's ``index.json`` (the OCI image layout's
own way to keep an untagged manifest reachable, so gc keeps it) whose descriptor carries ``artifactType`` and
the annotation ``io.polyarch.referrer.subject`` = the subject manifest's digest. Listing commands leave such
entries out. The entry goes away with ``polyarch prune`` only when its subject is no longer named (not yet:
referrers of a removed image stay until removed by hand).

**Push.** Each referrer tree is pushed by digest after its subject. Then ``GET /v2/NAME/referrers/DIGEST``
tells whether the registry keeps referrers itself (200); a 404 means it does not (Debian's docker-registry
2.8), and the referrers tag schema is used: the tag ``<alg>-<hex>`` of the subject holds an OCI index of its
referrers, read, extended and written back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from polyarch.content.images import ImageStore
from polyarch.digest import Digest
from polyarch.errors import RegistryError
from polyarch.oci.jsonutil import canonical_json
from polyarch.oci.reference import Reference
from polyarch.oci.spec import Descriptor, Index, MediaType, parse_document

if TYPE_CHECKING:
    from polyarch.registry.client import RegistryClient

__all__ = ["SUBJECT_ANNOTATION", "add_store_referrers", "fallback_tag", "push_referrers", "referrers_under",
           "registry_referrers", "store_referrers"]

SUBJECT_ANNOTATION = "io.polyarch.referrer.subject"
_MAX_INDEX = 4 << 20


def fallback_tag(subject: Digest) -> str:
    """The referrers tag schema's tag of ``subject``: ``sha256-<hex>``."""
    return f"{subject.algorithm}-{subject.hex}"[:128]


def store_referrers(images: ImageStore, subject: Digest) -> list[Descriptor]:
    """The store's referrers of ``subject`` (index.json order)."""
    return [d for d in images.entries() if d.annotations.get(SUBJECT_ANNOTATION) == str(subject)]


def referrers_under(images: ImageStore, root: Descriptor) -> list[Descriptor]:
    """The store's referrers of every manifest under ``root`` (itself and its children), each once."""
    from polyarch.oci.spec import is_index, is_manifest

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
    entries = [d.with_annotations({**d.annotations, SUBJECT_ANNOTATION: str(subject)}) for d, subject in items]

    def change(current: list[Descriptor]) -> list[Descriptor]:
        have = {(str(e.digest), e.annotations.get(SUBJECT_ANNOTATION)) for e in current}
        return [*current, *(e for e in entries if (str(e.digest), e.annotations[SUBJECT_ANNOTATION]) not in have)]

    if entries:
        images.update(change)
    return entries


def _api(client: RegistryClient, ref: Reference, subject: Digest) -> list[Descriptor] | None:
    """The referrers API's answer, or None when the registry has no such API (404)."""
    from polyarch.registry import auth

    reg = client.endpoint(ref.domain)
    scopes = [auth.scope_for(ref.path, "pull")]
    url = f"{reg.base}/v2/{ref.path}/referrers/{subject}"
    resp = client.call(reg, "GET", url, scopes=scopes, headers={"Accept": MediaType.OCI_INDEX})
    try:
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise client.fail(reg, resp, f"referrers of {ref.name}@{subject}", scopes)
        raw = resp.read()
    finally:
        resp.close()
    if len(raw) > _MAX_INDEX:
        raise RegistryError(f"referrers of {ref.name}@{subject}: answer larger than {_MAX_INDEX} bytes")
    doc = parse_document(raw, MediaType.OCI_INDEX)
    return list(doc.manifests) if isinstance(doc, Index) else []


def _tag_index(client: RegistryClient, ref: Reference, subject: Digest) -> list[Descriptor]:
    tagged = ref.with_tag(fallback_tag(subject))
    if client.head_manifest(tagged) is None:
        return []
    fetched = client.get_manifest(tagged)
    doc = parse_document(fetched.raw, fetched.media_type)
    return list(doc.manifests) if isinstance(doc, Index) else []


def registry_referrers(client: RegistryClient, ref: Reference, subject: Digest) -> list[Descriptor]:
    """The referrers of ``subject`` in ``ref``'s repository: the API's list, else the fallback tag's index."""
    found = _api(client, ref, subject)
    return found if found is not None else _tag_index(client, ref, subject)


def push_referrers(images: ImageStore, subjects: Sequence[Digest], dest: Reference, *,
                   client: RegistryClient) -> int:
    """Push the store's referrers of each subject (already pushed) to ``dest``'s repository; returns how many."""
    from .transfer import push_image

    count = 0
    base = Reference(dest.domain, dest.path)
    for subject in subjects:
        mine = store_referrers(images, subject)
        if not mine:
            continue
        clean = [d.with_annotations({k: v for k, v in d.annotations.items() if k != SUBJECT_ANNOTATION})
                 for d in mine]
        for desc in clean:
            push_image(images, desc, base, client=client)
            count += 1
        if _api(client, base, subject) is None:  # no referrers API: the tag schema
            have = _tag_index(client, base, subject)
            known = {str(d.digest) for d in have}
            merged = [*have, *(d for d in clean if str(d.digest) not in known)]
            raw = canonical_json({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX,
                                  "manifests": [d.to_dict() for d in merged]})
            client.put_manifest(base.with_tag(fallback_tag(subject)), raw, MediaType.OCI_INDEX)
    return count
