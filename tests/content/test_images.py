"""ImageStore picks an image for use only when its config agrees with the platform it is listed under (the same
check as pull: RELIABILITY T10), and reads configs with the ``MAX_CONFIG`` cap."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from polyarch import platform as plat
from polyarch.content.images import MAX_CONFIG, ImageStore, check_platform
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import InvalidManifest, LimitExceeded
from polyarch.oci.spec import Descriptor, ImageConfig, Manifest, MediaType


def _image(images: ImageStore, arch: str, variant: str = "") -> Descriptor:
    """A layerless image whose config says linux/``arch``; returns its manifest descriptor (no platform)."""
    desc = images.put_image(ImageConfig(architecture=arch, os="linux", variant=variant), [])
    return desc.with_platform(None)


def _index(images: ImageStore, child: Descriptor, listed: str) -> Descriptor:
    return images.put_index([child.with_platform(plat.parse(listed))])


@pytest.mark.parametrize("listed", ["linux/amd64", "windows/arm64", "linux/arm/v7"])
def test_index_child_contradicting_its_config_is_refused(tmp_path: Path, listed: str) -> None:
    images = ImageStore(ContentStore(tmp_path))
    index = _index(images, _image(images, "arm64"), listed)
    with pytest.raises(InvalidManifest, match=r"platform mismatch: .* listed as .* config says linux/arm64"):
        images.images(index, [plat.parse(listed)])
    with pytest.raises(InvalidManifest, match="platform mismatch"):
        images.images(index)


def test_named_manifest_contradicting_its_config_is_refused(tmp_path: Path) -> None:
    images = ImageStore(ContentStore(tmp_path))
    images.set_name("evil:1", _image(images, "arm64").with_platform(plat.parse("linux/amd64")))
    with pytest.raises(InvalidManifest, match="platform mismatch"):
        images.images(images.lookup("evil:1"), [plat.parse("linux/amd64")])


@pytest.mark.parametrize(("listed", "arch", "variant"), [
    ("linux/arm64", "arm64", ""), ("linux/arm64/v8", "arm64", ""), ("linux/arm64", "aarch64", "v8"),
    ("linux/arm/v7", "arm", "v7"), ("linux/arm/v7", "arm", ""), ("linux/amd64", "x86_64", ""),
])
def test_agreeing_platforms_are_accepted(tmp_path: Path, listed: str, arch: str, variant: str) -> None:
    images = ImageStore(ContentStore(tmp_path))
    index = _index(images, _image(images, arch, variant), listed)
    [img] = images.images(index, [plat.parse(listed)])
    assert img.config.architecture == arch


def test_check_platform_without_a_listed_platform_accepts_any_config() -> None:
    desc = Descriptor(MediaType.OCI_MANIFEST, Digest.of(b"x"), 1)
    check_platform(desc, ImageConfig(architecture="riscv64", os="linux"))


def test_config_over_the_cap_is_not_read(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    images = ImageStore(store)
    big = b'{"architecture":"amd64","os":"linux","pad":"' + b"a" * MAX_CONFIG + b'"}'
    digest, size = store.ingest(io.BytesIO(big))
    manifest = images.put_document(Manifest(Descriptor(MediaType.OCI_CONFIG, digest, size), (),
                                            MediaType.OCI_MANIFEST))
    with pytest.raises(LimitExceeded):
        images.image(manifest)
    lying = Descriptor(MediaType.OCI_CONFIG, digest, 100)  # a descriptor that understates the size
    with pytest.raises(LimitExceeded):
        images.read_config(lying)
