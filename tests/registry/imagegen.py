"""Generated test images: real tar layers of random bytes (incompressible), one config and manifest per platform,
an OCI index over them. The first layer is shared by every platform (as a COPY-only layer would be)."""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

from polyarch import platform as plat
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.oci.spec import ContainerConfig, Descriptor, ImageConfig, MediaType

__all__ = ["layer_tar", "make_test_image"]


def layer_tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 1700000000
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_test_image(root: Path, name: str, *, platforms: tuple[str, ...], layer_sizes: tuple[int, ...],
                    seed: int = 0) -> Descriptor:
    store = ContentStore(root)
    images = ImageStore(store)
    rng = random.Random(seed)
    shared = layer_tar("shared.bin", rng.randbytes(layer_sizes[0]))
    manifests = []
    for p_text in platforms:
        p = plat.parse(p_text)
        blobs = [shared] + [layer_tar(f"{p.slug}-{i}.bin", rng.randbytes(size))
                            for i, size in enumerate(layer_sizes[1:])]
        layers = []
        for blob in blobs:
            digest, size = store.write(blob)
            layers.append(Descriptor(MediaType.OCI_LAYER, digest, size))
        config = ImageConfig(architecture=p.architecture, os=p.os, variant=p.variant,
                             config=ContainerConfig(cmd=("/bin/sh",)),
                             diff_ids=tuple(Digest.of(b) for b in blobs))
        manifests.append(images.put_image(config, layers))
    index = images.put_index(manifests) if len(manifests) > 1 else manifests[0]
    images.set_name(name, index)
    return index
