"""OCI 1.1 referrers (manifests with a ``subject``: SBOM and provenance attestations, signatures, any artifact)
wherever an image is: listed from any source, copied along with an image to a registry, fetched into the store.
How a store or layout keeps them is ``polyarch.content.referrers``.

API::

    fallback_tag(subject) -> str                              # the referrers tag schema's ``sha256-<hex>``
    registry_referrers(client, ref, subject) -> [Descriptor]  # the referrers API, else the fallback tag's index
    source_referrers(source, subject) -> [Descriptor]         # from any ContentSource (store, layout, archive,
                                                              #   registry, composite)
    copy_referrers(source, root, dest, client=…) -> int       # of every manifest under ``root``, to ``dest``'s repo
    push_referrers(images, subjects, dest, client=…) -> int   # the store's referrers of ``subjects`` to ``dest``
    pull_referrers(client, ref, images, root) -> int          # ``ref``'s repository's referrers into the store

**Listing.** A store, layout or OCI archive keeps referrers as annotated ``index.json`` entries; a registry is
asked ``GET /v2/NAME/referrers/DIGEST`` — 200 is its list, 404 means it has no referrers API (Debian's
docker-registry 2.8) and the referrers tag schema is read: the tag ``<alg>-<hex>`` of the subject holds an OCI
index of its referrers. A composite (``imagetools create``) asks the source each child came from.

**Copying** (``copy_referrers``, ``push_referrers``): each referrer's tree is pushed by digest after its subject
(which is already there); the referrers of a referrer (a signature of an SBOM) follow, up to ``MAX_DEPTH``
levels. A destination without the referrers API gets the tag schema: the subject's fallback tag is read,
extended with what is new and written back. Whether the destination has the API is asked once per copy.

**Fetching** (``pull_referrers``): the referrers of every manifest and index under ``root`` in the store (the
pulled platforms) are fetched by digest — manifests, configs and layers, verified — and kept as store referrers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyarch.content.images import ImageStore
from polyarch.content.referrers import add_store_referrers, plain_referrer, referrers_in, store_referrers
from polyarch.digest import Digest
from polyarch.errors import RegistryError
from polyarch.oci.jsonutil import canonical_json
from polyarch.oci.reference import Reference
from polyarch.oci.spec import Descriptor, Index, Manifest, MediaType, is_index, is_manifest, parse_document

from .composite import CompositeSource
from .protocol import ContentSource
from .registry import RegistrySource
from .store import StoreSource
from .tarball import TarballSource

if TYPE_CHECKING:
    from polyarch.registry.client import RegistryClient

__all__ = ["MAX_DEPTH", "copy_referrers", "fallback_tag", "pull_referrers", "push_referrers", "registry_referrers",
           "source_referrers"]

MAX_DEPTH = 4  # referrers of referrers of … followed this deep
_MAX_INDEX = 4 << 20


def fallback_tag(subject: Digest) -> str:
    """The referrers tag schema's tag of ``subject``: ``sha256-<hex>``."""
    return f"{subject.algorithm}-{subject.hex}"[:128]


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


def _archive_entries(source: TarballSource) -> list[Descriptor]:
    reader = source.reader
    if "index.json" not in reader.members:
        return []
    doc = reader.read_json("index.json")
    raw = doc.get("manifests") if isinstance(doc, dict) else None
    return [Descriptor.from_dict(d, "index.json") for d in raw if isinstance(d, dict)] \
        if isinstance(raw, list) else []


def source_referrers(source: ContentSource, subject: Digest) -> list[Descriptor]:
    """The referrers of ``subject`` where ``source`` is, as a referrers list names them (no store annotation)."""
    if isinstance(source, CompositeSource):
        if str(subject) in source.documents:
            return []  # a document made in memory: nothing refers to it yet
        return source_referrers(source.routes.get(str(subject), source.default), subject)
    if isinstance(source, StoreSource):  # the store and OCI layouts
        return [plain_referrer(d) for d in store_referrers(source.images, subject)]
    if isinstance(source, TarballSource):
        return [plain_referrer(d) for d in referrers_in(_archive_entries(source), subject)]
    if isinstance(source, RegistrySource):
        return registry_referrers(source.client, source.ref, subject)
    return []


def _subjects(source: ContentSource, root: Descriptor) -> list[tuple[Digest, ContentSource]]:
    """Every manifest and index under ``root`` (itself first) with the source holding it; image manifests are
    not read (their config and layers are no subjects)."""
    out: list[tuple[Digest, ContentSource]] = []
    seen: set[str] = set()

    def visit(desc: Descriptor, src: ContentSource) -> None:
        if str(desc.digest) in seen:
            return
        seen.add(str(desc.digest))
        out.append((desc.digest, src))
        if is_index(desc.media_type):
            doc = parse_document(src.read(desc), desc.media_type)
            assert isinstance(doc, Index)
            for child in doc.manifests:
                if is_index(child.media_type) or is_manifest(child.media_type):
                    visit(child, src.route(child))

    visit(root, source)
    return out


