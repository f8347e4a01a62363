"""``rewrite-timestamp=true`` (buildx's output option): no file in a layer the build added is newer than
``SOURCE_DATE_EPOCH``.

polyarch already clamps the mtimes of the layers it writes when ``SOURCE_DATE_EPOCH`` is set, but a layer can come
from the build cache, written by an earlier build with another epoch or none (the epoch is not part of a cache
key, so a changed epoch does not rebuild everything): those layers are rewritten here, entry by entry, with every
mtime later than the epoch set to it (PAX ``mtime``/``atime``/``ctime`` records dropped). Layers that need no change
keep their blob, so a rewrite of an already clamped build is a no-op with the same digests. Base image layers are
never touched (BuildKit does not either: they stay shared with the base image).
"""

from __future__ import annotations

import tarfile
from dataclasses import replace
from typing import TYPE_CHECKING

from polyarch.content.compression import LayerWriter, decompressed
from polyarch.content.images import ImageStore
from polyarch.oci.spec import MediaType, layer_compression
from polyarch.solver.state import Layer

if TYPE_CHECKING:
    from polyarch.exporters.assemble import BuildResult, PlatformImage

__all__ = ["rewrite_timestamps"]

_TIME_KEYS = ("mtime", "atime", "ctime")


def _newest(images: ImageStore, layer: Layer, epoch: int) -> bool:
    """Does any entry of ``layer`` have an mtime later than ``epoch``?"""
    with images.store.open(layer.descriptor.digest) as raw, tarfile.open(fileobj=decompressed(raw), mode="r|") as tf:
        return any(m.mtime > epoch or any(k in m.pax_headers for k in _TIME_KEYS) for m in tf)


def _rewrite(images: ImageStore, layer: Layer, epoch: int) -> Layer:
    compression = layer_compression(layer.descriptor.media_type)
    oci = not str(layer.descriptor.media_type).startswith("application/vnd.docker.")
    with images.store.open(layer.descriptor.digest) as raw, \
            tarfile.open(fileobj=decompressed(raw), mode="r|") as src, \
            LayerWriter(images.store, compression, oci=oci) as lw:
        with tarfile.open(fileobj=lw, mode="w|", format=tarfile.PAX_FORMAT) as out:
            for member in src:
                member.mtime = min(int(member.mtime), epoch)
                member.pax_headers = {k: v for k, v in member.pax_headers.items() if k not in _TIME_KEYS}
                out.addfile(member, src.extractfile(member) if member.isreg() else None)
        res = lw.close_layer()
    return Layer(res.descriptor, res.diff_id, res.uncompressed_size)


def rewrite_timestamps(images: ImageStore, result: BuildResult, epoch: int) -> BuildResult:
    """``result`` with the layers the build added clamped to ``epoch`` (the same result when none needed it)."""
    done: dict[str, Layer] = {}
    changed = False
    out: list[PlatformImage] = []
    for img in result.images:
        layers = list(img.layers)
        for i in range(img.base_layers, len(layers)):
            key = str(layers[i].descriptor.digest)
            if key not in done:
                done[key] = _rewrite(images, layers[i], epoch) if _newest(images, layers[i], epoch) else layers[i]
            layers[i] = done[key]
        if layers == list(img.layers):
            out.append(img)
            continue
        changed = True
        manifest = images.image(img.descriptor)
        oci = manifest.manifest.media_type != MediaType.DOCKER_MANIFEST
        config = replace(img.config, diff_ids=tuple(x.diff_id for x in layers))
        desc = images.put_image(config, [x.descriptor for x in layers], oci=oci,
                                annotations=dict(manifest.manifest.annotations) or None)
        if img.descriptor.annotations:
            desc = desc.with_annotations(img.descriptor.annotations)
        out.append(replace(img, descriptor=desc, config=config, config_descriptor=images.put_config(config, oci=oci),
                           layers=tuple(layers)))
    if not changed:
        return result
    doc = images.read_document(result.index)
    index = images.put_index([p.descriptor for p in out], oci=doc.descriptor.media_type != MediaType.DOCKER_MANIFEST_LIST,
                             annotations=dict(doc.document.annotations) or None)
    return replace(result, index=index, images=tuple(out))
