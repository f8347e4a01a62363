"""``--cache-to`` / ``--cache-from``: the build cache as an OCI artifact, in a local OCI layout or a registry.

The artifact is one OCI image manifest (``artifactType`` ``application/vnd.polyarch.buildcache.v1``): its
config blob lists the cache entries (key → layer descriptor and diff_id, or "no layer") and its layers are the
layer blobs those entries name. Keys are portable between machines: they are made of image manifest digests,
step definitions and content hashes of the sources, never of host paths.

Export writes the entries of the steps of this build (``mode=max``: every step of every stage; ``mode=min``,
the default: the steps whose layers end up in the exported images). Import copies the listed blobs into the
store and the entries into the local cache, before the solve, so matching steps report ``CACHED``.

Forms: ``type=local,dest=DIR`` / ``type=local,src=DIR`` (an OCI layout, name ``cache`` or ``tag=``),
``type=registry,ref=REF`` (and a bare ``REF`` for ``--cache-from``); ``type=inline`` is accepted and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.errors import NotFound, PolyarchError, UsageError
from polyarch.oci.spec import Descriptor, Manifest, MediaType, canonical_json, parse_manifest
from polyarch.solver.cache import BuildCache
from polyarch.solver.state import Layer

__all__ = ["ARTIFACT_TYPE", "CacheSpec", "export_cache", "import_cache", "parse_cache_spec"]

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
        return CacheSpec("inline", attrs=attrs)
    raise UsageError(f"unsupported {flag} type {kind!r}", hint="use type=local or type=registry")


# --- export ------------------------------------------------------------------------------------------------------

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


def export_cache(images: ImageStore, entries: Sequence[tuple[str, Layer | None]], specs: Sequence[CacheSpec], *,
                 client_factory: Any = None) -> None:
    """Write the cache entries to every ``--cache-to`` destination."""
    if not specs:
        return
    desc = _artifact(images, entries)
    for spec in specs:
        if spec.type == "local":
            from polyarch.exporters.archive import write_oci_dir

            write_oci_dir(images, desc, spec.attrs.get("tag", "cache"), Path(spec.path))
        elif spec.type == "registry":
            from polyarch.oci import reference
            from polyarch.registry.client import ClientOptions, RegistryClient
            from polyarch.registry.transfer import push_image

            factory = client_factory or (lambda: RegistryClient(ClientOptions.from_env()))
            with factory() as client:
                push_image(images, desc, reference.parse(spec.ref).defaulted(), client=client)


# --- import ------------------------------------------------------------------------------------------------------

def _entries(config: bytes) -> list[tuple[str, Layer | None]]:
    try:
        doc = json.loads(config)
        return [(k, None if v is None else Layer.from_json(v)) for k, v in doc["entries"].items()]
    except (ValueError, KeyError, TypeError, AttributeError, PolyarchError) as exc:
        raise UsageError(f"the build cache artifact is not valid: {exc}") from exc


def _check(manifest: Manifest, where: str) -> None:
    if manifest.artifact_type != ARTIFACT_TYPE or manifest.config.media_type != CONFIG_TYPE:
        raise UsageError(f"{where} is not a polyarch build cache (artifactType {manifest.artifact_type!r})")


def import_cache(store: ContentStore, cache: BuildCache, specs: Sequence[CacheSpec], *,
                 client_factory: Any = None) -> int:
    """Load every ``--cache-from`` source into ``store`` and ``cache``; returns the number of entries.

    A source that does not exist yet (first build) is skipped, like buildx does.
    """
    count = 0
    for spec in specs:
        if spec.type == "local":
            layout = Path(spec.path)
            if not (layout / "index.json").is_file():
                continue
            src = ImageStore(ContentStore(layout, create=False))
            try:
                desc = src.lookup(spec.attrs.get("tag", "cache"))
            except NotFound:
                continue
            manifest = parse_manifest(src.store.read(desc.digest), desc.media_type)
            _check(manifest, spec.path)
            entries = _entries(src.store.read(manifest.config.digest))
            for blob in manifest.layers:
                if not store.has(blob.digest):
                    with src.store.open(blob.digest) as f:
                        store.ingest(f, expected=blob.digest, size=blob.size)
        elif spec.type == "registry":
            fetched = _import_registry(store, spec, client_factory)
            if fetched is None:
                continue
            entries = fetched
        else:
            continue
        for key, layer in entries:
            if layer is None or store.has(layer.descriptor.digest):
                cache.put(key, layer)
                count += 1
    return count


def _import_registry(store: ContentStore, spec: CacheSpec, client_factory: Any) -> list[tuple[str, Layer | None]] | None:
    from polyarch.errors import RegistryError
    from polyarch.oci import reference
    from polyarch.registry.client import ClientOptions, RegistryClient

    ref = reference.parse(spec.ref).defaulted()
    factory = client_factory or (lambda: RegistryClient(ClientOptions.from_env()))
    with factory() as client:
        try:
            fetched = client.get_manifest(ref, accept=MediaType.OCI_MANIFEST)
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        manifest = parse_manifest(fetched.raw, fetched.media_type)
        _check(manifest, spec.ref)
        for blob in (manifest.config, *manifest.layers):
            if not store.has(blob.digest):
                client.fetch_blob(ref, blob, lambda: store.writer())
        return _entries(store.read(manifest.config.digest))
