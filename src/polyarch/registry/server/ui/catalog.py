"""What the registry holds, as the web page reads it: tags (pushed, and local store names), repositories, and
what each digest is (``ImageSummary``), cached by digest.

One query lists every tag (``MetadataStore.tag_rows``); local store names are merged in (a pushed tag wins, as
in the API). A digest's summary is read from the blob storage once (index, then each platform manifest; a single
manifest's platform from its config) and kept: content under a digest never changes. Reads are bounded
(``MAX_MANIFEST``, ``MAX_CONFIG``) and digest-checked; a summary that cannot be read carries ``error``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from polyarch.content.images import MAX_CONFIG, MAX_MANIFEST
from polyarch.digest import Digest
from polyarch.errors import PolyarchError
from polyarch.oci.config import ImageConfig, parse_config
from polyarch.oci.spec import Index, Manifest, is_index, parse_document
from polyarch.platform import Platform

from ..state import Registry
from .model import ImageSummary, PlatformEntry, RepoInfo, TagInfo

__all__ = ["COLUMN_ORDER", "Catalog", "platform_columns"]

COLUMN_ORDER = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386", "linux/ppc64le",
                "linux/s390x", "linux/riscv64")
_MAX_SUMMARIES = 100_000


def platform_columns(summaries: Iterable[ImageSummary]) -> list[str]:
    """The platforms of ``summaries``: the common ones in ``COLUMN_ORDER``, then the others sorted."""
    seen = {e.key for s in summaries for e in s.entries}
    known = [p for p in COLUMN_ORDER if p in seen]
    return known + sorted(seen - set(known))


class Catalog:
    """Reads over one ``Registry``; thread-safe (summaries are computed on request threads and the verifier's)."""

    def __init__(self, reg: Registry) -> None:
        self._reg = reg
        self._summaries: dict[str, ImageSummary] = {}
        self._lock = threading.Lock()

    def tags(self) -> list[TagInfo]:
        """Every tag, by repository then tag."""
        pushed = [TagInfo(r.repo, r.tag, r.digest, r.media_type, r.updated) for r in self._reg.meta.tag_rows()]
        local = self._reg.local.view().tags
        if not local:
            return pushed  # already ordered by the query
        seen = {(t.repo, t.tag) for t in pushed}
        extra = [TagInfo(repo, tag, str(desc.digest), desc.media_type, None, True)
                 for (repo, tag), desc in local.items() if (repo, tag) not in seen]
        return sorted(pushed + extra, key=lambda t: (t.repo, t.tag))

    def repos(self, tags: list[TagInfo]) -> list[RepoInfo]:
        """Repositories with their tag count and last push (repositories without a tag included)."""
        counts: dict[str, list[float | None]] = {}
        for t in tags:
            counts.setdefault(t.repo, []).append(t.pushed)
        for name in self._reg.meta.repos(limit=100_000):
            counts.setdefault(name, [])
        out = []
        for name in sorted(counts):
            times = [p for p in counts[name] if p is not None]
            out.append(RepoInfo(name, len(counts[name]), max(times) if times else None))
        return out

    def resolve(self, repo: str, tag: str) -> TagInfo | None:
        digest = self._reg.meta.tag(repo, tag)
        if digest is not None:
            row = self._reg.meta.manifest(repo, digest)
            pushed = next((r.updated for r in self._reg.meta.tag_rows() if r.repo == repo and r.tag == tag), None) \
                if row is not None else None
            return TagInfo(repo, tag, digest, row.media_type if row else "", pushed)
        desc = self._reg.local.lookup(repo, tag)
        if desc is not None:
            return TagInfo(repo, tag, str(desc.digest), desc.media_type, None, True)
        return None

    def repo_known(self, repo: str) -> bool:
        return self._reg.repo_known(repo)

    # --- documents -------------------------------------------------------------------------------------------

    def read(self, digest: str, limit: int = MAX_MANIFEST) -> bytes:
        """A blob whole, digest-checked. :raises PolyarchError:"""
        d = Digest.parse(digest)
        raw = self._reg.blobs.read(d, limit=limit)
        if Digest.of(raw, d.algorithm) != d:
            raise PolyarchError(f"stored blob {digest} failed verification")
        return raw

    def document(self, digest: str, media_type: str = "") -> Manifest | Index:
        return parse_document(self.read(digest), media_type or None)

    def config(self, manifest: Manifest) -> ImageConfig:
        return parse_config(self.read(str(manifest.config.digest), MAX_CONFIG))

    def cached(self, digest: str) -> ImageSummary | None:
        """The summary if already known (never reads)."""
        return self._summaries.get(digest)

    def summary(self, digest: str, media_type: str = "") -> ImageSummary:
        """What ``digest`` is; read once, then cached."""
        known = self._summaries.get(digest)
        if known is not None:
            return known
        summary = self._summarize(digest, media_type)
        with self._lock:
            if len(self._summaries) >= _MAX_SUMMARIES:
                self._summaries.clear()
            self._summaries[digest] = summary
        return summary

    def _summarize(self, digest: str, media_type: str) -> ImageSummary:
        try:
            doc = self.document(digest, media_type)
            if isinstance(doc, Manifest):
                cfg = self.config(doc)
                platform = Platform(cfg.os, cfg.architecture, cfg.variant)
                return ImageSummary(digest, doc.media_type, (PlatformEntry(platform, digest, doc.media_type,
                                                                           _image_size(doc)),))
            entries = []
            for child in doc.manifests:
                p = child.platform
                if p is None or p.os == "unknown" or p.architecture == "unknown" or is_index(child.media_type):
                    continue  # attestation entries, nested indexes: not platforms of this image
                try:
                    size = _image_size(self.document(str(child.digest), child.media_type))
                except PolyarchError:
                    size = 0
                entries.append(PlatformEntry(Platform(p.os, p.architecture, p.variant), str(child.digest),
                                             child.media_type, size))
            return ImageSummary(digest, doc.media_type, tuple(entries))
        except PolyarchError as exc:
            return ImageSummary(digest, media_type, (), error=str(exc))


def _image_size(doc: Manifest | Index) -> int:
    if isinstance(doc, Index):
        return 0
    return doc.config.size + sum(layer.size for layer in doc.layers)
