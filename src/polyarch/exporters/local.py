"""``type=local`` and ``type=tar``: each platform's merged root filesystem as a directory tree or a tar.

With several platforms there is one folder per platform (``linux_arm64/``); one platform, or
``platform-split=false``, gives the root filesystem itself (all platforms one over the other). A tar is written
beside its destination and renamed into place; ``dest=-`` streams it to stdout.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from polyarch.content.images import ImageStore
from polyarch.errors import UsageError

from .exporter import ExportContext, ExportReport
from .spec import OutputSpec

if TYPE_CHECKING:
    from polyarch.exporters.assemble import BuildResult, PlatformImage

__all__ = ["LocalExporter", "TarExporter", "platform_dirname", "write_local", "write_tar"]


def platform_dirname(platform: object) -> str:
    """``linux/arm/v7`` → ``linux_arm_v7``."""
    return str(platform).replace("/", "_")


def _rootfs(images: ImageStore, img: PlatformImage, dest: Path) -> None:
    from polyarch.worker.apply import apply_layer

    dest.mkdir(parents=True, exist_ok=True)
    for layer in img.layers:
        with images.store.open(layer.descriptor.digest) as f:
            apply_layer(f, dest, expected_diff_id=layer.diff_id)


def write_local(images: ImageStore, result: BuildResult, dest: Path, *, split: bool = True) -> None:
    """Each platform's merged rootfs under ``dest/linux_arm64/`` (``dest`` itself for one platform, or for all
    of them, one over the other, with ``split=False``)."""
    if len(result.images) == 1 or not split:
        for img in result.images:
            _rootfs(images, img, dest)
        return
    for img in result.images:
        _rootfs(images, img, dest / platform_dirname(img.platform))


def write_tar(images: ImageStore, result: BuildResult, dest: str, *, split: bool = True) -> None:
    """``write_local``'s tree as one tar at ``dest`` (``-``: stdout)."""
    from polyarch.worker.diff import write_tree

    with tempfile.TemporaryDirectory(prefix="polyarch-tar-") as tmp:
        write_local(images, result, Path(tmp) / "root", split=split)
        if dest == "-":
            write_tree(Path(tmp) / "root", sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        part = Path(dest).with_name(Path(dest).name + ".partial")
        with open(part, "wb") as f:
            write_tree(Path(tmp) / "root", f)
        os.replace(part, dest)


class LocalExporter:
    type: ClassVar[str] = "local"

    def export(self, result: BuildResult, spec: OutputSpec, ctx: ExportContext) -> ExportReport:
        dest = Path(spec.dest)
        if dest.exists() and not dest.is_dir():
            raise UsageError(f"type=local dest {dest} exists and is not a directory")
        write_local(ctx.images, result, dest, split=spec.flag("platform-split", True))
        return ExportReport()


class TarExporter:
    type: ClassVar[str] = "tar"

    def export(self, result: BuildResult, spec: OutputSpec, ctx: ExportContext) -> ExportReport:
        write_tar(ctx.images, result, spec.dest, split=spec.flag("platform-split", True))
        return ExportReport()
