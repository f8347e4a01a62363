"""The shell example built for three platforms and pushed to Debian's docker-registry (the reference registry):
skopeo, an independent client, sees one index; a fresh store pulls every platform back and each one runs
under runc (arm64 and arm/v7 through QEMU), printing its own machine."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.registry.refregistry import start_registry

from .conftest import PLATFORMS, build

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.registry
@pytest.mark.skopeo
@pytest.mark.root
@pytest.mark.binfmt
def test_build_push_pull_run(store_root: Path, tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed")
    run_cli("binfmt", "--install", "arm64,arm")
    registry = start_registry(tmp_path / "registry")
    try:
        image = f"{registry.host}/demo/shell-app:1"
        build(store_root, REPO / "examples" / "shell-app", "--platform", PLATFORMS, "-t", image, "--push",
              "--metadata-file", str(tmp_path / "meta.json"))
        meta = json.loads((tmp_path / "meta.json").read_text())
        raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{image}"],
                             capture_output=True, text=True, check=True).stdout
        index = json.loads(raw)
        assert meta["containerimage.digest"] == "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
        assert [(m["platform"]["architecture"], m["platform"].get("variant", "")) for m in index["manifests"]] == [
            ("amd64", ""), ("arm64", ""), ("arm", "v7")]
        fresh = tmp_path / "fresh"
        run_cli("pull", "--all-platforms", image, root=fresh)
        for platform, machine in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64"), ("linux/arm/v7", "armv7l")):
            out = run_cli("run", "--platform", platform, image, "info", root=fresh).stdout
            assert out.strip() == f"shell-app: version dev on {machine}", out
    finally:
        registry.stop()
