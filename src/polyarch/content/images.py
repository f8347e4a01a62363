"""The local image store: names in the layout's ``index.json``, images and indexes as blobs of the content store.

An entry is also found by its image ID (``image_id``: config digest of a manifest, digest of an index) or
digest, ``[sha256:]HEX`` with at least 12 hex digits, as docker accepts. A name is kept as the user wrote it in ``org.opencontainers.image.ref.name`` (so ``skopeo inspect
oci:$ROOT:base/busybox:1`` finds it); lookups also accept any spelling that normalizes to the same reference
(``docker.io/base/busybox:1``). ``index.json`` is rewritten atomically under an exclusive lock.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from polyarch import platform as plat
from polyarch.digest import Digest
from polyarch.errors import InvalidManifest, InvalidReference, LimitExceeded, NotFound, StoreError
from polyarch.fsutil import atomic_write
from polyarch.oci import reference
from polyarch.oci.spec import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    MediaType,
    canonical_json,
    is_index,
    is_manifest,
    parse_config,
    parse_document,
)
from polyarch.platform import Platform

from .store import ContentStore

__all__ = ["MAX_CONFIG", "MAX_MANIFEST", "REF_NAME", "Image", "ImageStore", "ResolvedDocument", "check_config_size",
           "check_platform", "index_lock", "normalize_name"]

REF_NAME = "org.opencontainers.image.ref.name"
MAX_MANIFEST = 4 << 20
MAX_CONFIG = 16 << 20  # the largest image config read into memory, from a registry, an archive or the store


def check_config_size(desc: Descriptor) -> None:
    """Refuse a config blob declared larger than ``MAX_CONFIG`` before any byte of it is fetched or stored.

    :raises LimitExceeded: naming the blob and the limit.
    """
    if desc.size > MAX_CONFIG:
        raise LimitExceeded(f"image config {desc.digest.short} is {desc.size} bytes, more than the limit of "
                            f"{MAX_CONFIG} bytes")


def check_platform(desc: Descriptor, config: ImageConfig) -> None:
    """An image listed under a platform (an index entry, or a name's descriptor) must be that platform: the
    config's os and architecture equal the listed ones after normalization, and so does the variant when both
    give one. Every place that picks an image for use calls this (pull, ``ImageStore.image`` for run, build
    ``FROM``, save and outputs), before any layer is fetched into a name or applied.

    :raises InvalidManifest: naming both platforms.
    """
    if desc.platform is None:
        return
    got, claimed = config.platform.normalized(), desc.platform.normalized()
    if (got.os, got.architecture) != (claimed.os, claimed.architecture) or (
            got.variant and claimed.variant and got.variant != claimed.variant):
        raise InvalidManifest(f"platform mismatch: manifest {desc.digest.short} is listed as {desc.platform} but "
                              f"its config says {config.platform}")


@contextmanager
def index_lock(root: Path) -> Iterator[None]:
    """Exclusive lock on ``root/index.json`` (held by every writer of names, and by garbage collectors)."""
    try:
        fd = open(root / "index.json.lock", "a+b")
    except OSError as exc:
        raise StoreError(f"cannot lock {root / 'index.json'}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        fd.close()


def normalize_name(name: str) -> str:
    """The normalized form used to compare names (``busybox`` == ``docker.io/library/busybox:latest``)."""
    try:
        return str(reference.parse(name).defaulted())
    except InvalidReference:
        return name


@dataclass(frozen=True, slots=True)
class ResolvedDocument:
    """A manifest or index read from the store, with the exact bytes it was parsed from."""

    descriptor: Descriptor
    raw: bytes
    document: Manifest | Index


@dataclass(frozen=True, slots=True)
class Image:
    """One platform's image: manifest + config, with their descriptors and raw bytes."""

    descriptor: Descriptor
    manifest: Manifest
    config: ImageConfig
    raw_manifest: bytes
    raw_config: bytes

    @property
    def platform(self) -> Platform:
        return self.config.platform


class ImageStore:
    """Named images over a ContentStore."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        self._index_path = store.root / "index.json"

    # --- index.json ----------------------------------------------------------------------------------------

    def _locked(self) -> AbstractContextManager[None]:
        return index_lock(self.store.root)

    def _read_index(self) -> list[Descriptor]:
        try:
            raw = self._index_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot read {self._index_path}: {exc.strerror}") from exc
        try:
            doc = json.loads(raw)
            return [Descriptor.from_dict(d, f"index.json manifests[{i}]")
                    for i, d in enumerate(doc.get("manifests") or [])]
        except (ValueError, AttributeError, InvalidManifest) as exc:
            raise StoreError(f"{self._index_path} is corrupt: {exc}") from exc

    def _write_index(self, entries: Sequence[Descriptor]) -> None:
        doc = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": [d.to_dict() for d in entries]}
        self.store.flush()  # blobs of an open ``ContentStore.batched`` block are durable before any name
        try:
            atomic_write(self._index_path, json.dumps(doc, indent=2).encode() + b"\n")
        except OSError as exc:
            raise StoreError(f"cannot write {self._index_path}: {exc.strerror}") from exc

    def update(self, change: Callable[[list[Descriptor]], list[Descriptor]]) -> None:
        """Read-modify-write index.json under the lock."""
        with self._locked():
            self._write_index(change(self._read_index()))

    def entries(self) -> list[Descriptor]:
        return self._read_index()

    # --- names -------------------------------------------------------------------------------------------

    def names(self) -> list[tuple[str, Descriptor]]:
        return [(d.annotations[REF_NAME], d) for d in self._read_index() if d.annotations.get(REF_NAME)]

    def lookup(self, name: str) -> Descriptor:
        """The descriptor a name points to; exact spelling first, then normalized.

        :raises NotFound: with a hint listing how to see names.
        """
        entries = self.names()
        for n, d in entries:
            if n == name:
                return d
        wanted = normalize_name(name)
        for n, d in entries:
            if normalize_name(n) == wanted:
                return d
        by_id = self._lookup_id(name)
        if by_id is not None:
            return by_id
        raise NotFound(f"no image named {name!r} in the local store", hint="'polyarch images' lists the names")

    def image_id(self, desc: Descriptor) -> Digest:
        """Docker's image ID of an entry: the config digest of an image manifest, the digest of an index."""
        if is_manifest(desc.media_type):
            doc = self.read_document(desc).document
            if isinstance(doc, Manifest):
                return doc.config.digest
        return desc.digest

    def _lookup_id(self, text: str) -> Descriptor | None:
        """An entry (named or not) whose image ID or digest is ``[sha256:]HEX`` (at least 12 hex digits, a prefix
        as docker accepts); ``None`` when no entry or more than one distinct entry matches."""
        hexpart = text.removeprefix("sha256:")
        if not 12 <= len(hexpart) <= 64 or any(c not in "0123456789abcdef" for c in hexpart):
            return None
        found: dict[Digest, Descriptor] = {}
        for d in self._read_index():
            try:
                ids = {d.digest, self.image_id(d)} if d.digest.algorithm == "sha256" else set()
            except (StoreError, InvalidManifest, NotFound, LimitExceeded):
                continue
            if any(i.hex.startswith(hexpart) for i in ids):
                found.setdefault(d.digest, d)
        return next(iter(found.values())) if len(found) == 1 else None

    def set_name(self, name: str, target: Descriptor) -> None:
        """Point ``name`` at ``target`` (replacing what any same-normalized name pointed to)."""
        wanted = normalize_name(name)
        entry = target.with_annotations({**target.annotations, REF_NAME: name}).with_platform(target.platform)

        def change(entries: list[Descriptor]) -> list[Descriptor]:
            kept = [d for d in entries if normalize_name(d.annotations.get(REF_NAME, "")) != wanted
                    or not d.annotations.get(REF_NAME)]
            return [*kept, entry]

        self.update(change)

    def remove_name(self, name: str) -> Descriptor:
        found = self.lookup(name)
        ref_name = found.annotations[REF_NAME]
        self.update(lambda entries: [d for d in entries if d.annotations.get(REF_NAME) != ref_name])
        return found

    # --- documents -----------------------------------------------------------------------------------------

    def read_document(self, desc: Descriptor) -> ResolvedDocument:
        raw = self.store.read(desc.digest, limit=MAX_MANIFEST)
        if Digest.of(raw, desc.digest.algorithm) != desc.digest:
            raise StoreError(f"blob {desc.digest} in the store does not match its digest",
                             hint="run 'polyarch prune' and pull or build the image again")
        return ResolvedDocument(desc, raw, parse_document(raw, desc.media_type))

    def resolve(self, name: str) -> ResolvedDocument:
        return self.read_document(self.lookup(name))

    def read_config(self, desc: Descriptor) -> tuple[ImageConfig, bytes]:
        """The config blob of ``desc``, read with the ``MAX_CONFIG`` cap (never more than that into memory)."""
        check_config_size(desc)
        raw = self.store.read(desc.digest, limit=MAX_CONFIG)
        return parse_config(raw), raw

    def image(self, desc: Descriptor) -> Image:
        """The image manifest ``desc`` with its config; when ``desc`` names a platform, the config must agree
        (``check_platform``)."""
        doc = self.read_document(desc)
        if not isinstance(doc.document, Manifest):
            raise InvalidManifest(f"{desc.digest} is an index, not an image manifest")
        config, raw_config = self.read_config(doc.document.config)
        check_platform(desc, config)
        return Image(desc, doc.document, config, doc.raw, raw_config)

    def images(self, desc: Descriptor, platforms: Sequence[Platform] | None = None) -> list[Image]:
        """The images of a manifest or index; with ``platforms``, the best match for each."""
        doc = self.read_document(desc)
        if isinstance(doc.document, Manifest):
            img = self.image(desc)
            if platforms and not any(plat.rank(img.platform, p) is not None for p in platforms):
                raise NotFound(f"image {desc.digest.short} is {img.platform}, not {', '.join(map(str, platforms))}")
            return [img]
        children = [m for m in doc.document.manifests if is_manifest(m.media_type) and m.platform is not None
                    and not _is_attestation(m)]
        if not platforms:
            return [self.image(m) for m in children]
        out = []
        for p in platforms:
            best = select_platform(children, p)
            if best is None:
                have = ", ".join(str(m.platform) for m in children) or "none"
                raise NotFound(f"no image for {p} in index {desc.digest.short} (it has: {have})")
            out.append(self.image(best))
        return out

    def walk(self, desc: Descriptor) -> Iterator[Descriptor]:
        """Every descriptor reachable from ``desc`` (itself, children, configs, layers); missing layers are
        yielded too so callers can report them."""
        yield desc
        if not (is_index(desc.media_type) or is_manifest(desc.media_type)):
            return
        if not self.store.has(desc.digest):
            return
        doc = self.read_document(desc).document
        if isinstance(doc, Index):
            for child in doc.manifests:
                yield from self.walk(child)
        else:
            yield doc.config
            yield from doc.layers

    # --- writing -----------------------------------------------------------------------------------------

    def put_document(self, doc: Manifest | Index, platform: Platform | None = None) -> Descriptor:
        raw = doc.to_json()
        digest, size = self.store.write(raw)
        return Descriptor(doc.media_type, digest, size, platform)

    def put_config(self, config: ImageConfig, *, oci: bool = True) -> Descriptor:
        digest, size = self.store.write(config.to_json())
        return Descriptor(MediaType.OCI_CONFIG if oci else MediaType.DOCKER_CONFIG, digest, size)

    def put_image(self, config: ImageConfig, layers: Sequence[Descriptor], *, oci: bool = True,
                  annotations: dict[str, str] | None = None) -> Descriptor:
        """Write config and manifest (layers must already be in the store); returns the manifest descriptor with
        the image's platform."""
        if len(layers) != len(config.diff_ids):
            raise InvalidManifest(f"{len(layers)} layers but {len(config.diff_ids)} diff_ids")
        for layer in layers:
            if self.store.stat(layer.digest) != layer.size:
                raise NotFound(f"layer {layer.digest} is not in the store with size {layer.size}")
        cfg = self.put_config(config, oci=oci)
        manifest = Manifest(cfg, tuple(layers), MediaType.OCI_MANIFEST if oci else MediaType.DOCKER_MANIFEST,
                            annotations or {})
        return self.put_document(manifest, config.platform)

    def put_index(self, manifests: Sequence[Descriptor], *, oci: bool = True,
                  annotations: dict[str, str] | None = None) -> Descriptor:
        index = Index(tuple(manifests), MediaType.OCI_INDEX if oci else MediaType.DOCKER_MANIFEST_LIST,
                      annotations or {})
        return self.put_document(index)


def _is_attestation(desc: Descriptor) -> bool:
    return (desc.platform is not None and desc.platform.os == "unknown") or \
        desc.annotations.get("vnd.docker.reference.type") == "attestation-manifest"


def select_platform(children: Sequence[Descriptor], wanted: Platform) -> Descriptor | None:
    """containerd-style choice: the child ``wanted`` runs best; ties keep index order."""
    best: tuple[int, Descriptor] | None = None
    for child in children:
        if child.platform is None:
            continue
        r = plat.rank(child.platform, wanted)
        if r is not None and (best is None or r < best[0]):
            best = (r, child)
    return best[1] if best else None


def index_bytes(entries: Sequence[Descriptor]) -> bytes:
    return canonical_json({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX,
                           "manifests": [d.to_dict() for d in entries]})
