"""docker-archive output of 'polyarch save' is loadable by Docker Engine 20.10."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import BASE_NAME, run_cli


@pytest.mark.docker
def test_docker_loads_saved_archive(docker, base_root: Path, tmp_path: Path) -> None:
    for platform, arch in (("linux/arm64", "arm64"), ("linux/amd64", "amd64")):
        archive = tmp_path / f"{arch}.tar"
        run_cli("save", BASE_NAME, "-o", str(archive), "--format", "docker", "--platform", platform, root=base_root)
        out = docker("load", "-i", str(archive)).stdout
        assert f"Loaded image: {BASE_NAME}" in out
        info = json.loads(docker("image", "inspect", BASE_NAME).stdout)[0]
        assert info["Architecture"] == arch
    # The amd64 one runs natively in the engine and its busybox works.
    out = docker("run", "--rm", "--network", "none", BASE_NAME, "uname", "-m").stdout
    assert out.strip() == "x86_64"
