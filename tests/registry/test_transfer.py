"""Push and pull against Debian's docker-registry, with skopeo as the independent client."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.conftest import run_cli

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest, hash_file
from polyarch.oci import reference
from polyarch.registry.client import RegistryClient
from polyarch.registry.credentials import CredentialStore
from polyarch.registry.endpoints import ClientOptions
from polyarch.sources.transfer import PULLED_FROM, pull_image, push_image

pytestmark = [pytest.mark.registry]


def skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=True, timeout=120).stdout


def store_blobs(root: Path) -> set[str]:
    return {str(d) for d, _ in ContentStore(root, create=False).list()}


def tree_digests(root: Path, name: str) -> set[str]:
    images = ImageStore(ContentStore(root, create=False))
    return {str(d.digest) for d in images.walk(images.lookup(name))}


def client(tmp_path: Path, **kw: object) -> RegistryClient:
    opts = ClientOptions(backoff=0.01, max_backoff=0.05, **kw)  # type: ignore[arg-type]
    return RegistryClient(opts, CredentialStore(tmp_path / "no-docker-config.json"))


@pytest.mark.skopeo
def test_push_three_platforms_skopeo_agrees(ref_registry, make_image, tmp_path: Path) -> None:
    root, name = make_image("gen/three:1")
    images = ImageStore(ContentStore(root))
    local = images.lookup(name)
    dest = f"{ref_registry.host}/gen/three:1"
    out = run_cli("push", name, dest, root=root).stdout
    assert str(local.digest) in out
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{dest}").encode()
    assert str(Digest.of(raw)) == str(local.digest)
    assert raw == ContentStore(root).read(local.digest)
    layout = tmp_path / "back"
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", f"docker://{dest}", f"oci:{layout}:back")
    back = store_blobs(layout)
    assert tree_digests(root, name) <= back
    for d in back:  # every blob skopeo fetched re-hashes to its name
        assert str(hash_file(layout / "blobs" / "sha256" / d.split(":")[1])[0]) == d


@pytest.mark.skopeo
def test_pull_one_platform_of_skopeo_push(ref_registry, make_image, tmp_path: Path) -> None:
    root, name = make_image("gen/sk:1", seed=1)
    dest = f"{ref_registry.host}/gen/sk:1"
    skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", f"oci:{root}:{name}", f"docker://{dest}")
    pulled = tmp_path / "pulled"
    run_cli("pull", "--platform", "linux/arm64", dest, root=pulled)
    src_images = ImageStore(ContentStore(root))
    arm = src_images.images(src_images.lookup(name), [reference_platform("linux/arm64")])[0]
    expected = {str(arm.descriptor.digest), str(arm.manifest.config.digest),
                *(str(layer.digest) for layer in arm.manifest.layers)}
    got = store_blobs(pulled)
    images = ImageStore(ContentStore(pulled))
    named = images.resolve(dest)
    assert named.document.annotations[PULLED_FROM] == str(src_images.lookup(name).digest)
    assert [str(m.platform) for m in named.document.manifests] == ["linux/arm64"]
    assert got == expected | {str(named.descriptor.digest)}
    listing = json.loads(run_cli("images", "--format", "json", root=pulled).stdout)
    assert listing[0]["platforms"] == ["linux/arm64"]
    # the other platforms converge to the original index, digest unchanged
    run_cli("pull", "--platform", "linux/amd64,linux/arm/v7", dest, root=pulled)
    assert images.lookup(dest).digest == src_images.lookup(name).digest


def reference_platform(text: str):
    from polyarch import platform as plat

    return plat.parse(text)


def test_push_skips_existing_and_mounts_across_repos(ref_registry, make_image, tmp_path: Path) -> None:
    root, name = make_image("gen/mount:1", seed=2)
    images = ImageStore(ContentStore(root))
    desc = images.lookup(name)
    with client(tmp_path) as c:
        first = push_image(images, desc, reference.parse(f"{ref_registry.host}/gen/mount-a:1"), client=c)
        assert first.uploaded == 7 and first.mounted == 0
        second = push_image(images, desc, reference.parse(f"{ref_registry.host}/gen/mount-b:1"), client=c)
        assert second.mounted == 7 and second.uploaded == 0
        again = push_image(images, desc, reference.parse(f"{ref_registry.host}/gen/mount-a:2"), client=c)
        assert again.uploaded == 0 and again.mounted == 0  # manifests already there: nothing re-sent
        for repo in ("mount-a:1", "mount-b:1", "mount-a:2"):
            got = c.get_manifest(reference.parse(f"{ref_registry.host}/gen/{repo}"))
            assert got.digest == desc.digest


def test_chunked_upload_and_resumable_pull_roundtrip(ref_registry, make_image, tmp_path: Path) -> None:
    root, name = make_image("gen/chunk:1", platforms=("linux/amd64",), layer_sizes=(300_000, 1_500_000), seed=3)
    images = ImageStore(ContentStore(root))
    desc = images.lookup(name)
    ref = reference.parse(f"{ref_registry.host}/gen/chunk:1")
    with client(tmp_path, chunk_threshold=100_000, chunk_size=1 << 20) as c:
        result = push_image(images, desc, ref, client=c)
        assert result.uploaded == 3
        out = ImageStore(ContentStore(tmp_path / "out"))
        pulled = pull_image(c, ref, out, platforms=[reference_platform("linux/amd64")])
    assert pulled.descriptor.digest == desc.digest
    assert store_blobs(tmp_path / "out") == tree_digests(root, name)


def test_pull_missing_platform_and_unknown_manifest(ref_registry, make_image, tmp_path: Path) -> None:
    root, name = make_image("gen/few:1", platforms=("linux/amd64", "linux/arm64"), seed=4)
    run_cli("push", name, f"{ref_registry.host}/gen/few:1", root=root)
    proc = run_cli("pull", "--platform", "linux/s390x", f"{ref_registry.host}/gen/few:1",
                   root=tmp_path / "s", check=False)
    assert proc.returncode == 1
    assert "has no image for linux/s390x (it has: linux/amd64, linux/arm64)" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("pull", f"{ref_registry.host}/gen/nothing:1", root=tmp_path / "s", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: manifest {ref_registry.host}/gen/nothing:1: manifest unknown")
    assert json.loads(run_cli("images", "--format", "json", root=tmp_path / "s").stdout) == []


def test_unreachable_registry_is_one_line(tmp_path: Path) -> None:
    from tests.registry.refregistry import free_port

    port = free_port()
    proc = run_cli("pull", f"127.0.0.1:{port}/x/y:1", root=tmp_path / "s", check=False,
                   env={"POLYARCH_REGISTRY_RETRIES": "1", "POLYARCH_REGISTRY_BACKOFF": "0.01"})
    assert proc.returncode == 1
    retry, error, *_ = proc.stderr.splitlines()  # the one retry is shown, then the one error
    assert retry.startswith(f"127.0.0.1:{port}: retrying in ") and "(1/1): ConnectError" in retry
    assert error.startswith(f"error: cannot reach registry 127.0.0.1:{port} after 2 attempts")
    assert "Traceback" not in proc.stderr


def test_busybox_base_roundtrip_all_platforms(ref_registry, store_root: Path, tmp_path: Path) -> None:
    """The project's 3-platform busybox (gzip layers) goes up and comes back with every digest unchanged."""
    from tests.conftest import BASE_NAME

    dest = f"{ref_registry.host}/base/busybox:1"
    run_cli("push", BASE_NAME, dest, root=store_root)
    back = tmp_path / "back"
    run_cli("pull", "--all-platforms", dest, root=back)
    images = ImageStore(ContentStore(back))
    assert images.lookup(dest).digest == ImageStore(ContentStore(store_root)).lookup(BASE_NAME).digest
    assert tree_digests(back, dest) == tree_digests(store_root, BASE_NAME)
    listing = json.loads(run_cli("images", "--format", "json", root=back).stdout)
    assert listing[0]["platforms"] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
