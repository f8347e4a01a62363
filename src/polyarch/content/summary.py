"""Read-only summaries of stored images for ``images`` and ``inspect``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from polyarch.digest import Digest
from polyarch.errors import PolyarchError
from polyarch.oci.spec import Descriptor, Index, Manifest
from polyarch.platform import Platform

from .images import ImageStore, ResolvedDocument

__all__ = ["ImageSummary", "describe", "summarize"]


@dataclass(frozen=True, slots=True)
class ImageSummary:
    name: str
    digest: Digest
    media_type: str
    platforms: tuple[Platform, ...]
    size: int
    complete: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": str(self.digest), "mediaType": self.media_type,
                "platforms": [str(p) for p in self.platforms], "size": self.size, "complete": self.complete}


def summarize(images: ImageStore, name: str, desc: Descriptor) -> ImageSummary:
    """Platforms and total size (each blob counted once) of what ``name`` points to."""
    seen: set[Digest] = set()
    size = 0
    complete = True
    platforms: list[Platform] = []
    try:
        for d in images.walk(desc):
            if d.digest in seen:
                continue
            seen.add(d.digest)
            have = images.store.stat(d.digest)
            if have is None:
                complete = False
            else:
                size += have
        doc = images.read_document(desc).document
        if isinstance(doc, Index):
            platforms = [m.platform for m in doc.manifests if m.platform is not None and m.platform.os != "unknown"]
        else:
            cfg, _ = images.read_config(doc.config)
            platforms = [cfg.platform]
    except PolyarchError:
        complete = False
    return ImageSummary(name, desc.digest, desc.media_type, tuple(platforms), size, complete)


def describe(images: ImageStore, name: str, doc: ResolvedDocument) -> dict[str, Any]:
    """A JSON-able view: the index (if any), and for each image its platform, config digest, layers, env, cmd."""
    out: dict[str, Any] = {"name": name, "digest": str(doc.descriptor.digest), "mediaType": doc.descriptor.media_type}
    children: list[Descriptor]
    if isinstance(doc.document, Index):
        children = list(doc.document.manifests)
        if doc.document.annotations:
            out["annotations"] = dict(doc.document.annotations)
    else:
        children = [doc.descriptor]
    manifests = []
    for child in children:
        entry: dict[str, Any] = {"digest": str(child.digest), "mediaType": child.media_type, "size": child.size}
        if child.platform is not None:
            entry["platform"] = str(child.platform)
        try:
            image = images.image(child)
        except PolyarchError as exc:
            entry["error"] = str(exc)
            manifests.append(entry)
            continue
        m: Manifest = image.manifest
        cfg = image.config
        entry.update({
            "platform": str(cfg.platform),
            "config": str(m.config.digest),
            "created": cfg.created,
            "layers": [{"digest": str(layer.digest), "size": layer.size, "mediaType": layer.media_type}
                       for layer in m.layers],
            "env": list(cfg.config.env),
            "entrypoint": list(cfg.config.entrypoint) if cfg.config.entrypoint is not None else None,
            "cmd": list(cfg.config.cmd) if cfg.config.cmd is not None else None,
            "workingDir": cfg.config.working_dir,
            "user": cfg.config.user,
            "labels": dict(cfg.config.labels),
        })
        manifests.append(entry)
    out["manifests"] = manifests
    return out
