"""Pull from a registry into the local store, and push (or copy) image trees from any source to a registry.

**Push order** (``push_image``): every layer and config blob first (in parallel, bounded; existing ones skipped by
HEAD, blobs known in another repository of the same registry mounted), then the image manifests by digest, then
nested indexes by digest, children before parents, and last the root under its tag(s). A registry never sees a
manifest whose blobs it lacks, and a tag only moves when everything under it is in place. An image manifest the
registry already has (HEAD by digest) is not re-sent, nor are its blobs.

**Single-platform pulls** (``pull_image`` with platforms): the selected manifests, configs and layers are fetched;
when the remote index has more image manifests than were fetched, the name points to a *local partial index*: an
OCI index holding only the fetched children (their descriptors unchanged), with the annotation
``io.polyarch.pulled-from`` = the remote index digest. A later pull of another platform of the same remote index
merges into it, and once every child is present the original index bytes are stored instead (digest unchanged).
So every name always reaches complete images; ``--all-platforms`` stores the original index as is.

**Blob origins** (``polyarch.content.origins``): a pull records, in the store, the registry repository each config
and layer blob came from; a push from the store records the repository it made each blob exist in. A push to
another repository of the same registry (in any later process) first tries to mount each blob from the
repositories recorded for it (the source's own repository first when it is a registry), then uploads. The records
are hints: one that cannot be read or written is left aside and the transfer goes on without it.

**Documents read once** (``Documents``): a build plans with configs read from the registry (``remote_config``)
and then pulls the same image (``pull_image``); given the same ``Documents``, the pull takes the manifests and
configs planning read (verified against their digests when they were read) instead of fetching them again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from polyarch import platform as plat
from polyarch.content.images import ImageStore, check_config_size, check_platform, select_platform
from polyarch.content.origins import BlobOrigins
from polyarch.content.pathindex import IndexingSink, LayerIndexes
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import NotFound, StoreError
from polyarch.oci.config import parse_config
from polyarch.oci.reference import Reference
from polyarch.oci.spec import (
    REFERENCE_DIGEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    MediaType,
    is_index,
    is_manifest,
    parse_document,
)
from polyarch.platform import Platform
from polyarch.registry.client import FetchedManifest, RegistryClient
from polyarch.registry.sink import BlobSink
from polyarch.sources.protocol import ContentSource
from polyarch.sources.registry import RegistrySource
from polyarch.sources.store import StoreSource

__all__ = ["PULLED_FROM", "Documents", "PullResult", "PushResult", "RemoteConfig", "pull_image", "push_image",
           "remote_config", "run_parallel"]

PULLED_FROM = "io.polyarch.pulled-from"
_NAMING = threading.Lock()
T = TypeVar("T")


def run_parallel(fn: Callable[[T], object], items: Iterable[T], parallel: int) -> None:
    """Run ``fn`` over items on a bounded pool; the first error cancels what has not started and is raised."""
    items = list(items)
    if not items:
        return
    if parallel <= 1 or len(items) == 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(parallel, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        _done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]


# --- push ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PushResult:
    descriptor: Descriptor
    uploaded: int
    mounted: int
    existed: int


@dataclass(slots=True)
class _Plan:
    blobs: dict[str, tuple[Descriptor, ContentSource]]
    manifests: list[tuple[Descriptor, bytes, ContentSource]]  # image manifests
    indexes: list[tuple[Descriptor, bytes]]  # post-order; root last
    root_raw: bytes = b""


def _plan(client: RegistryClient, dest: Reference, source: ContentSource, root: Descriptor, parallel: int) -> _Plan:
    plan = _Plan({}, [], [])
    seen: set[str] = set()

    def visit(desc: Descriptor, src: ContentSource) -> None:
        if str(desc.digest) in seen:
            return
        seen.add(str(desc.digest))
        raw = src.read(desc)
        if desc.digest == root.digest:
            plan.root_raw = raw
        doc = parse_document(raw, desc.media_type)
        if isinstance(doc, Index):
            for child in doc.manifests:
                if is_index(child.media_type) or is_manifest(child.media_type):
                    visit(child, src.route(child))
            plan.indexes.append((desc, raw))
        else:
            plan.manifests.append((desc, raw, src))

    visit(root, source)

    present: set[str] = set()

    def check(item: tuple[Descriptor, bytes, ContentSource]) -> None:
        if client.head_manifest(dest.with_digest(item[0].digest), push=True) is not None:
            present.add(str(item[0].digest))

    run_parallel(check, plan.manifests, parallel)
    plan.manifests = [m for m in plan.manifests if str(m[0].digest) not in present]
    for desc, raw, src in plan.manifests:
        manifest = parse_document(raw, desc.media_type)
        assert isinstance(manifest, Manifest)
        for blob in (*manifest.layers, manifest.config):
            if blob.urls and not src.has_blob(blob):
                continue  # non-distributable layer: stays at its URLs, as docker push does
            plan.blobs.setdefault(str(blob.digest), (blob, src))
    return plan


def push_image(source: ContentStore | ImageStore | ContentSource, root: Descriptor, dest: Reference, *,
               client: RegistryClient, parallel: int | None = None, tags: Sequence[str] = ()) -> PushResult:
    """Push the tree under ``root`` to ``dest``'s repository; the root goes to ``dest.tag`` and ``tags`` (by
    digest only when there is no tag). Returns the root descriptor (digest unchanged) and counts.

    This is the API exporters use (``type=registry``): ``push_image(store, desc, ref, client=client)``.
    """
    if isinstance(source, ImageStore | ContentStore):
        source = StoreSource(source)
    workers = parallel or client.options.parallel
    plan = _plan(client, dest, source, root, workers)
    counts = {"uploaded": 0, "mounted": 0, "exists": 0}
    mount_from = [loc.path for loc in [source.repository] if loc is not None and loc.domain == dest.domain]
    origins = BlobOrigins(source.store.root) if isinstance(source, StoreSource) else None
    recorded = _lookup(origins, dest.domain, [d for d, _ in plan.blobs.values()])

    def blob(item: tuple[Descriptor, ContentSource]) -> None:
        desc, src = item
        loc = src.repository
        mounts = [loc.path] if loc is not None and loc.domain == dest.domain else list(mount_from)
        mounts += recorded.get(str(desc.digest), [])
        outcome = client.push_blob(dest, desc, lambda: src.blob_file(desc), mount_from=mounts)
        counts[outcome] += 1

    layers_first = sorted(plan.blobs.values(), key=lambda item: -item[0].size)
    try:
        run_parallel(blob, layers_first, workers)
        _record(origins, dest, [d.digest for d, _ in plan.blobs.values()])
    finally:
        if origins is not None:
            origins.close()
    children = [m for m in plan.manifests if m[0].digest != root.digest]
    run_parallel(lambda m: client.put_manifest(dest.with_digest(m[0].digest), m[1], m[0].media_type),
                 children, workers)
    for desc, raw in plan.indexes:
        if desc.digest != root.digest:
            client.put_manifest(dest.with_digest(desc.digest), raw, desc.media_type)
    root_raw = plan.root_raw
    names = [t for t in dict.fromkeys([dest.tag, *tags]) if t]
    if not names:
        client.put_manifest(dest.with_digest(root.digest), root_raw, root.media_type)
    for tag in names:
        client.put_manifest(dest.with_tag(tag), root_raw, root.media_type)
    return PushResult(root, counts["uploaded"], counts["mounted"], counts["exists"])


def _lookup(origins: BlobOrigins | None, domain: str, blobs: Sequence[Descriptor]) -> dict[str, list[str]]:
    if origins is None:
        return {}
    try:
        return origins.repositories(domain, [b.digest for b in blobs])
    except StoreError:
        return {}  # a hint only: without it every blob is uploaded


def _record(origins: BlobOrigins | None, ref: Reference, digests: Sequence[Digest]) -> None:
    if origins is None:
        return
    try:
        origins.record(ref.domain, ref.path, digests)
    except StoreError:
        pass  # a hint only: the transfer itself succeeded


# --- pull ------------------------------------------------------------------------------------------------------

class Documents:
    """Manifests, indexes and configs read from a registry, by digest: each was verified against its digest
    when read (``RegistryClient.get_manifest`` by digest or with the registry's digest header, ``RegistrySource``
    reads). Shared by the threads of one build."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, digest: Digest) -> tuple[str, bytes] | None:
        """(media type, bytes) of ``digest``, when read before."""
        with self._lock:
            return self._items.get(str(digest))

    def put(self, digest: Digest, media_type: str, raw: bytes) -> None:
        with self._lock:
            self._items[str(digest)] = (media_type, raw)

    def read(self, src: ContentSource, desc: Descriptor) -> bytes:
        """``desc``'s bytes: known ones, else read through ``src`` (checked against ``desc``) and kept."""
        known = self.get(desc.digest)
        if known is not None and len(known[1]) == desc.size:
            return known[1]
        raw = src.read(desc)
        self.put(desc.digest, desc.media_type, raw)
        return raw

    def manifest(self, client: RegistryClient, ref: Reference) -> FetchedManifest:
        """``ref``'s manifest or index: a known one when ``ref`` is pinned to its digest, else fetched and kept."""
        if ref.digest is not None:
            known = self.get(ref.digest)
            if known is not None:
                return FetchedManifest(known[1], known[0], ref.digest)
        fetched = client.get_manifest(ref)
        self.put(fetched.digest, fetched.media_type, fetched.raw)
        return fetched


