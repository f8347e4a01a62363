"""A base layer is read once: ``polyarch pull`` records each layer's path index in the build cache while it hashes
the blob, and a WORKDIR + COPY build on that base never reads the base layers again (proved by replacing them
with garbage after the pull: the build still succeeds, with the same layers as a build on an intact store)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from polyarch.content.images import ImageStore
from polyarch.content.pathindex import decode
from polyarch.content.store import ContentStore
from polyarch.solver.cache import BuildCache
from tests.conftest import BASE_NAME, run_cli
from tests.registry.refregistry import start_registry

from .conftest import build, images_of, write_tree

DOCKERFILE = """FROM --platform=$TARGETPLATFORM {base}
WORKDIR /srv/w1
COPY a.txt ./
COPY sub/ /srv/w1/sub/
USER nobody
"""


@pytest.mark.registry
def test_pull_records_index_and_build_reads_no_base_layer(base_root: Path, tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed")
    registry = start_registry(tmp_path / "registry")
    try:
        base = f"{registry.host}/base/busybox:1"
        run_cli("push", BASE_NAME, base, root=base_root)
        ctx = write_tree(tmp_path / "ctx", {"a.txt": "a\n", "sub/b.txt": "b\n",
                                           "Dockerfile": DOCKERFILE.format(base=base)})
        platforms = "linux/amd64,linux/arm64"

        intact = tmp_path / "intact"
        run_cli("pull", "--all-platforms", base, root=intact)
        build(intact, ctx, "--platform", platforms, "-t", "app:1", "--load")

        fresh = tmp_path / "fresh"
        run_cli("pull", "--all-platforms", base, root=fresh)
        store = ContentStore(fresh)
        images = ImageStore(store)
        layers = {str(layer.digest) for img in images.images(images.lookup(base)) for layer in img.manifest.layers}
        assert layers
        with BuildCache.in_store(fresh) as cache:
            recorded = set(cache.layer_index_digests())
            assert layers <= recorded  # made at pull time
            for digest in layers:
                data = cache.layer_index(digest)
                assert data is not None and decode(data) is not None
        for img in images.images(images.lookup(base)):
            for layer in img.manifest.layers:
                path = store.blob_path(layer.digest)
                path.chmod(0o644)
                # same size (the assembly checks that), not a gzip stream: a build that read it would fail
                path.write_bytes(b"\x1f\x8b" + os.urandom(layer.size - 2))
        build(fresh, ctx, "--platform", platforms, "-t", "app:1", "--load")
        got = [[str(d.digest) for d in img.manifest.layers] for img in images_of(fresh, "app:1")]
        want = [[str(d.digest) for d in img.manifest.layers] for img in images_of(intact, "app:1")]
        assert got == want and len(got) == 2
    finally:
        registry.stop()


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_load_records_index(base_root: Path, tmp_path: Path, fmt: str) -> None:
    """``polyarch load`` makes each layer's index in the pass that hashes it, as a pull does."""
    archive = tmp_path / "base.tar"
    run_cli("save", BASE_NAME, "-o", str(archive), "--format", fmt, "--platform", "linux/amd64", root=base_root)
    fresh = tmp_path / "fresh"
    run_cli("load", "-i", str(archive), root=fresh)
    images = ImageStore(ContentStore(fresh))
    layers = {str(layer.digest) for img in images.images(images.lookup(BASE_NAME)) for layer in img.manifest.layers}
    assert layers
    with BuildCache.in_store(fresh) as cache:
        for digest in layers:
            data = cache.layer_index(digest)
            assert data is not None
            index = decode(data)
            assert index is not None and any(path == "bin" for path, _i, _o in index.entries)
