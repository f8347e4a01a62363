"""Solved states + the frontend's image configs → one image per platform and one index, in the content store.

Per platform: the layers are the result state's (base layers, then one per step that added something); the
config is the plan's with ``rootfs.diff_ids`` filled in, ``created`` set (``SOURCE_DATE_EPOCH`` when set, so two
builds of the same inputs give the same digests) and the history of steps whose layer turned out empty marked
``empty_layer``. ``--label`` values are merged into the config labels. The index lists the platforms in the
order they were asked for.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from polyarch.content.images import ImageStore
from polyarch.errors import BuildError
from polyarch.frontend.convert.plan import PlatformPlan
from polyarch.oci.spec import Descriptor, ImageConfig, MediaType
from polyarch.platform import Platform
from polyarch.solver.state import Layer, State

__all__ = ["Annotations", "BuildResult", "PlatformImage", "assemble", "created_time", "image_config"]


@dataclass(frozen=True, slots=True)
class PlatformImage:
    platform: Platform
    descriptor: Descriptor  # the manifest, with its platform
    config: ImageConfig
    config_descriptor: Descriptor
    layers: tuple[Layer, ...]
    base_layers: int = 0  # how many of ``layers`` are the base image's (the rest the build added)


@dataclass(frozen=True, slots=True)
class BuildResult:
    index: Descriptor
    images: tuple[PlatformImage, ...]


def created_time(epoch: int | None) -> str:
    when = _dt.datetime.fromtimestamp(epoch, _dt.UTC) if epoch is not None else _dt.datetime.now(_dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


_DOCKER_TO_OCI = {MediaType.DOCKER_LAYER_GZIP: MediaType.OCI_LAYER_GZIP, MediaType.DOCKER_LAYER: MediaType.OCI_LAYER}


def _oci_layer(layer: Layer) -> Layer:
    """A base layer with a Docker media type relabelled with the OCI one (same bytes, as BuildKit does)."""
    oci = _DOCKER_TO_OCI.get(layer.descriptor.media_type)  # type: ignore[call-overload]
    return layer if oci is None else replace(layer, descriptor=replace(layer.descriptor, media_type=oci))


def image_config(pp: PlatformPlan, states: Mapping[str, State], *, created: str,
                 labels: Mapping[str, str] | None = None) -> tuple[ImageConfig, tuple[Layer, ...]]:
    """The final config and layer stack of one platform's plan."""
    root = states[pp.root.digest]
    result = states[pp.result.digest]
    added = [states[v.digest].added for v in pp.layers]
    base_history = len(root.config.history) if root.config is not None else 0
    history = list(pp.image.history)
    steps = iter(added)
    for i in range(base_history, len(history)):
        entry = history[i]
        if not entry.empty_layer:
            layer = next(steps, None)
            if layer is None:
                entry = replace(entry, empty_layer=True)
        history[i] = entry if entry.created else replace(entry, created=created)
    layers = result.layers
    if [x.diff_id for x in layers[: len(root.layers)]] != [x.diff_id for x in root.layers]:
        raise BuildError(f"internal: the layers of {pp.platform} do not start with the base image's")
    layers = tuple(_oci_layer(x) for x in layers)
    config = pp.image
    cc = config.config
    if labels:
        cc = replace(cc, labels={**cc.labels, **labels})
    config = replace(config, created=created, config=cc, diff_ids=tuple(x.diff_id for x in layers),
                     history=tuple(history))
    return config, layers


@dataclass(frozen=True, slots=True)
class Annotations:
    """``--annotation``: ``KEY=V`` and ``manifest:KEY=V`` go on each image manifest, ``index:KEY=V`` on the
    index, ``manifest-descriptor:KEY=V`` on the index's entries; ``TYPE[PLATFORM]:`` narrows to a platform."""

    manifest: tuple[tuple[str, str, str], ...] = ()  # (platform or "", key, value)
    index: tuple[tuple[str, str], ...] = ()
    descriptor: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def parse(cls, items: Sequence[str]) -> Annotations:
        from polyarch.errors import UsageError
        from polyarch.platform import parse as parse_platform

        manifest, index, descriptor = [], [], []
        for item in items:
            head, eq, value = item.partition("=")
            kind, colon, key = head.partition(":")
            if not colon:
                kind, key = "manifest", head
            where = ""
            if kind.endswith("]") and "[" in kind:
                kind, _, plat = kind[:-1].partition("[")
                where = str(parse_platform(plat))
            if not eq or not key:
                raise UsageError(f"invalid --annotation {item!r}: expected [TYPE:]KEY=VALUE")
            if kind == "manifest":
                manifest.append((where, key, value))
            elif kind == "index" and not where:
                index.append((key, value))
            elif kind == "manifest-descriptor":
                descriptor.append((where, key, value))
            else:
                raise UsageError(f"unsupported --annotation type {kind!r}",
                                 hint="use manifest:, index: or manifest-descriptor:")
        return cls(tuple(manifest), tuple(index), tuple(descriptor))

    @staticmethod
    def pick(items: Sequence[tuple[str, str, str]], platform: Platform) -> dict[str, str]:
        return {k: v for where, k, v in items if not where or where == str(platform)}


def assemble(images: ImageStore, plans: Sequence[PlatformPlan], states: Mapping[str, State], *,
             epoch: int | None = None, labels: Mapping[str, str] | None = None, oci: bool = True,
             annotations: Annotations | None = None) -> BuildResult:
    """Write config, manifest per platform and the index into the store (blobs only, no names)."""
    created = created_time(epoch)
    notes = annotations or Annotations()
    out: list[PlatformImage] = []
    for pp in plans:
        config, layers = image_config(pp, states, created=created, labels=labels)
        config_desc = images.put_config(config, oci=oci)
        desc = images.put_image(config, [x.descriptor for x in layers], oci=oci,
                                annotations=notes.pick(notes.manifest, config.platform) or None)
        extra = notes.pick(notes.descriptor, config.platform)
        if extra:
            desc = desc.with_annotations({**desc.annotations, **extra})
        out.append(PlatformImage(config.platform, desc, config, config_desc, layers,
                                 len(states[pp.root.digest].layers)))
    index = images.put_index([p.descriptor for p in out], oci=oci, annotations=dict(notes.index) or None)
    return BuildResult(index, tuple(out))