@dataclass(frozen=True, slots=True)
class PullResult:
    descriptor: Descriptor
    name: str
    platforms: tuple[Platform, ...]
    fetched_blobs: int
    partial: bool


def _image_children(index: Index) -> list[Descriptor]:
    return [m for m in index.manifests if is_manifest(m.media_type) and m.platform is not None
            and m.platform.os != "unknown"]


def pull_image(client: RegistryClient, ref: Reference, images: ImageStore, *, name: str | None = None,
               platforms: Sequence[Platform] = (), all_platforms: bool = False,
               parallel: int | None = None, indexes: LayerIndexes | None = None,
               documents: Documents | None = None) -> PullResult:
    """Fetch ``ref`` into the store and point ``name`` (default: ``str(ref)``) at it.

    Without ``platforms`` and ``all_platforms`` the host platform is pulled. With ``indexes`` (the build cache,
    given by the CLI) each fetched layer's path index is made in the pass that hashes it and recorded there, so
    a build on this image never reads the layer again for WORKDIR/COPY/ADD/USER. With ``documents`` (those
    ``remote_config`` read while the build planned) the manifests and configs in it are not fetched again.

    :raises NotFound: no manifest for a requested platform (listing what the index has).
    :raises RegistryError: from the registry; nothing is named until everything is stored and verified.
    """
    store = images.store
    workers = parallel or client.options.parallel
    wanted = tuple(platforms) or ((plat.host(),) if not all_platforms else ())
    documents = documents if documents is not None else Documents()
    fetched = documents.manifest(client, ref)
    doc = parse_document(fetched.raw, fetched.media_type)
    root = fetched.descriptor
    src = RegistrySource(client, ref)
    manifests: list[tuple[Descriptor, bytes]] = []
    partial = False
    if isinstance(doc, Manifest):
        manifests.append((root, fetched.raw))
        chosen: list[Descriptor] = [root]
    else:
        children = [m for m in doc.manifests if is_manifest(m.media_type) or is_index(m.media_type)]
        if all_platforms:
            chosen = children
        else:
            chosen = []
            for p in wanted:
                best = select_platform(_image_children(doc), p)
                if best is None:
                    have = ", ".join(str(m.platform) for m in _image_children(doc)) or "none"
                    raise NotFound(f"{ref} has no image for {p} (it has: {have})",
                                   hint="pick one with --platform, or use --all-platforms")
                if best not in chosen:
                    chosen.append(best)
            # buildx-mode attestation manifests of the chosen images travel with them
            picked = {str(c.digest) for c in chosen}
            chosen += [m for m in doc.manifests if m.annotations.get(REFERENCE_DIGEST) in picked
                       and is_manifest(m.media_type) and m not in chosen]
        for child in chosen:
            manifests.extend(_collect(src, child, documents))
    blobs: dict[str, Descriptor] = {}
    layers: set[str] = set()
    for desc, raw in manifests:
        mdoc = parse_document(raw, desc.media_type)
        if isinstance(mdoc, Manifest):
            check_config_size(mdoc.config)
            layers.update(str(layer.digest) for layer in mdoc.layers)
            for blob in (mdoc.config, *mdoc.layers):
                if store.stat(blob.digest) != blob.size:
                    blobs.setdefault(str(blob.digest), blob)

    # One flush for every blob and manifest of the pull (content/store.py: batches); names only after it.
    with store.batch() as batch:
        def sink(b: Descriptor) -> BlobSink:
            writer = store.writer(b.digest.algorithm, batch=batch)
            return IndexingSink(writer, indexes) if indexes is not None and str(b.digest) in layers else writer

        def fetch(b: Descriptor) -> None:
            known = documents.get(b.digest) if str(b.digest) not in layers else None
            if known is not None and len(known[1]) == b.size:
                store.write(known[1], b.digest, batch=batch)  # a config planning read: not fetched again
            else:
                client.fetch_blob(ref, b, lambda: sink(b))

        run_parallel(fetch, sorted(blobs.values(), key=lambda b: -b.size), workers)
        with BlobOrigins(store.root) as origins:
            _record(origins, ref, [b.digest for desc, raw in manifests for b in _blobs_of(desc, raw)])
        for desc, raw in manifests:
            _check_platform(images, desc, raw, tuple(platforms) if isinstance(doc, Manifest) else ())
            store.write(raw, desc.digest, batch=batch)
        if not isinstance(doc, Index):
            store.write(fetched.raw, root.digest, batch=batch)
    with _NAMING:  # pulls of one name's platforms may run at once (build FROMs): merge their partial indexes
        if isinstance(doc, Index):
            root, partial = _store_index(images, doc, fetched.raw, root, chosen, name or str(ref))
        else:
            img = images.image(root)
            root = root.with_platform(img.platform)
        images.set_name(name or str(ref), root)
    pulled = tuple(c.platform for c in chosen if c.platform is not None and REFERENCE_DIGEST not in c.annotations)
    return PullResult(root, name or str(ref), pulled, len(blobs), partial)


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    config: ImageConfig
    digest: Digest  # what the reference resolved to (an index, or the manifest itself)
    manifest: Digest  # the platform's image manifest