@dataclass(slots=True)
class _Copy:
    """One copy of referrers to one repository: whether it has the referrers API is asked once."""

    client: RegistryClient
    dest: Reference
    api: bool | None = None
    count: int = 0

    def send(self, src: ContentSource, subject: Digest, referrers: Sequence[Descriptor], depth: int) -> None:
        from .transfer import push_image

        if not referrers:
            return
        for desc in referrers:
            push_image(src, desc, self.dest, client=self.client)
            self.count += 1
        if self.api is None:
            self.api = _api(self.client, self.dest, subject) is not None
        if not self.api:  # the tag schema: the subject's fallback tag lists its referrers
            have = _tag_index(self.client, self.dest, subject)
            known = {str(d.digest) for d in have}
            new = [d for d in referrers if str(d.digest) not in known]
            if new:
                raw = canonical_json({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX,
                                      "manifests": [d.to_dict() for d in [*have, *new]]})
                self.client.put_manifest(self.dest.with_tag(fallback_tag(subject)), raw, MediaType.OCI_INDEX)
        if depth < MAX_DEPTH:
            for desc in referrers:
                self.send(src, desc.digest, source_referrers(src, desc.digest), depth + 1)


def copy_referrers(source: ContentSource, root: Descriptor, dest: Reference, *, client: RegistryClient) -> int:
    """Copy the referrers of ``root`` and of every manifest under it (already copied) from ``source`` to
    ``dest``'s repository; returns how many referrer manifests were sent."""
    copy = _Copy(client, Reference(dest.domain, dest.path))
    for subject, src in _subjects(source, root):
        copy.send(src, subject, source_referrers(src, subject), 1)
    return copy.count


def push_referrers(images: ImageStore, subjects: Sequence[Digest], dest: Reference, *,
                   client: RegistryClient) -> int:
    """Push the store's referrers of each subject (already pushed) to ``dest``'s repository; returns how many."""
    source = StoreSource(images)
    copy = _Copy(client, Reference(dest.domain, dest.path))
    for subject in subjects:
        copy.send(source, subject, source_referrers(source, subject), 1)
    return copy.count


def _fetch_tree(client: RegistryClient, ref: Reference, images: ImageStore, desc: Descriptor) -> None:
    """``desc``'s tree from ``ref``'s repository into the store, children before parents, each blob verified."""
    store = images.store
    raw = RegistrySource(client, ref).read(desc)
    doc = parse_document(raw, desc.media_type)
    if isinstance(doc, Index):
        for child in doc.manifests:
            if is_index(child.media_type) or is_manifest(child.media_type):
                _fetch_tree(client, ref, images, child)
    elif isinstance(doc, Manifest):
        for blob in (doc.config, *doc.layers):
            if store.stat(blob.digest) != blob.size and not blob.urls:
                client.fetch_blob(ref, blob, lambda b=blob: store.writer(b.digest.algorithm))
    store.write(raw, desc.digest)


def pull_referrers(client: RegistryClient, ref: Reference, images: ImageStore, root: Descriptor) -> int:
    """Fetch the referrers (and theirs, up to ``MAX_DEPTH``) of every manifest and index under the store's
    ``root`` from ``ref``'s repository and keep them as store referrers; returns how many were kept."""
    repo = Reference(ref.domain, ref.path)
    from .transfer import PULLED_FROM

    subjects = [d.digest for d in images.walk(root) if is_index(d.media_type) or is_manifest(d.media_type)]
    doc = images.read_document(root).document
    if isinstance(doc, Index) and doc.annotations.get(PULLED_FROM):  # a partial index (made here): the remote's
        subjects[0] = Digest.parse(doc.annotations[PULLED_FROM])
    kept: list[tuple[Descriptor, Digest]] = []
    todo = [(s, 1) for s in subjects]
    seen: set[str] = set()
    while todo:
        subject, depth = todo.pop(0)
        for desc in registry_referrers(client, repo, subject):
            if str(desc.digest) in seen or not (is_manifest(desc.media_type) or is_index(desc.media_type)):
                continue
            seen.add(str(desc.digest))
            _fetch_tree(client, repo, images, desc)
            kept.append((desc, subject))
            if depth < MAX_DEPTH:
                todo.append((desc.digest, depth + 1))
    add_store_referrers(images, kept)
    return len(kept)
