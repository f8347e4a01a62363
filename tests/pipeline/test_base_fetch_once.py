"""A cold build on a base it must pull asks the registry for each manifest and config once: planning reads the
configs (``transfer.remote_config``) and the pull that follows takes them from what planning read
(``transfer.Documents``), instead of fetching them again (which also printed a second ``pulled`` line each).
Counted on a fault-injection proxy (no rule: it only forwards and logs) in front of Debian's docker-registry."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from tests.conftest import BASE_NAME, run_cli
from tests.registry.faultproxy import FaultProxy
from tests.registry.refregistry import start_registry

from .conftest import build, images_of, write_tree

DOCKERFILE = """FROM --platform=$TARGETPLATFORM {base}
WORKDIR /srv/w1
COPY a.txt ./
"""


@pytest.mark.registry
def test_cold_build_fetches_each_document_once(base_root: Path, tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed")
    registry = start_registry(tmp_path / "registry")
    proxy = FaultProxy(registry.host)
    proxy.start()
    try:
        run_cli("push", BASE_NAME, f"{registry.host}/base/busybox:1", root=base_root)
        base = f"{proxy.host}/base/busybox:1"
        ctx = write_tree(tmp_path / "ctx", {"a.txt": "a\n", "Dockerfile": DOCKERFILE.format(base=base)})
        root = tmp_path / "store"
        out = build(root, ctx, "--platform", "linux/amd64,linux/arm64", "-t", "app:1", "--load")
        assert len(images_of(root, "app:1")) == 2

        gets = Counter(path for method, path, status in proxy.log if method == "GET" and status == 200)
        images = ImageStore(ContentStore(root))
        pulled = images.images(images.lookup(base))
        assert len(pulled) == 2
        configs = [str(img.manifest.config.digest) for img in pulled]
        for digest in configs:
            assert gets[f"/v2/base/busybox/blobs/{digest}"] == 1, gets
            assert len(re.findall(rf"pulled {digest[7:19]}", out.stderr)) <= 1
        for img in pulled:  # each platform's manifest, by digest, once
            assert gets[f"/v2/base/busybox/manifests/{img.descriptor.digest}"] == 1, gets
        manifest_gets = sum(n for path, n in gets.items() if "/manifests/" in path)
        assert manifest_gets == 3, gets  # the index by tag, then the two platforms' manifests
        for img in pulled:
            for layer in img.manifest.layers:
                assert gets[f"/v2/base/busybox/blobs/{layer.digest}"] == 1, gets
    finally:
        proxy.stop()
        registry.stop()
