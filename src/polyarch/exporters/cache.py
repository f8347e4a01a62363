"""``--cache-to`` / ``--cache-from``: the build cache as an OCI artifact, in a local OCI layout or a registry.

The artifact is one OCI image manifest (``artifactType`` ``application/vnd.polyarch.buildcache.v1``): its
config blob lists the cache entries (key → layer descriptor and diff_id, or "no layer") and its layers are the
layer blobs those entries name. Keys are portable between machines: they are made of image manifest digests,
step definitions and content hashes of the sources, never of host paths.

Export writes the entries of the steps of this build (``mode=max``: every step of every stage; ``mode=min``,
the default: the steps whose layers end up in the exported images). Import copies the listed blobs into the
store and the entries into the local cache, before the solve, so matching steps report ``CACHED``.

Forms: ``type=local,dest=DIR`` / ``type=local,src=DIR`` (an OCI layout, name ``cache`` or ``tag=``),
``type=registry,ref=REF`` (and a bare ``REF`` for ``--cache-from``). ``type=inline`` (BuildKit's cache metadata in
the image config) is refused with one line, never silently ignored. Each kind of place is one ``CacheLocation``
(``save`` the artifact, ``load`` its entries); registry locations use the caller's client factory and never make a
client themselves.

Failures, as buildx: a ``--cache-from`` source that cannot be read (registry down, no such directory or
reference, not a cache) is one warning through the caller's ``warn`` and the build goes on without it. A
``--cache-to`` export that fails fails the build (``CacheExportError``, one line naming the destination), unless
it has ``ignore-error=true``: then it is one warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.errors import NotFound, PolyarchError, UsageError
from polyarch.oci.spec import Descriptor, Manifest, MediaType, canonical_json, parse_manifest
from polyarch.solver.cache import BuildCache
from polyarch.solver.state import Layer

if TYPE_CHECKING:
    from polyarch.registry.client import RegistryClient

__all__ = ["ARTIFACT_TYPE", "CacheExportError", "CacheLocation", "CacheSpec", "export_cache", "import_cache",
           "location", "parse_cache_spec"]

Entries = list[tuple[str, Layer | None]]

ARTIFACT_TYPE = "application/vnd.polyarch.buildcache.v1"
CONFIG_TYPE = "application/vnd.polyarch.buildcache.config.v1+json"


@dataclass(frozen=True, slots=True)
class CacheSpec:
    type: str  # local | registry | inline
    path: str = ""  # local: the layout directory
    ref: str = ""  # registry: the reference
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return self.attrs.get("mode", "min")

    @property
    def ignore_error(self) -> bool:
        """``ignore-error=true`` (``--cache-to``): a failed export is a warning, not a failed build."""
        return self.attrs.get("ignore-error", "false").lower() in ("true", "1")

    def describe(self) -> str:
        """The place in words, for messages: ``type=local,src=DIR`` style."""
        if self.type == "local":
            return f"type=local:{self.path}"
        return f"type={self.type}:{self.ref}" if self.ref else f"type={self.type}"


class CacheExportError(PolyarchError):
    """A ``--cache-to`` export failed (and it did not say ``ignore-error=true``)."""


def parse_cache_spec(text: str, *, export: bool) -> CacheSpec:
    """One ``--cache-to``/``--cache-from`` value.

    :raises UsageError: unknown type, missing ``dest``/``src``/``ref``, bad ``mode``.
    """
    flag = "--cache-to" if export else "--cache-from"
    if "=" not in text:
        if export or not text:
            raise UsageError(f"invalid {flag} {text!r}: expected type=…,…")
        return CacheSpec("registry", ref=text)
    attrs: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq:
            raise UsageError(f"invalid {flag} {text!r}: expected key=value pairs, got {part!r}")
        attrs[key.strip().lower()] = value.strip()
    kind = attrs.pop("type", "registry" if "ref" in attrs else "")
    mode = attrs.get("mode", "min")
    if mode not in ("min", "max"):
        raise UsageError(f"invalid {flag} mode={mode!r}: use min or max")
    ignore = attrs.get("ignore-error", "false").lower()
    if ignore not in ("true", "false", "1", "0"):
        raise UsageError(f"invalid {flag} ignore-error={attrs['ignore-error']!r}: use true or false")
    if kind == "local":
        path = attrs.pop("dest" if export else "src", "")
        if not path:
            raise UsageError(f"{flag} type=local needs {'dest' if export else 'src'}=DIR")
        return CacheSpec("local", path=path, attrs=attrs)
    if kind == "registry":
        ref = attrs.pop("ref", "")
        if not ref:
            raise UsageError(f"{flag} type=registry needs ref=NAME")
        return CacheSpec("registry", ref=ref, attrs=attrs)
    if kind == "inline":
        raise UsageError(f"{flag} type=inline is not supported: polyarch does not write cache metadata into "
                         f"the image config",
                         hint="export the cache as an artifact: type=registry,ref=NAME:buildcache or "
                              "type=local,dest=DIR")
    raise UsageError(f"unsupported {flag} type {kind!r}", hint="use type=local or type=registry")


# --- the artifact ------------------------------------------------------------------------------------------------

def _artifact(images: ImageStore, entries: Iterable[tuple[str, Layer | None]]) -> Descriptor:
    rows: dict[str, Any] = {}
    blobs: dict[str, Descriptor] = {}
    for key, layer in entries:
        rows[key] = None if layer is None else layer.to_json()
        if layer is not None:
            blobs[str(layer.descriptor.digest)] = Descriptor(layer.descriptor.media_type, layer.descriptor.digest,
                                                             layer.descriptor.size)
    config = canonical_json({"entries": rows})
    digest, size = images.store.write(config)
    manifest = Manifest(Descriptor(CONFIG_TYPE, digest, size), tuple(blobs[d] for d in sorted(blobs)),
                        MediaType.OCI_MANIFEST, artifact_type=ARTIFACT_TYPE)
    return images.put_document(manifest)


def _entries(config: bytes) -> Entries:
    try:
        doc = json.loads(config)
        return [(k, None if v is None else Layer.from_json(v)) for k, v in doc["entries"].items()]
    except (ValueError, KeyError, TypeError, AttributeError, PolyarchError) as exc:
        raise UsageError(f"the build cache artifact is not valid: {exc}") from exc


def _check(manifest: Manifest, where: str) -> None:
    if manifest.artifact_type != ARTIFACT_TYPE or manifest.config.media_type != CONFIG_TYPE:
        raise UsageError(f"{where} is not a polyarch build cache (artifactType {manifest.artifact_type!r})")


# --- where it lives ----------------------------------------------------------------------------------------------

class CacheLocation(Protocol):
    """One place a build cache artifact lives."""

    def save(self, images: ImageStore, artifact: Descriptor) -> None:
        """Write the artifact (already in ``images``) and every blob it names there."""
        ...

    def load(self, store: ContentStore) -> Entries | None:
        """Copy the artifact's blobs into ``store``; its entries, or None when there is no cache there yet."""
        ...