def remote_config(client: RegistryClient, ref: Reference, platform: Platform, *,
                  documents: Documents | None = None) -> RemoteConfig:
    """The image config ``ref`` has for ``platform``, read from the registry (manifests and config only, nothing
    stored), the digest ``ref`` resolved to and the platform's manifest digest: a build plans with the config,
    then ``pull_image`` brings the layers of that same digest (a tag moved meanwhile changes nothing).
    ``documents`` keeps what was read (and answers what was read before: the index of a second platform), for
    that pull.

    :raises NotFound: no image for ``platform``. :raises RegistryError: from the registry.
    """
    documents = documents if documents is not None else Documents()
    fetched = documents.manifest(client, ref)
    doc = parse_document(fetched.raw, fetched.media_type)
    desc, raw = fetched.descriptor, fetched.raw
    src = RegistrySource(client, ref)
    if isinstance(doc, Index):
        best = select_platform(_image_children(doc), platform)
        if best is None:
            raise NotFound(f"{ref} has no image for {platform}")
        desc = best
        raw = documents.read(src, best)
        doc = parse_document(raw, best.media_type)
    if not isinstance(doc, Manifest):
        raise NotFound(f"{ref} for {platform} is not an image manifest")
    check_config_size(doc.config)
    config = parse_config(documents.read(src, doc.config))
    check_platform(desc, config)
    return RemoteConfig(config, fetched.descriptor.digest, desc.digest)


