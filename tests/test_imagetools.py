"""imagetools inspect/create/copy through the CLI against docker-registry; skopeo reads the results."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from tests.conftest import run_cli
from tests.registry.imagegen import make_test_image
from tests.registry.refregistry import RefRegistry, start_registry

pytestmark = [pytest.mark.registry]


@pytest.fixture(scope="module")
def ref_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefRegistry]:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    reg = start_registry(tmp_path_factory.mktemp("imagetools-registry"))
    yield reg
    reg.stop()


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., tuple[Path, str]]:
    counter = iter(range(1000))

    def make(name: str, *, platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64", "linux/arm/v7"),
             seed: int = 0) -> tuple[Path, str]:
        root = tmp_path / f"store-{next(counter)}"
        make_test_image(root, name, platforms=platforms, layer_sizes=(4096, 70000), seed=seed)
        return root, name

    return make


def skopeo_raw(ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          capture_output=True, check=True, timeout=60).stdout


def push_single(make_image, registry: str, repo: str, platform: str, seed: int) -> str:
    """Push a single-platform image by digest (no tag), as a CI matrix runner with push-by-digest does."""
    root, name = make_image(f"gen/{platform.replace('/', '-')}:1", platforms=(platform,), seed=seed)
    digest = ImageStore(ContentStore(root)).lookup(name).digest
    out = run_cli("push", "-q", name, f"{registry}/{repo}@{digest}", root=root).stdout.strip()
    assert out == str(digest)
    return out


@pytest.mark.skopeo
def test_ci_merge_pattern_two_digests_into_one_index(ref_registry, make_image, tmp_path: Path) -> None:
    reg = ref_registry.host
    amd = push_single(make_image, reg, "ci/app", "linux/amd64", 20)
    arm = push_single(make_image, reg, "ci/app", "linux/arm64", 21)
    out = run_cli("imagetools", "create", "-t", f"{reg}/ci/app:1.0", "-t", f"{reg}/ci/app:latest",
                  f"{reg}/ci/app@{amd}", f"{reg}/ci/app@{arm}", "--annotation", "index:org.opencontainers.image.version=1.0",
                  "--annotation", "manifest-descriptor[linux/arm64]:com.example.note=arm", root=tmp_path / "s").stdout
    raw = skopeo_raw(f"{reg}/ci/app:1.0")
    assert raw == skopeo_raw(f"{reg}/ci/app:latest")
    assert str(Digest.of(raw)) in out
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["digest"] for m in index["manifests"]] == [amd, arm]
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
    assert index["annotations"] == {"org.opencontainers.image.version": "1.0"}
    assert index["manifests"][1]["annotations"] == {"com.example.note": "arm"}
    assert "annotations" not in index["manifests"][0]
    # human view, raw and json
    view = run_cli("imagetools", "inspect", f"{reg}/ci/app:1.0", root=tmp_path / "s").stdout
    assert f"Name:      {reg}/ci/app:1.0" in view and f"Digest:    {Digest.of(raw)}" in view
    assert f"  Name:        {reg}/ci/app@{arm}" in view and "  Platform:    linux/arm64" in view
    assert "    com.example.note: arm" in view
    assert run_cli("imagetools", "inspect", "--raw", f"{reg}/ci/app:1.0").stdout.encode() == raw + b"\n"
    doc = json.loads(run_cli("imagetools", "inspect", "--format", "json", f"{reg}/ci/app:1.0").stdout)
    assert doc["digest"] == str(Digest.of(raw)) and len(doc["manifest"]["manifests"]) == 2
    # --append adds a third platform to the existing index
    v7 = push_single(make_image, reg, "ci/app", "linux/arm/v7", 22)
    run_cli("imagetools", "create", "--append", "-t", f"{reg}/ci/app:1.0", f"{reg}/ci/app@{v7}")
    merged = json.loads(skopeo_raw(f"{reg}/ci/app:1.0"))
    assert [m["digest"] for m in merged["manifests"]] == [amd, arm, v7]
    assert merged["annotations"] == {"org.opencontainers.image.version": "1.0"}


def test_create_across_repositories_mounts_and_dry_run(ref_registry, make_image, tmp_path: Path) -> None:
    reg = ref_registry.host
    amd = push_single(make_image, reg, "src/one", "linux/amd64", 30)
    arm = push_single(make_image, reg, "src/two", "linux/arm64", 31)
    dry = run_cli("imagetools", "create", "--dry-run", "-t", f"{reg}/dst/merged:1", f"{reg}/src/one@{amd}",
                  f"{reg}/src/two@{arm}").stdout
    assert [m["digest"] for m in json.loads(dry)["manifests"]] == [amd, arm]
    missing = run_cli("imagetools", "inspect", f"{reg}/dst/merged:1", check=False)
    assert missing.returncode == 1 and "manifest unknown" in missing.stderr  # dry run pushed nothing
    run_cli("imagetools", "create", "-t", f"{reg}/dst/merged:1", f"{reg}/src/one@{amd}", f"{reg}/src/two@{arm}")
    pulled = tmp_path / "p"
    run_cli("pull", "--all-platforms", f"{reg}/dst/merged:1", root=pulled)
    images = ImageStore(ContentStore(pulled))
    assert [str(i.platform) for i in images.images(images.lookup(f"{reg}/dst/merged:1"))] == \
        ["linux/amd64", "linux/arm64"]


def test_copy_all_and_one_platform_and_local_sources(ref_registry, make_image, tmp_path: Path) -> None:
    reg = ref_registry.host
    root, name = make_image("gen/copy:1", seed=40)
    images = ImageStore(ContentStore(root))
    digest = images.lookup(name).digest
    run_cli("imagetools", "copy", f"local:{name}", f"{reg}/cp/local:1", root=root)
    assert Digest.of(skopeo_raw(f"{reg}/cp/local:1")) == digest
    run_cli("imagetools", "copy", f"{reg}/cp/local:1", f"{reg}/cp/all:1")
    assert Digest.of(skopeo_raw(f"{reg}/cp/all:1")) == digest
    run_cli("imagetools", "copy", "--platform", "linux/arm64", f"{reg}/cp/local:1", f"{reg}/cp/arm:1")
    arm = json.loads(skopeo_raw(f"{reg}/cp/arm:1"))
    assert arm["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    layout = f"oci-layout://{root}:{name}"
    view = run_cli("imagetools", "inspect", layout).stdout
    assert f"Digest:    {digest}" in view and "linux/arm/v7" in view


@pytest.mark.parametrize(("args", "message"), [
    (["create", "-t", "127.0.0.1:1/x:1", "--annotation", "manifest:a=b", "127.0.0.1:1/x@sha256:" + "a" * 64],
     "manifest annotations cannot be set by imagetools create"),
    (["create", "--annotation", "nonsense", "127.0.0.1:1/x:1", "--dry-run"], "invalid annotation 'nonsense'"),
    (["create", "127.0.0.1:1/x:1"], "needs -t REF"),
    (["inspect", "127.0.0.1:1/UPPER:1"], "repository name must be lowercase"),
    (["inspect", "oci-layout:///nonexistent/dir:tag"], "not an OCI image layout"),
])
def test_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    proc = run_cli("imagetools", *args, root=tmp_path / "s", check=False)
    assert proc.returncode in (1, 2)
    assert message in proc.stderr.splitlines()[0]
    assert "Traceback" not in proc.stderr
