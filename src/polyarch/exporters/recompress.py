"""Layer recompression and media-type conversion: ``compression=``, ``compression-level=``,
``force-compression=`` and ``oci-mediatypes=`` of an output.

The images come back with each layer in the asked compression (decompressed and written again, diff_ids
unchanged; a layer already in that compression only gets the asked media type) and OCI or Docker media types on
layers, manifests, configs and the index. With the defaults (gzip, OCI, no level, not forced) nothing is written
and the same result comes back.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from polyarch.content.compression import LayerWriter, decompressed
from polyarch.content.images import ImageStore
from polyarch.errors import UsageError
from polyarch.oci.spec import layer_compression, layer_media_type
from polyarch.solver.state import Layer

from .spec import OutputSpec

if TYPE_CHECKING:
    from polyarch.exporters.assemble import BuildResult, PlatformImage

__all__ = ["convert", "recompress", "wants_conversion"]

_OPTIONS = ("compression", "compression-level", "force-compression", "oci-mediatypes")


def wants_conversion(spec: OutputSpec) -> bool:
    """Does the output set any compression or media type option?"""
    return any(k in spec.attrs for k in _OPTIONS)


def recompress(images: ImageStore, result: BuildResult, spec: OutputSpec) -> BuildResult:
    """``result`` converted as ``spec``'s options ask (the same result with the defaults).

    :raises UsageError: ``compression-level`` is not a number.
    """
    level = spec.attrs.get("compression-level")
    if level is not None and not level.isdigit():
        raise UsageError(f"compression-level={level!r} is not a number")
    return convert(images, result, compression=spec.attrs.get("compression", "gzip"),
                   level=int(level) if level else None, oci=spec.flag("oci-mediatypes", True),
                   force=spec.flag("force-compression", False))


def _layer(images: ImageStore, layer: Layer, compression: str, level: int | None, oci: bool, force: bool) -> Layer:
    if layer_compression(layer.descriptor.media_type) == compression and not force and level is None:
        return replace(layer, descriptor=replace(layer.descriptor, media_type=layer_media_type(compression, oci=oci)))
    with images.store.open(layer.descriptor.digest) as raw, \
            LayerWriter(images.store, compression, level=level, oci=oci) as lw:
        src = decompressed(raw)
        while chunk := src.read(1 << 20):
            lw.write(chunk)
        res = lw.close_layer()
    return replace(layer, descriptor=res.descriptor)


def convert(images: ImageStore, result: BuildResult, *, compression: str = "gzip", level: int | None = None,
            oci: bool = True, force: bool = False) -> BuildResult:
    """The same images with layers in ``compression`` and OCI or Docker media types (diff_ids unchanged)."""
    compression = "none" if compression == "uncompressed" else compression
    if compression == "gzip" and oci and not force and level is None:
        return result
    done: dict[str, Layer] = {}
    out: list[PlatformImage] = []
    for img in result.images:
        layers = []
        for layer in img.layers:
            key = str(layer.descriptor.digest)
            if key not in done:
                done[key] = _layer(images, layer, compression, level, oci, force)
            layers.append(done[key])
        notes = dict(images.image(img.descriptor).manifest.annotations)
        desc = images.put_image(img.config, [x.descriptor for x in layers], oci=oci, annotations=notes or None)
        if img.descriptor.annotations:
            desc = desc.with_annotations(img.descriptor.annotations)
        out.append(replace(img, descriptor=desc, config_descriptor=images.put_config(img.config, oci=oci),
                           layers=tuple(layers)))
    index_notes = dict(images.read_document(result.index).document.annotations)
    index = images.put_index([p.descriptor for p in out], oci=oci, annotations=index_notes or None)
    return replace(result, index=index, images=tuple(out))