@dataclass(frozen=True, slots=True)
class LocalCache:
    """An OCI layout directory; the artifact is named ``tag`` (``cache`` by default)."""

    path: Path
    tag: str = "cache"

    def save(self, images: ImageStore, artifact: Descriptor) -> None:
        from .archive import write_oci_dir

        write_oci_dir(images, artifact, self.tag, self.path)

    def load(self, store: ContentStore) -> Entries | None:
        if not self.path.is_dir():
            raise NotFound(f"no directory {self.path}")
        if not (self.path / "index.json").is_file():
            raise NotFound(f"{self.path} is not an OCI layout (no index.json)")
        src = ImageStore(ContentStore(self.path, create=False))
        try:
            desc = src.lookup(self.tag)
        except NotFound:
            return None
        manifest = parse_manifest(src.store.read(desc.digest), desc.media_type)
        _check(manifest, str(self.path))
        entries = _entries(src.store.read(manifest.config.digest))
        for blob in manifest.layers:
            if not store.has(blob.digest):
                with src.store.open(blob.digest) as f:
                    store.ingest(f, expected=blob.digest, size=blob.size)
        return entries


@dataclass(frozen=True, slots=True)
class RegistryCache:
    """A registry reference; the client comes from ``client_factory`` (opened per transfer, closed after)."""

    ref: str
    client_factory: Callable[[], RegistryClient]

    def save(self, images: ImageStore, artifact: Descriptor) -> None:
        from polyarch.oci import reference
        from polyarch.sources.transfer import push_image

        with self.client_factory() as client:
            push_image(images, artifact, reference.parse(self.ref).defaulted(), client=client)

    def load(self, store: ContentStore) -> Entries | None:
        from polyarch.errors import RegistryError
        from polyarch.oci import reference

        ref = reference.parse(self.ref).defaulted()
        with self.client_factory() as client:
            try:
                fetched = client.get_manifest(ref)  # any kind: an image there is "not a cache", not "none"
            except RegistryError as exc:
                if exc.status == 404:
                    return None
                raise
            if fetched.media_type != MediaType.OCI_MANIFEST:
                raise UsageError(f"{self.ref} is not a polyarch build cache (a {fetched.media_type})")
            manifest = parse_manifest(fetched.raw, fetched.media_type)
            _check(manifest, self.ref)
            for blob in (manifest.config, *manifest.layers):
                if not store.has(blob.digest):
                    client.fetch_blob(ref, blob, lambda: store.writer())
            return _entries(store.read(manifest.config.digest))


