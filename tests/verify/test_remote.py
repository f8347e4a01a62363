"""verify of images in a registry (Debian's docker-registry on loopback), through the registry client."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from polyarch.content.images import ImageStore

from .build import put_image, put_index

pytestmark = pytest.mark.registry
Run = Callable[..., "subprocess.CompletedProcess[str]"]
PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    from tests.registry.refregistry import start_registry

    reg = start_registry(tmp_path_factory.mktemp("verify-registry"))
    yield reg.host
    reg.stop()


@pytest.fixture
def pushed(registry: str, images: ImageStore, elves: dict[str, bytes], run_cli: Run) -> tuple[str, str]:
    """(broken ref, fixed ref) pushed to the registry: the "forgot GOARCH" app image and its fix."""
    refs = []
    for name, pick in (("broken", lambda p: "linux/amd64"), ("fixed", lambda p: p)):
        descs = [put_image(images, p, [[("usr/bin/app", "file", elves[pick(p)])]]) for p in PLATFORMS]
        put_index(images, f"app:{name}", descs)
        ref = f"{registry}/verify/app:{name}"
        run_cli("push", f"app:{name}", ref, root=images.store.root)
        refs.append(ref)
    return refs[0], refs[1]


def test_verify_registry_image(pushed: tuple[str, str], tmp_path: Path, run_cli: Run) -> None:
    broken, fixed = pushed
    empty = tmp_path / "empty-store"  # nothing local: everything comes from the registry
    proc = run_cli("verify", broken, root=empty, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        "linux/arm64: /usr/bin/app: expected arm64 (aarch64), found x86-64",
        "linux/arm/v7: /usr/bin/app: expected arm/v7 (armv7), found x86-64",
    ]
    assert run_cli("verify", fixed, root=empty).returncode == 0
    proc = run_cli("verify", broken.replace(":broken", ":nope"), root=empty, check=False)
    assert proc.returncode == 1 and "nor at 127.0.0.1" in proc.stderr
    assert not list(empty.glob("blobs/sha256/*")), "verify must not store what it reads"
