"""audit of images in a registry (Debian's docker-registry on loopback), through the registry client."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from polyarch.content.images import ImageStore

from .images import put_index, tiny

pytestmark = pytest.mark.registry
Run = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    from tests.registry.refregistry import start_registry

    reg = start_registry(tmp_path_factory.mktemp("audit-registry"))
    yield reg.host
    reg.stop()


def test_audit_registry_images(registry: str, images: ImageStore, tmp_path: Path, run_cli: Run) -> None:
    put_index(images, "app:fixed", [tiny(images, p) for p in ("linux/amd64", "linux/arm64", "linux/arm/v7")])
    put_index(images, "armonly:1", [tiny(images, "linux/arm/v7")])
    for name in ("app:fixed", "armonly:1"):
        run_cli("push", name, f"{registry}/verify/{name}", root=images.store.root)
    listing = tmp_path / "images.txt"
    listing.write_text(f"{registry}/verify/app:fixed\n{registry}/verify/armonly:1\n{registry}/verify/absent:1\n")
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  server: linux/amd64\n  pi3: linux/arm/v7\n")
    proc = run_cli("audit", "--hosts", str(hosts), str(listing), "--format", "json", root=tmp_path / "empty",
                   check=False)
    assert proc.returncode == 1, proc.stderr
    cells = {i["ref"].split("/")[-1]: {h: c["status"] + " " + c.get("platform", "") for h, c in i["hosts"].items()}
             for i in json.loads(proc.stdout)["images"]}
    assert cells == {
        "app:fixed": {"server": "native linux/amd64", "pi3": "native linux/arm/v7"},
        "armonly:1": {"server": "emulated linux/arm/v7", "pi3": "native linux/arm/v7"},
        "absent:1": {"server": "missing ", "pi3": "missing "},
    }