def location(spec: CacheSpec, client_factory: Callable[[], RegistryClient] | None) -> CacheLocation:
    """The place ``spec`` names.

    :raises UsageError: a registry location and no client factory; a type with no location.
    """
    if spec.type == "local":
        return LocalCache(Path(spec.path), spec.attrs.get("tag", "cache"))
    if spec.type == "registry":
        if client_factory is None:
            raise UsageError(f"cache {spec.ref}: a registry cache needs a registry client, and none was given")
        return RegistryCache(spec.ref, client_factory)
    raise UsageError(f"cache type {spec.type!r} has no location")


# --- export and import -------------------------------------------------------------------------------------------

Warn = Callable[[str], None]


def _reason(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, PolyarchError) else (str(exc) or type(exc).__name__)
    return text.splitlines()[0] if text else type(exc).__name__


def export_cache(images: ImageStore, entries: Sequence[tuple[str, Layer | None]], specs: Sequence[CacheSpec], *,
                 client_factory: Callable[[], RegistryClient] | None = None, warn: Warn | None = None) -> None:
    """Write the cache entries to every ``--cache-to`` destination.

    :raises CacheExportError: a destination failed and has no ``ignore-error=true`` (its failure is passed to
        ``warn`` instead when it has; raised too when there is no ``warn``).
    """
    if not specs:
        return
    desc = _artifact(images, entries)
    for spec in specs:
        try:
            location(spec, client_factory).save(images, desc)
        except (PolyarchError, OSError) as exc:
            if spec.ignore_error and warn is not None:
                warn(f"cache export to {spec.describe()} failed (ignore-error=true): {_reason(exc)}")
                continue
            raise CacheExportError(f"cache export to {spec.describe()} failed: {_reason(exc)}",
                                   hint="add ignore-error=true to the --cache-to value to build anyway"
                                   ) from exc


def import_cache(store: ContentStore, cache: BuildCache, specs: Sequence[CacheSpec], *,
                 client_factory: Callable[[], RegistryClient] | None = None, warn: Warn | None = None) -> int:
    """Load every ``--cache-from`` source into ``store`` and ``cache``; returns the number of entries.

    A source that cannot be read (unreachable registry, missing directory or reference, not a cache) is passed
    to ``warn`` as one line and skipped, as buildx does; without ``warn`` its error is raised.
    """
    count = 0
    for spec in specs:
        try:
            entries = location(spec, client_factory).load(store)
            if entries is None:
                raise NotFound("no build cache there")
        except (PolyarchError, OSError) as exc:
            if warn is None:
                raise
            warn(f"cache import from {spec.describe()} skipped: {_reason(exc)}")
            continue
        for key, layer in entries:
            if layer is None or store.has(layer.descriptor.digest):
                cache.put(key, layer)
                count += 1
    return count
