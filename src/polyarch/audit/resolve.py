"""``PlatformLookup``s: the platforms of an image in the local store or in a registry, or in the first that has it."""

from __future__ import annotations

from typing import Any

from polyarch.audit.table import PlatformLookup
from polyarch.platform import Platform

__all__ = ["ChainResolver", "RegistryResolver", "StoreResolver"]


class StoreResolver:
    """Images of the local store (or any OCI layout's ImageStore)."""

    def __init__(self, images: Any) -> None:
        self._images = images

    def platforms(self, ref: str) -> list[Platform] | None:
        from polyarch.errors import InvalidManifest, NotFound
        from polyarch.oci.spec import Index, is_manifest

        try:
            desc = self._images.lookup(ref)
            doc = self._images.read_document(desc).document
        except (NotFound, InvalidManifest):
            return None
        if isinstance(doc, Index):
            return [m.platform for m in doc.manifests if m.platform is not None and is_manifest(m.media_type)
                    and m.platform.os != "unknown" and m.platform.architecture != "unknown"]
        return [self._images.image(desc).platform]


class RegistryResolver:
    """Images of registries, through the registry client (the user's credentials; a 404 is "not found")."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def platforms(self, ref: str) -> list[Platform] | None:
        from polyarch.errors import InvalidReference, RegistryError
        from polyarch.oci import reference
        from polyarch.oci.spec import Index, is_manifest, parse_config, parse_document
        from polyarch.registry.sources import RegistrySource, read_config

        try:
            parsed = reference.parse(ref).defaulted()
        except InvalidReference:
            return None
        try:
            fetched = self._client.get_manifest(parsed)
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        doc = parse_document(fetched.raw, fetched.media_type)
        if isinstance(doc, Index):
            return [m.platform for m in doc.manifests if m.platform is not None and is_manifest(m.media_type)
                    and m.platform.os != "unknown" and m.platform.architecture != "unknown"]
        return [parse_config(read_config(RegistrySource(self._client, parsed), doc.config)).platform]


class ChainResolver:
    """Asks each lookup in turn; the first that knows the image answers."""

    def __init__(self, *resolvers: PlatformLookup) -> None:
        self._resolvers = resolvers

    def platforms(self, ref: str) -> list[Platform] | None:
        for r in self._resolvers:
            found = r.platforms(ref)
            if found is not None:
                return found
        return None
