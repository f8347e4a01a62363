"""Read-only summaries of stored images for ``images`` and ``inspect``, and docker's ``images --filter``.

``summarize`` gives each entry its platforms, size, image ID (``ImageStore.image_id``), newest creation time and
labels; ``ImageFilter`` is docker's ``reference=``, ``dangling=``, ``before=``, ``since=`` and ``label=``."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from polyarch.digest import Digest
from polyarch.errors import PolyarchError, UsageError
from polyarch.oci import reference
from polyarch.oci.spec import Descriptor, Index, Manifest
from polyarch.platform import Platform

from .images import ImageStore, ResolvedDocument

__all__ = ["ImageFilter", "ImageSummary", "describe", "docker_row", "parse_filters", "summarize"]


@dataclass(frozen=True, slots=True)
class ImageSummary:
    """One ``index.json`` entry; ``name`` is ``""`` for an unnamed (dangling) entry."""

    name: str
    digest: Digest
    media_type: str
    platforms: tuple[Platform, ...]
    size: int
    complete: bool
    image_id: Digest | None = None
    created: str = ""  # RFC 3339, the newest of its images ("" when unknown)
    labels: dict[str, str] = field(default_factory=dict)  # every image's labels (a later platform's win)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": str(self.digest), "mediaType": self.media_type,
                "platforms": [str(p) for p in self.platforms], "size": self.size, "complete": self.complete}


def summarize(images: ImageStore, name: str, desc: Descriptor) -> ImageSummary:
    """Platforms, total size (each blob counted once), image ID, creation time and labels of what ``name``
    points to."""
    seen: set[Digest] = set()
    size = 0
    complete = True
    platforms: list[Platform] = []
    image_id: Digest | None = None
    created = ""
    labels: dict[str, str] = {}
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
            image_id = desc.digest
            configs = [images.read_config(images.read_document(m).document.config)[0]  # type: ignore[union-attr]
                       for m in doc.manifests if m.platform is not None and m.platform.os != "unknown"
                       and images.store.has(m.digest)]
        else:
            cfg, _ = images.read_config(doc.config)
            platforms = [cfg.platform]
            image_id = doc.config.digest
            configs = [cfg]
        for cfg in configs:
            created = max(created, cfg.created or "")
            labels.update(cfg.config.labels)
    except PolyarchError:
        complete = False
    return ImageSummary(name, desc.digest, desc.media_type, tuple(platforms), size, complete, image_id, created,
                        labels)


def docker_row(s: ImageSummary, *, short: bool = True) -> dict[str, Any]:
    """The fields docker's ``images --format`` knows (``Repository``, ``Tag``, ``ID``, ``Digest``, ``CreatedAt``,
    ``Size``) plus ``Platforms``; ``<none>`` for what an unnamed entry lacks."""
    repo, tag = "<none>", "<none>"
    if s.name:
        try:
            ref = reference.parse(s.name)
            repo, tag = _familiar_repo(ref), ref.tag or "<none>"
        except PolyarchError:
            repo = s.name
    image_id = s.image_id or s.digest
    return {"Repository": repo, "Tag": tag, "ID": image_id.short if short else str(image_id),
            "Digest": str(s.digest), "CreatedAt": s.created, "Size": _human(s.size),
            "Platforms": ",".join(map(str, s.platforms)), "Containers": "N/A"}


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return f"{size:.1f}TB"


# --- docker's images --filter ----------------------------------------------------------------------------------

_FILTER_KEYS = ("reference", "dangling", "before", "since", "label")


@dataclass(frozen=True, slots=True)
class ImageFilter:
    """Filters of one kind are OR-ed (docker), kinds are AND-ed; ``before``/``since`` name an image."""

    reference: tuple[str, ...] = ()
    dangling: bool | None = None
    before: tuple[str, ...] = ()
    since: tuple[str, ...] = ()
    label: tuple[str, ...] = ()

    def select(self, rows: Sequence[ImageSummary]) -> list[ImageSummary]:
        def created_of(name: str) -> str:
            for r in rows:
                if r.name and _same(r.name, name):
                    return r.created
            for r in rows:
                if r.image_id is not None and r.image_id.hex.startswith(name.removeprefix("sha256:")):
                    return r.created
            raise UsageError(f"--filter before/since: no image named {name!r}")

        before = [created_of(n) for n in self.before]
        since = [created_of(n) for n in self.since]
        out = []
        for r in rows:
            if self.dangling is not None and (not r.name) != self.dangling:
                continue
            if self.reference and not any(_matches_reference(r.name, p) for p in self.reference):
                continue
            if before and not all(r.created < b for b in before):
                continue
            if since and not all(r.created > b for b in since):
                continue
            if self.label and not any(_matches_label(r.labels, x) for x in self.label):
                continue
            out.append(r)
        return out


def parse_filters(texts: Sequence[str]) -> ImageFilter:
    """``KEY=VALUE`` texts → an ``ImageFilter``. :raises UsageError: unknown key, no ``=``, bad dangling value."""
    values: dict[str, list[str]] = {k: [] for k in _FILTER_KEYS}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip().lower()
        if not sep or key not in values:
            raise UsageError(f"invalid filter {text!r}", hint="use " + ", ".join(f"{k}=…" for k in _FILTER_KEYS))
        values[key].append(value)
    dangling: bool | None = None
    for v in values["dangling"]:
        if v.lower() not in ("true", "false", "1", "0"):
            raise UsageError(f"invalid filter 'dangling={v}': expected true or false")
        dangling = v.lower() in ("true", "1")
    return ImageFilter(tuple(values["reference"]), dangling, tuple(values["before"]), tuple(values["since"]),
                       tuple(values["label"]))


def _same(a: str, b: str) -> bool:
    try:
        return str(reference.parse(a).defaulted()) == str(reference.parse(b).defaulted())
    except PolyarchError:
        return a == b


def _matches_reference(name: str, pattern: str) -> bool:
    """docker: the pattern matches the familiar ``repo:tag`` or the familiar repository alone (path-style globs)."""
    if not name:
        return False
    try:
        ref = reference.parse(name)
    except PolyarchError:
        return fnmatch.fnmatchcase(name, pattern)
    familiar = ref.familiar.split("@", 1)[0]
    return any(_glob(c, pattern) for c in (familiar, _familiar_repo(ref), name))


def _familiar_repo(ref: reference.Reference) -> str:
    """``busybox`` for ``docker.io/library/busybox:1``: the familiar name without tag or digest."""
    familiar = ref.familiar.split("@", 1)[0]
    return familiar.rsplit(":", 1)[0] if ref.tag else familiar


def _glob(text: str, pattern: str) -> bool:
    """Go's path.Match: ``*`` and ``?`` do not cross ``/``."""
    regex = "".join("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, text) is not None


def _matches_label(labels: dict[str, str], text: str) -> bool:
    key, sep, value = text.partition("=")
    return key in labels and (not sep or labels[key] == value)


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
