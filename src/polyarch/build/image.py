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
from polyarch.frontend.plan import PlatformPlan
from polyarch.oci.spec import Descriptor, ImageConfig
from polyarch.platform import Platform
from polyarch.solver.state import Layer, State

__all__ = ["BuildResult", "PlatformImage", "assemble", "created_time", "image_config"]


@dataclass(frozen=True, slots=True)
class PlatformImage:
    platform: Platform
    descriptor: Descriptor  # the manifest, with its platform
    config: ImageConfig
    config_descriptor: Descriptor
    layers: tuple[Layer, ...]


@dataclass(frozen=True, slots=True)
class BuildResult:
    index: Descriptor
    images: tuple[PlatformImage, ...]


def created_time(epoch: int | None) -> str:
    when = _dt.datetime.fromtimestamp(epoch, _dt.UTC) if epoch is not None else _dt.datetime.now(_dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


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
    config = pp.image
    cc = config.config
    if labels:
        cc = replace(cc, labels={**cc.labels, **labels})
    config = replace(config, created=created, config=cc, diff_ids=tuple(x.diff_id for x in layers),
                     history=tuple(history))
    return config, layers


def assemble(images: ImageStore, plans: Sequence[PlatformPlan], states: Mapping[str, State], *,
             epoch: int | None = None, labels: Mapping[str, str] | None = None, oci: bool = True) -> BuildResult:
    """Write config, manifest per platform and the index into the store (blobs only, no names)."""
    created = created_time(epoch)
    out: list[PlatformImage] = []
    for pp in plans:
        config, layers = image_config(pp, states, created=created, labels=labels)
        config_desc = images.put_config(config, oci=oci)
        desc = images.put_image(config, [x.descriptor for x in layers], oci=oci)
        out.append(PlatformImage(config.platform, desc, config, config_desc, layers))
    index = images.put_index([p.descriptor for p in out], oci=oci)
    return BuildResult(index, tuple(out))


