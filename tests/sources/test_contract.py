"""Every kind of ``ContentSource`` (local store, OCI layout, OCI archive, docker archive, registry) opened through
``open_source`` reads the same image as the same bytes, checks what it streams, and names what it lacks."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyarch.content.images import ImageStore
from polyarch.content.loader import load_archive
from polyarch.content.store import ContentStore
from polyarch.errors import DigestMismatch, NotFound
from polyarch.exporters.archive import write_oci_archive, write_oci_dir
from polyarch.oci import reference
from polyarch.oci.spec import Descriptor, Index, Manifest, is_index, is_manifest, parse_document
from polyarch.registry.client import ClientOptions, RegistryClient
from polyarch.registry.credentials import CredentialStore
from polyarch.sources import VERIFY_ORDER, ContentSource, Opened, open_source, parse_location
from polyarch.sources.transfer import push_image

NAME = "gen/contract:1"
KINDS = ["store", "layout", "bare-layout", "oci-archive", pytest.param("registry", marks=pytest.mark.registry)]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageStore, Descriptor]:
    from tests.registry.imagegen import make_test_image

    root = tmp_path_factory.mktemp("contract") / "store"
    make_test_image(root, NAME, platforms=("linux/amd64", "linux/arm64"), layer_sizes=(3000, 50000), seed=7)
    images = ImageStore(ContentStore(root))
    return images, images.lookup(NAME)


@pytest.fixture
def opened(request: pytest.FixtureRequest, image: tuple[ImageStore, Descriptor], tmp_path: Path
           ) -> Iterator[Opened]:
    images, root = image
    kind = request.param
    client: RegistryClient | None = None
    if kind == "store":
        text = f"local:{NAME}"
    elif kind in ("layout", "bare-layout"):
        write_oci_dir(images, root, NAME, tmp_path / "layout")
        text = f"oci-layout://{tmp_path / 'layout'}:{NAME}" if kind == "layout" else f"{tmp_path / 'layout'}:{NAME}"
    elif kind == "oci-archive":
        write_oci_archive(images, root, NAME, tmp_path / "image.tar")
        text = f"oci-archive://{tmp_path / 'image.tar'}:{NAME}"
    else:
        registry = request.getfixturevalue("ref_registry")
        client = RegistryClient(ClientOptions(backoff=0.01, max_backoff=0.05),
                                CredentialStore(tmp_path / "no-docker-config.json"))
        text = f"{registry.host}/contract/app:1"
        push_image(images, root, reference.parse(text), client=client)
    with open_source(parse_location(text), images=images, registry=lambda: client,  # type: ignore[arg-type,return-value]
                     order=VERIFY_ORDER) as found:
        yield found
    if client is not None:
        client.close()


def _tree(source: ContentSource, desc: Descriptor, raw: bytes) -> Iterator[tuple[Descriptor, bytes]]:
    yield desc, raw
    parsed = parse_document(raw, desc.media_type)
    if isinstance(parsed, Index):
        for child in parsed.manifests:
            yield from _tree(source, child, source.read(child))
    else:
        assert isinstance(parsed, Manifest)
        yield parsed.config, source.read(parsed.config)
        for layer in parsed.layers:
            with source.open_blob(layer) as f:
                yield layer, f.read()


@pytest.mark.parametrize("opened", KINDS, indirect=True)
def test_same_image_same_bytes(opened: Opened, image: tuple[ImageStore, Descriptor]) -> None:
    images, root = image
    assert opened.descriptor.digest == root.digest
    assert opened.raw == images.store.read(root.digest)
    seen = 0
    for desc, data in _tree(opened.source, opened.descriptor, opened.raw):
        assert data == images.store.read(desc.digest), desc
        if not (is_index(desc.media_type) or is_manifest(desc.media_type)):  # blobs: configs and layers
            assert opened.source.has_blob(desc)
            with opened.source.blob_file(desc) as path:
                assert path.read_bytes() == data
        seen += 1
    assert seen == 1 + 2 * (1 + 1 + 2)  # index, then per platform: manifest, config, two layers
    assert [str(p) for p in opened.platforms()] == ["linux/amd64", "linux/arm64"]


@pytest.mark.parametrize("opened", KINDS, indirect=True)
def test_absent_blob_is_not_found(opened: Opened) -> None:
    from polyarch.digest import Digest
    from polyarch.errors import RegistryError
    from polyarch.oci.spec import MediaType

    missing = Descriptor(MediaType.OCI_LAYER, Digest.of(b"never stored"), 12)
    assert not opened.source.has_blob(missing)
    with pytest.raises((NotFound, RegistryError)), opened.source.open_blob(missing) as f:
        f.read()


def _corrupt_a_layer(root: Path, images: ImageStore, desc: Descriptor) -> Descriptor:
    first = images.images(desc)[0].manifest.layers[-1]
    path = root / "blobs" / first.digest.algorithm / first.digest.hex
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    return first


def test_layout_and_archive_streams_are_checked(image: tuple[ImageStore, Descriptor], tmp_path: Path) -> None:
    images, root = image
    write_oci_dir(images, root, NAME, tmp_path / "layout")
    layer = _corrupt_a_layer(tmp_path / "layout", images, root)
    with open_source(parse_location(f"oci-layout://{tmp_path / 'layout'}:{NAME}")) as found, \
            pytest.raises(DigestMismatch), found.source.open_blob(layer) as f:
        while f.read(1 << 16):
            pass
    with tarfile.open(tmp_path / "bad.tar", "w") as tar:
        tar.add(tmp_path / "layout", arcname=".")
    with open_source(parse_location(f"oci-archive://{tmp_path / 'bad.tar'}:{NAME}")) as found, \
            pytest.raises(DigestMismatch), found.source.open_blob(layer) as f:
        while f.read(1 << 16):
            pass


def _docker_archive(images: ImageStore, desc: Descriptor, dest: Path, tag: str) -> None:
    """A ``docker save`` style tar (manifest.json only, no index.json) of one platform of ``desc``."""
    img = images.images(desc)[0]
    cfg = img.manifest.config.digest
    entries = [{"Config": f"{cfg.hex}.json", "RepoTags": [tag],
                "Layers": [f"{d.digest.hex}/layer.tar" for d in img.manifest.layers]}]
    files = {f"{cfg.hex}.json": images.store.read(cfg), "manifest.json": json.dumps(entries).encode()}
    for d in img.manifest.layers:
        files[f"{d.digest.hex}/layer.tar"] = images.store.read(d.digest)
    with tarfile.open(dest, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_docker_archive_reads_as_polyarch_load_stores_it(image: tuple[ImageStore, Descriptor],
                                                          tmp_path: Path) -> None:
    images, root = image
    _docker_archive(images, root, tmp_path / "docker.tar", "app:1")
    loaded = ImageStore(ContentStore(tmp_path / "loaded"))
    load_archive(loaded, tmp_path / "docker.tar")
    want = loaded.lookup("app:1")
    for text in (f"docker-archive://{tmp_path / 'docker.tar'}", f"docker-archive://{tmp_path / 'docker.tar'}:app:1"):
        with open_source(parse_location(text)) as found:
            assert found.descriptor.digest == want.digest and found.raw == loaded.store.read(want.digest)
            assert [str(p) for p in found.platforms()] == ["linux/amd64"]
            for desc, data in _tree(found.source, found.descriptor, found.raw):
                assert data == loaded.store.read(desc.digest)
    with pytest.raises(NotFound, match="no image named 'other:1'"):
        open_source(parse_location(f"docker-archive://{tmp_path / 'docker.tar'}:other:1"))


def test_bare_text_falls_back_in_the_command_order(image: tuple[ImageStore, Descriptor], tmp_path: Path) -> None:
    """VERIFY_ORDER: a layout PATH[:TAG], else a local name, else a registry reference; the final error names
    every place asked, and a registry is asked only when the text is a reference."""
    images, root = image
    asked: list[str] = []

    def registry() -> RegistryClient:
        asked.append("registry")
        raise NotFound("no registry in this test")

    with open_source(parse_location(NAME), images=images, registry=registry, order=VERIFY_ORDER) as found:
        assert found.descriptor.digest == root.digest and found.name == NAME
    with pytest.raises(NotFound, match="is not an OCI layout directory"):
        open_source(parse_location("Not A Ref"), images=images, registry=registry, order=VERIFY_ORDER)
    assert asked == []
    with pytest.raises(NotFound, match="no registry in this test"):
        open_source(parse_location("gen/absent:1"), images=images, registry=registry, order=VERIFY_ORDER)
    assert asked == ["registry"]


def test_collaborators_are_the_callers(image: tuple[ImageStore, Descriptor]) -> None:
    """``local:`` without a store is a usage error; a store given as a function is only asked when needed."""
    from polyarch.errors import UsageError

    with pytest.raises(UsageError, match="local: references need the local store"):
        open_source(parse_location(f"local:{NAME}"))
    calls: list[int] = []

    def lazy() -> ImageStore:
        calls.append(1)
        return image[0]

    with pytest.raises(NotFound):
        open_source(parse_location("oci-layout:///nonexistent"), images=lazy)
    assert calls == []

