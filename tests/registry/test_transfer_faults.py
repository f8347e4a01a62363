"""Pushes and pulls through a fault-injecting proxy: 503/429 answers, connection resets mid-body, stalls.

Each test is bounded: small backoff, short read timeout, a fixed number of injected faults.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import hash_file
from polyarch.errors import RegistryError
from polyarch.oci import reference
from polyarch.platform import parse as parse_platform
from polyarch.registry.client import RegistryClient
from polyarch.registry.credentials import CredentialStore
from polyarch.registry.endpoints import ClientOptions
from polyarch.sources.transfer import pull_image, push_image

pytestmark = [pytest.mark.registry]


def client(tmp_path: Path, **kw: object) -> RegistryClient:
    opts = ClientOptions(**{"backoff": 0.01, "max_backoff": 0.05, "timeout": 1.0, "retries": 4, **kw})  # type: ignore[arg-type]
    return RegistryClient(opts, CredentialStore(tmp_path / "none.json"))


def assert_store_sound(root: Path) -> None:
    """Every blob re-hashes to its name and no temp file is left in ingest/."""
    store = ContentStore(root, create=False)
    for digest, _ in store.list():
        assert hash_file(store.blob_path(digest))[0] == digest
    assert list((root / "ingest").iterdir()) == []


def test_pull_through_503_reset_and_stall(fault_proxy, ref_registry, make_image, tmp_path: Path) -> None:
    root, name = make_image("gen/faulty:1", platforms=("linux/amd64", "linux/arm64"),
                            layer_sizes=(200_000, 900_000), seed=10)
    images = ImageStore(ContentStore(root))
    desc = images.lookup(name)
    with client(tmp_path) as c:
        push_image(images, desc, reference.parse(f"{ref_registry.host}/gen/faulty:1"), client=c)
    rules = [fault_proxy.add("GET", r"/manifests/", "status", status=503, times=2),
             fault_proxy.add("GET", r"/blobs/sha256:", "status", status=429, retry_after="0", times=1),
             fault_proxy.add("GET", r"/blobs/sha256:", "reset", after=300_000, times=2),
             fault_proxy.add("GET", r"/blobs/sha256:", "stall", after=100_000, seconds=2.5, times=1)]
    out = ImageStore(ContentStore(tmp_path / "out"))
    start = time.monotonic()
    with client(tmp_path, parallel=2) as c:
        result = pull_image(c, reference.parse(f"{fault_proxy.host}/gen/faulty:1"), out, all_platforms=True)
    assert time.monotonic() - start < 30
    assert [r.fired for r in rules] == [r.times for r in rules]
    assert result.descriptor.digest == desc.digest
    ranged = [path for method, path, status in fault_proxy.log if status == 206]
    assert ranged, "a reset blob was resumed with Range"
    assert_store_sound(tmp_path / "out")
    got = {str(d) for d, _ in ContentStore(tmp_path / "out").list()}
    assert got == {str(d.digest) for d in images.walk(desc)}


def test_push_through_faults_monolithic_and_chunked(fault_proxy, make_image, tmp_path: Path) -> None:
    root, name = make_image("gen/pushfault:1", platforms=("linux/amd64",), layer_sizes=(50_000, 2_500_000),
                            seed=11)
    images = ImageStore(ContentStore(root))
    desc = images.lookup(name)
    rules = [fault_proxy.add("POST", r"/blobs/uploads/", "status", status=503, times=2),
             fault_proxy.add("PATCH", r"/blobs/uploads/", "status", status=502, times=1),
             fault_proxy.add("PUT", r"/blobs/uploads/.*digest=", "status", status=500, times=1),
             fault_proxy.add("PUT", r"/manifests/", "status", status=503, times=1),
             fault_proxy.add("PATCH", r"/blobs/uploads/", "reset", after=0, times=1)]
    ref = reference.parse(f"{fault_proxy.host}/gen/pushfault:1")
    with client(tmp_path, chunk_threshold=1 << 20, chunk_size=1 << 20) as c:
        result = push_image(images, desc, ref, client=c)
        assert result.descriptor.digest == desc.digest
        assert [r.fired for r in rules] == [r.times for r in rules]
        out = ImageStore(ContentStore(tmp_path / "back"))
        back = pull_image(c, ref, out, platforms=[parse_platform("linux/amd64")])
    assert back.descriptor.digest == desc.digest
    assert_store_sound(tmp_path / "back")
    patches = [p for m, p, s in fault_proxy.log if m == "PATCH" and s == 202]
    assert len(patches) >= 3  # the 2.5 MB layer went in 1 MiB chunks


def test_persistent_failure_is_bounded_and_leaves_nothing(fault_proxy, ref_registry, make_image,
                                                          tmp_path: Path) -> None:
    root, name = make_image("gen/dead:1", platforms=("linux/amd64",), layer_sizes=(10_000, 400_000), seed=12)
    images = ImageStore(ContentStore(root))
    desc = images.lookup(name)
    with client(tmp_path) as c:
        push_image(images, desc, reference.parse(f"{ref_registry.host}/gen/dead:1"), client=c)
    fault_proxy.add("GET", r"/blobs/sha256:", "reset", after=50_000, times=1000)
    out_root = tmp_path / "out"
    out = ImageStore(ContentStore(out_root))
    start = time.monotonic()
    with client(tmp_path, retries=3) as c, pytest.raises(RegistryError) as info:
        pull_image(c, reference.parse(f"{fault_proxy.host}/gen/dead:1"), out, all_platforms=True)
    assert time.monotonic() - start < 20
    assert "after 4 attempts" in info.value.message or "failed" in info.value.message
    assert out.names() == []
    assert_store_sound(out_root)
    layer_digests = {str(d.digest) for d in images.walk(desc)}
    stored = {str(d) for d, _ in ContentStore(out_root).list()}
    # what was stored is complete and verified; the reset blobs are absent, not partial
    assert stored <= layer_digests


def test_persistent_503_push_fails_with_status(fault_proxy, make_image, tmp_path: Path) -> None:
    root, name = make_image("gen/dead503:1", platforms=("linux/amd64",), layer_sizes=(1000, 2000), seed=13)
    images = ImageStore(ContentStore(root))
    fault_proxy.add("*", r"/v2/", "status", status=503, times=1000)
    # a generous timeout: under load a slow answer must not turn the expected 503 into a timeout
    with client(tmp_path, retries=2, timeout=10.0) as c, pytest.raises(RegistryError) as info:
        push_image(images, images.lookup(name), reference.parse(f"{fault_proxy.host}/gen/dead503:1"), client=c)
    assert info.value.status == 503
    assert "\n" not in info.value.message
    assert len(fault_proxy.log) <= 3 * 4  # bounded: retries per request, requests stop at the first failure