def _blobs_of(desc: Descriptor, raw: bytes) -> tuple[Descriptor, ...]:
    doc = parse_document(raw, desc.media_type)
    return (doc.config, *doc.layers) if isinstance(doc, Manifest) else ()


def _collect(src: ContentSource, desc: Descriptor, documents: Documents) -> list[tuple[Descriptor, bytes]]:
    raw = documents.read(src, desc)
    doc = parse_document(raw, desc.media_type)
    out: list[tuple[Descriptor, bytes]] = []
    if isinstance(doc, Index):
        for child in doc.manifests:
            if is_index(child.media_type) or is_manifest(child.media_type):
                out.extend(_collect(src, child, documents))
    out.append((desc, raw))
    return out


def _check_platform(images: ImageStore, desc: Descriptor, raw: bytes, wanted: Sequence[Platform]) -> None:
    """The config's os/architecture must agree with the platform the index claims (and with ``wanted``)."""
    doc = parse_document(raw, desc.media_type)
    if not isinstance(doc, Manifest) or doc.config.media_type not in (MediaType.OCI_CONFIG,
                                                                      MediaType.DOCKER_CONFIG):
        return
    config, _ = images.read_config(doc.config)
    check_platform(desc, config)
    if wanted and not any(plat.rank(config.platform, p) is not None for p in wanted):
        raise NotFound(f"image {desc.digest.short} is {config.platform}, not "
                       f"{', '.join(map(str, wanted))}", hint="it is a single-platform image; drop --platform")


def _store_index(images: ImageStore, doc: Index, raw: bytes, root: Descriptor, chosen: list[Descriptor],
                 name: str) -> tuple[Descriptor, bool]:
    """Store the original index when every child is local, else a partial index (see module docstring)."""
    store = images.store
    have = {str(c.digest) for c in chosen}
    try:
        current = images.resolve(name)
        if isinstance(current.document, Index) and \
                current.document.annotations.get(PULLED_FROM) == str(root.digest):
            have |= {str(c.digest) for c in current.document.manifests}
    except NotFound:
        pass
    children = [m for m in doc.manifests if is_manifest(m.media_type) or is_index(m.media_type)]
    if all(str(c.digest) in have and store.has(c.digest) for c in children):
        store.write(raw, root.digest)
        return root, False
    kept = tuple(m for m in doc.manifests if str(m.digest) in have and store.has(m.digest))
    partial = Index(kept, MediaType.OCI_INDEX, {**doc.annotations, PULLED_FROM: str(root.digest)})
    return images.put_document(partial), True
