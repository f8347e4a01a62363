"""Tiny test images for audit: one file per platform, in-process."""

from __future__ import annotations

from polyarch.content.images import ImageStore
from polyarch.oci.spec import Descriptor
from tests.verify.build import put_image, put_index

__all__ = ["put_index", "tiny"]


def tiny(images: ImageStore, platform: str) -> Descriptor:
    return put_image(images, platform, [[("etc/os-release", "file", f"ID={platform}\n".encode())]])
