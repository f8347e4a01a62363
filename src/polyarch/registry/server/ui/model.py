"""The web page's values: what a tag's digest holds (cached by digest), a cell's verdict, hosts, the viewer.

All frozen; ``to_dict`` gives the JSON of ``/ui/api/`` (the HTML pages show the same facts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from polyarch.platform import Platform

__all__ = ["CellVerdict", "HostPlatform", "ImageSummary", "PlatformEntry", "RepoInfo", "TagInfo", "Viewer"]


@dataclass(frozen=True, slots=True)
class HostPlatform:
    """A host of ``serve --hosts FILE`` with the platform it runs natively."""

    name: str
    platform: Platform


@dataclass(frozen=True, slots=True)
class CellVerdict:
    """verify's answer for one platform manifest: ``native`` (every ELF file fits), ``mismatch`` or ``error``."""

    state: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class PlatformEntry:
    """One platform of an image: its manifest's digest, media type and size (config + layers, as stored)."""

    platform: Platform
    digest: str
    media_type: str
    size: int
    key: str = ""  # str(platform), computed once

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", str(self.platform))

    def to_dict(self) -> dict[str, Any]:
        return {"platform": self.key, "digest": self.digest, "mediaType": self.media_type, "size": self.size}


@dataclass(frozen=True, slots=True)
class ImageSummary:
    """What a digest is: its platforms (attestation entries left out); ``error`` when it cannot be read."""

    digest: str
    media_type: str
    entries: tuple[PlatformEntry, ...] = ()
    error: str = ""

    def entry(self, platform: str) -> PlatformEntry | None:
        return next((e for e in self.entries if e.key == platform), None)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


class TagInfo(NamedTuple):
    """A tag as the registry serves it: pushed (``pushed`` is the time) or a local store name (``local``); a named
    tuple, as ``TagRow``: a matrix lists every tag."""

    repo: str
    tag: str
    digest: str
    media_type: str
    pushed: float | None
    local: bool = False

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"


@dataclass(frozen=True, slots=True)
class RepoInfo:
    name: str
    tags: int
    last_push: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tags": self.tags, "lastPush": self.last_push}


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks at the page: ``user`` ("" without auth), whether they may delete, their session's CSRF token."""

    user: str
    may_delete: bool
    csrf: str
