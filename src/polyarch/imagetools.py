"""imagetools: read and assemble images and indexes across registries, OCI layouts and the local store.

Image locations (``resolve``, through ``polyarch.sources``):
- ``REF`` — a registry reference (``registry.lan/app:1``, ``app@sha256:…``), never a silent fallback;
- ``local:NAME`` — a name in polyarch's local store;
- ``oci-layout://PATH[:TAG]`` or ``oci-layout://PATH@DIGEST`` — an OCI image layout directory; without a tag the
  layout's only image is used; ``oci-archive://PATH[:TAG|@DIGEST]``, ``docker-archive://PATH[:TAG]`` — archives,
  read in place.

``create`` merges sources (digests, tags, whole indexes) into one index and pushes it to every ``-t``; blobs are
mounted when a source lives in another repository of the same registry, streamed otherwise. ``copy`` copies an
image (all platforms by default, digest unchanged; with platforms, only those: one platform gives its manifest,
several a new index of the selected children and their buildx attestation manifests).

**Referrers travel along** (unless ``referrers=False``): after the image, ``create`` and ``copy`` send the
referrers (SBOM and provenance attestations, signatures, any OCI 1.1 artifact) of every manifest they copied,
read from where each came from (``polyarch.sources.referrers``): through the destination's referrers API, else
the referrers tag schema. Attestation manifests kept the buildx way are index entries and travel as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyarch import platform as plat
from polyarch.content.images import ImageStore, select_platform
from polyarch.digest import Digest
from polyarch.errors import InvalidManifest, NotFound, UsageError
from polyarch.oci.reference import Reference
from polyarch.oci.spec import (
    REFERENCE_DIGEST,
    Descriptor,
    Index,
    Manifest,
    MediaType,
    is_index,
    is_manifest,
    parse_config,
    parse_document,
)
from polyarch.platform import Platform
from polyarch.registry.client import RegistryClient
from polyarch.sources.composite import CompositeSource
from polyarch.sources.location import REGISTRY_ONLY, open_source, parse_location
from polyarch.sources.protocol import ContentSource, Opened, read_config
from polyarch.sources.referrers import copy_referrers
from polyarch.sources.transfer import PushResult, push_image

__all__ = [
    "Annotation",
    "Copied",
    "copy_image",
    "create_index",
    "format_inspect",
    "inspect_json",
    "parse_annotation",
    "push_index",
    "resolve",
]

def resolve(text: str, *, client: RegistryClient,
            images: ImageStore | Callable[[], ImageStore] | None = None) -> Opened:
    """Open an image location (see module docstring): plain references are registry references only; ``images``
    (or the function giving it) is used for ``local:`` locations only.

    :raises NotFound: the name, tag or digest does not exist there. :raises UsageError: a malformed location.
    """
    return open_source(parse_location(text), images=images, registry=lambda: client, order=REGISTRY_ONLY)


# --- inspect ---------------------------------------------------------------------------------------------------

def _child_name(resolved: Opened, digest: Digest) -> str:
    if resolved.ref is not None:
        return f"{resolved.ref.name}@{digest}"
    return f"{resolved.name.split('@')[0]}@{digest}"


def format_inspect(resolved: Opened) -> str:
    """The human view, as buildx prints it."""
    lines = [f"Name:      {resolved.name}", f"MediaType: {resolved.descriptor.media_type}",
             f"Digest:    {resolved.descriptor.digest}"]
    doc = resolved.document
    if isinstance(doc, Index):
        if doc.annotations:
            lines.append("Annotations:")
            lines += [f"  {k}: {v}" for k, v in sorted(doc.annotations.items())]
        lines += ["", "Manifests:"]
        for i, m in enumerate(doc.manifests):
            if i:
                lines.append("")
            lines.append(f"  Name:        {_child_name(resolved, m.digest)}")
            lines.append(f"  MediaType:   {m.media_type}")
            if m.platform is not None:
                lines.append(f"  Platform:    {m.platform}")
            if m.annotations:
                lines.append("  Annotations:")
                lines += [f"    {k}: {v}" for k, v in sorted(m.annotations.items())]
    elif doc.annotations:
        lines.append("Annotations:")
        lines += [f"  {k}: {v}" for k, v in sorted(doc.annotations.items())]
    return "\n".join(lines)


def inspect_json(resolved: Opened) -> dict[str, Any]:
    return {"name": resolved.name, "mediaType": resolved.descriptor.media_type,
            "digest": str(resolved.descriptor.digest), "size": resolved.descriptor.size,
            "manifest": json.loads(resolved.raw)}


# --- annotations -------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Annotation:
    kind: str  # "index" or "manifest-descriptor"
    key: str
    value: str
    platform: Platform | None = None


_ANNOTATION_RE = re.compile(r"^(?:([a-z-]+)(?:\[([^\]]+)\])?:)?([^=:\s][^=]*)=(.*)$", re.S)


def parse_annotation(text: str) -> Annotation:
    """buildx syntax: ``[TYPE[PLATFORM]:]KEY=VALUE``; TYPE ``index`` (default) or ``manifest-descriptor``."""
    m = _ANNOTATION_RE.match(text)
    if not m:
        raise UsageError(f"invalid annotation {text!r}: expected [TYPE[PLATFORM]:]KEY=VALUE")
    kind, ptext, key, value = m.group(1) or "", m.group(2), m.group(3), m.group(4)
    if kind and kind not in ("index", "manifest-descriptor"):
        # a prefix-less key with a colon (org.example:x=1) is not a kind
        if kind in ("manifest", "index-descriptor"):
            raise UsageError(f"annotation {text!r}: {kind} annotations cannot be set by imagetools create "
                             "(they would change manifest digests)", hint="use index: or manifest-descriptor:")
        raise UsageError(f"invalid annotation type {kind!r} in {text!r}",
                         hint="use index: or manifest-descriptor:")
    return Annotation(kind or "index", key.strip(), value, plat.parse(ptext) if ptext else None)


# --- create ----------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Merge:
    children: list[Descriptor] = field(default_factory=list)
    routes: dict[str, ContentSource] = field(default_factory=dict)
    oci: bool = False
    replaceable: set[Digest] = field(default_factory=set)  # --append: the existing index's children




def _platform_of(src: ContentSource, desc: Descriptor, raw: bytes) -> Platform | None:
    manifest = parse_document(raw, desc.media_type)
    if not isinstance(manifest, Manifest) or manifest.config.media_type not in (MediaType.OCI_CONFIG,
                                                                                MediaType.DOCKER_CONFIG):
        return None
    return parse_config(read_config(src, manifest.config)).platform


def _add(merge: _Merge, resolved: Opened, desc: Descriptor, raw: bytes | None,
         platforms: Sequence[Platform] = ()) -> None:
    if any(c.digest == desc.digest for c in merge.children):
        return
    if desc.platform is None and is_manifest(desc.media_type):
        raw = raw if raw is not None else resolved.source.read(desc)
        desc = desc.with_platform(_platform_of(resolved.source, desc, raw))
    if platforms and not _attestation(desc) and \
            (desc.platform is None or not any(desc.platform.same(p) for p in platforms)):
        return
    if desc.platform is not None and not _attestation(desc):
        # --append: a source's platform replaces the existing index's image of that platform (and its attestation)
        gone = {c.digest for c in merge.children if c.digest in merge.replaceable and c.platform is not None
                and not _attestation(c) and c.platform.same(desc.platform)}
        merge.children = [c for c in merge.children if c.digest not in gone
                          and not (_attestation(c) and c.annotations.get(REFERENCE_DIGEST) in map(str, gone))]
    merge.children.append(desc)
    merge.routes[str(desc.digest)] = resolved.source.route(desc)
    if desc.media_type.startswith("application/vnd.oci."):
        merge.oci = True


def create_index(sources: Sequence[Opened], annotations: Sequence[Annotation] = (),
                 descriptors: Sequence[tuple[Descriptor, ContentSource]] = (), *,
                 append: bool = False, platforms: Sequence[Platform] = ()) -> tuple[Descriptor, bytes, CompositeSource]:
    """Merge sources (indexes contribute their children, manifests themselves) into one new index.

    With ``append`` the first source is the existing target: its index annotations are kept, and an image of a
    platform it already has is REPLACED by a later source's image of that platform (with its attestation), never
    listed twice. With ``platforms`` only the sources' images of those platforms are taken (``-p``).

    :raises NotFound: a wanted platform none of the sources has.
    """
    if not sources and not descriptors:
        raise UsageError("imagetools create needs at least one source")
    merge = _Merge()
    index_annotations: dict[str, str] = {}
    if append and sources and isinstance(sources[0].document, Index):
        index_annotations.update(sources[0].document.annotations)
    for n, res in enumerate(sources):
        doc = res.document
        if isinstance(doc, Index):
            merge.oci |= doc.media_type == MediaType.OCI_INDEX
            for child in doc.manifests:
                _add(merge, res, child, None, platforms)
        else:
            _add(merge, res, res.descriptor, res.raw, platforms)
        if append and n == 0:
            merge.replaceable = {c.digest for c in merge.children}
    for desc, src in descriptors:
        _add(merge, Opened(src, desc, b"", "file"), desc, None, platforms)
    for p in platforms:
        if not any(c.platform is not None and c.platform.same(p) for c in merge.children):
            raise NotFound(f"no source has an image for {p}")
    kept = {str(c.digest) for c in merge.children}
    merge.children = [c for c in merge.children if not _attestation(c) or c.annotations[REFERENCE_DIGEST] in kept]
    for a in annotations:
        if a.kind == "index":
            index_annotations[a.key] = a.value
    children = []
    for child in merge.children:
        extra = {a.key: a.value for a in annotations if a.kind == "manifest-descriptor"
                 and (a.platform is None or (child.platform is not None and child.platform.same(a.platform)))}
        children.append(child.with_annotations({**child.annotations, **extra}) if extra else child)
    oci = merge.oci or bool(index_annotations) or any(c.annotations for c in children)
    index = Index(tuple(children), MediaType.OCI_INDEX if oci else MediaType.DOCKER_MANIFEST_LIST,
                  index_annotations)
    raw = index.to_json()
    desc = Descriptor(index.media_type, Digest.of(raw), len(raw))
    default = sources[0].source if sources else descriptors[0][1]
    return desc, raw, CompositeSource({str(desc.digest): raw}, merge.routes, default)


def _attestation(desc: Descriptor) -> bool:
    return desc.platform is not None and desc.platform.os == "unknown" and REFERENCE_DIGEST in desc.annotations


@dataclass(frozen=True, slots=True)
class Copied:
    """What one copy sent to ``dest``: the image (``PushResult``) and how many referrer manifests went after it."""

    dest: Reference
    result: PushResult
    referrers: int


def push_index(source: ContentSource, root: Descriptor, tags: Sequence[Reference], *,
               client: RegistryClient, referrers: bool = True) -> list[Copied]:
    """Push ``root`` to every tag; one tree copy per repository, further tags there are manifest PUTs only. With
    ``referrers`` the referrers of every manifest under ``root`` follow, once per repository."""
    by_repo: dict[str, list[Reference]] = {}
    for t in tags:
        by_repo.setdefault(t.name, []).append(t)
    results = []
    for refs in by_repo.values():
        first = refs[0]
        pushed = push_image(source, root, first, client=client, tags=[r.tag for r in refs if r.tag])
        sent = copy_referrers(source, root, first, client=client) if referrers else 0
        results.append(Copied(first, pushed, sent))
    return results


def load_descriptor_files(paths: Sequence[str]) -> list[Descriptor]:
    """``-f FILE``: a JSON descriptor, or a list of them (their manifests must already be in the target repo)."""
    out: list[Descriptor] = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_bytes())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read descriptor file {p}: {exc}") from exc
        for i, item in enumerate(doc if isinstance(doc, list) else [doc]):
            desc = Descriptor.from_dict(item, f"{p}[{i}]")
            if not (is_manifest(desc.media_type) or is_index(desc.media_type)):
                raise InvalidManifest(f"{p}[{i}]: {desc.media_type} is not a manifest or index")
            out.append(desc)
    return out


# --- copy ------------------------------------------------------------------------------------------------------

def copy_image(src: Opened, dest: Reference, *, client: RegistryClient,
               platforms: Sequence[Platform] = (), referrers: bool = True) -> Copied:
    """Copy ``src`` (narrowed to ``platforms``, see module docstring) to ``dest``, then, with ``referrers``, the
    referrers of every manifest copied."""
    source, root = _narrowed(src, platforms)
    pushed = push_image(source, root, dest, client=client)
    return Copied(dest, pushed, copy_referrers(source, root, dest, client=client) if referrers else 0)


def _narrowed(src: Opened, platforms: Sequence[Platform]) -> tuple[ContentSource, Descriptor]:
    """The source and root to copy: ``src`` itself, one platform's manifest, or a new index of several (with the
    buildx attestation manifests of the chosen images).

    :raises NotFound: ``src`` has no image for a wanted platform.
    """
    doc = src.document
    if not platforms or isinstance(doc, Manifest):
        return src.source, src.descriptor
    children = [m for m in doc.manifests if is_manifest(m.media_type)]
    chosen: list[Descriptor] = []
    for p in platforms:
        best = select_platform(children, p)
        if best is None:
            have = ", ".join(str(m.platform) for m in children if m.platform) or "none"
            raise NotFound(f"{src.name} has no image for {p} (it has: {have})")
        if best not in chosen:
            chosen.append(best)
    if len(chosen) == 1:
        return src.source, chosen[0]
    subjects = {str(c.digest) for c in chosen}
    atts = [m for m in doc.manifests if _attestation(m) and m.annotations[REFERENCE_DIGEST] in subjects]
    index = Index((*chosen, *atts), doc.media_type, doc.annotations)
    raw = index.to_json()
    desc = Descriptor(index.media_type, Digest.of(raw), len(raw))
    return CompositeSource({str(desc.digest): raw}, {}, src.source), desc
