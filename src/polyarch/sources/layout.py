"""An OCI image layout directory as a ``ContentSource``, and what ``oci-layout://PATH[:TAG|@DIGEST]`` names in it.

Its blobs were written by someone else: streams are checked as they are read. Without a tag or digest, a layout
whose index.json lists one image gives it; several entries of at most one name are read as one index (index.json
itself, e.g. a ``type=oci`` export of several platforms); several names need one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from polyarch.content.images import REF_NAME, normalize_name
from polyarch.content.store import ContentStore
from polyarch.digest import Digest, VerifyingReader
from polyarch.errors import NotFound
from polyarch.oci.spec import Descriptor, Index, MediaType

from .protocol import ContentSource, Location, Opened
from .store import StoreSource, without_ref_name

__all__ = ["CONTAINERD_NAME", "LayoutSource", "find_layout", "find_named", "open_layout", "pick_entry"]

CONTAINERD_NAME = "io.containerd.image.name"


class LayoutSource(StoreSource):
    """Blobs of an OCI layout directory (and, when read as one index, its index.json in memory)."""

    def __init__(self, path: Path, documents: dict[str, bytes] | None = None) -> None:
        super().__init__(ContentStore(path, create=False), name=str(path))
        self._documents = dict(documents or {})

    def read(self, desc: Descriptor, *, limit: int = 4 << 20) -> bytes:
        raw = self._documents.get(str(desc.digest))
        return raw if raw is not None else super().read(desc, limit=limit)

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        with self.store.open(desc.digest) as f:
            yield VerifyingReader(f, desc.digest, desc.size)  # type: ignore[misc]

    def route(self, child: Descriptor) -> ContentSource:
        return self


def find_layout(text: str) -> tuple[Path, str] | None:
    """(layout directory, tag) when ``text`` is ``PATH`` or ``PATH:TAG`` of an OCI layout, else None: the whole
    text first, then each colon in turn (a tag may hold colons: a layout's ref.name can be a full image name)."""
    if (Path(text) / "oci-layout").is_file():
        return Path(text), ""
    start = 0
    while (i := text.find(":", start)) > 0:
        path, tag = text[:i], text[i + 1:]
        if tag and (Path(path) / "oci-layout").is_file():
            return Path(path), tag
        start = i + 1
    return None


def find_named(entries: Sequence[Descriptor], name: str, where: str) -> Descriptor:
    """The entry named ``name`` (ref.name, or containerd's image name): exact spelling first, then normalized.

    :raises NotFound: naming ``where``.
    """
    named = [(e.annotations.get(REF_NAME) or e.annotations.get(CONTAINERD_NAME), e) for e in entries]
    for n, e in named:
        if n == name:
            return e
    wanted = normalize_name(name)
    for n, e in named:
        if n and normalize_name(n) == wanted:
            return e
    raise NotFound(f"no image named {name!r} in {where}")


def pick_entry(entries: Sequence[Descriptor], where: str) -> tuple[Descriptor, bytes | None, str]:
    """The entry of an index.json when no tag names one: (descriptor, in-memory document bytes when index.json
    itself is read as the index, name for messages). Referrers (attestations) kept there are not images."""
    from polyarch.content.referrers import is_referrer

    entries = [e for e in entries if not is_referrer(e)]
    if not entries:
        raise NotFound(f"OCI layout {where} has no image (index.json is empty)")
    if len(entries) == 1:
        return entries[0], None, where
    names = sorted({e.annotations[REF_NAME] for e in entries if e.annotations.get(REF_NAME)})
    if len(names) > 1:
        raise NotFound(f"OCI layout {where} holds several images: {', '.join(names)}",
                       hint=f"name one: {where}:{names[0]}")
    raw = Index(tuple(without_ref_name(e) for e in entries)).to_json()
    return Descriptor(MediaType.OCI_INDEX, Digest.of(raw), len(raw)), raw, f"{where} (index.json)"


def open_layout(location: Location, found: tuple[Path, str] | None = None) -> Opened:
    """What an ``oci-layout://`` location names (``found``: a bare ``PATH[:TAG]`` already split, named as the
    directory and tag; an explicit location is named as written). :raises NotFound: no layout there, or no such
    image in it."""
    explicit = found is None
    if found is None:
        found = find_layout(location.target)
    if found is None:
        raise NotFound(f"{location.target!r} is not an OCI image layout directory (no oci-layout file)")
    path, tag = found
    source = LayoutSource(path)
    if location.digest is not None:
        desc, name = _by_digest(source, location.digest), str(location)
    else:
        if tag:
            desc, raw, name = find_named(source.images.entries(), tag, f"OCI layout {path}"), None, f"{path}:{tag}"
        else:
            desc, raw, name = pick_entry(source.images.entries(), str(path))
        if raw is not None:
            source = LayoutSource(path, {str(desc.digest): raw})
        if explicit:
            name = f"{location} (index.json)" if raw is not None else str(location)
    desc = without_ref_name(desc)
    return Opened(source, desc, source.read(desc), name)


def _by_digest(source: LayoutSource, digest: Digest) -> Descriptor:
    size = source.store.stat(digest)
    if size is None:
        raise NotFound(f"{source.name}: no blob {digest} in the layout")
    for entry in source.images.entries():
        if entry.digest == digest:
            return entry
    raw = source.store.read(digest, limit=4 << 20)
    try:
        media_type = json.loads(raw).get("mediaType") or MediaType.OCI_MANIFEST
    except (ValueError, AttributeError):
        media_type = MediaType.OCI_MANIFEST
    return Descriptor(media_type, digest, size)
