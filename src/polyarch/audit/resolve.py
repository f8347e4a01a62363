"""Audit's ``PlatformLookup`` over ``polyarch.sources``: an image reference (or any location string) opened with
audit's order, the local store first and then a registry (``STORE_THEN_REGISTRY``; only the store when no
registry client is given); what is found nowhere is "not found"."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from polyarch.platform import Platform

if TYPE_CHECKING:
    from polyarch.content.images import ImageStore
    from polyarch.registry.client import RegistryClient

__all__ = ["SourceLookup"]


class SourceLookup:
    """The platforms of images in ``images`` (the local store), then in registries through ``registry`` (a
    client the caller owns and closes; None: the local store only)."""

    def __init__(self, images: ImageStore, registry: Callable[[], RegistryClient] | None) -> None:
        self._images = images
        self._registry = registry

    def platforms(self, ref: str) -> list[Platform] | None:
        """:raises PolyarchError: a registry could not be asked, or ``ref`` is not a location."""
        from polyarch.errors import NotFound
        from polyarch.sources import STORE_THEN_REGISTRY, Kind, open_source, parse_location

        order = STORE_THEN_REGISTRY if self._registry is not None else (Kind.LOCAL,)
        try:
            opened = open_source(parse_location(ref), images=self._images, registry=self._registry, order=order)
        except NotFound:
            return None
        with opened:
            return opened.platforms()
