"""Make test images in a store, in-process: layers from (path, kind, content) entries, images, indexes."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from polyarch import platform as plat
from polyarch.content.compression import LayerResult, LayerWriter
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.oci.spec import Descriptor, ImageConfig

MTIME = 1_700_000_000
# An entry: (path, kind, payload): kind "file" (bytes), "dir", "sym" (target), "link" (hardlink target),
# "fifo"; whiteouts are files named .wh.NAME / .wh..wh..opq.
Entry = tuple[str, str, bytes | str]


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid = MTIME, 0, 0
            info.mode = 0o755
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind in ("sym", "link"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = str(payload)
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            else:
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_layer(store: ContentStore, data: bytes, compression: str = "gzip") -> LayerResult:
    with LayerWriter(store, compression) as w:
        w.write(data)
        return w.close_layer()


def put_image(images: ImageStore, platform: str, layers: Sequence[Sequence[Entry] | bytes], *,
              config_platform: str | None = None, compression: str = "gzip") -> Descriptor:
    """An image of ``layers`` (entry lists or raw tar bytes); its config says ``config_platform`` (default
    ``platform``) while the returned descriptor says ``platform``."""
    results = [write_layer(images.store, lay if isinstance(lay, bytes) else tar_bytes(lay), compression)
               for lay in layers]
    cp = plat.parse(config_platform or platform)
    config = ImageConfig(architecture=cp.architecture, os=cp.os, variant=cp.variant,
                         diff_ids=tuple(r.diff_id for r in results))
    desc = images.put_image(config, [r.descriptor for r in results])
    return desc.with_platform(plat.parse(platform))


def put_index(images: ImageStore, name: str, manifests: Sequence[Descriptor]) -> Descriptor:
    desc = images.put_index(manifests)
    images.set_name(name, desc)
    return desc


def busybox_from_tar(tar_path: Path) -> bytes:
    with tarfile.open(tar_path) as tar:
        member = tar.extractfile("bin/busybox")
        assert member is not None
        return member.read()
