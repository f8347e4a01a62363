"""Docker Engine 20.10 as a client of the embedded registry: pull a multi-platform image by platform, run the
arm64 one under QEMU (binfmt_misc with flag F, set up by `polyarch binfmt --install`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import BASE_NAME, run_cli
from tests.registry.server.conftest import start_server


@pytest.mark.docker
@pytest.mark.binfmt
def test_docker_pulls_and_runs_each_platform(docker, store_root: Path) -> None:
    run_cli("binfmt", "--install", "arm64,arm")
    server = start_server(store_root)
    try:
        image = f"{server.host}/{BASE_NAME}"
        repo_digest = f"{server.host}/base/busybox@{index_digest(store_root)}"
        for platform, machine in (("linux/arm64", "aarch64"), ("linux/arm/v7", "armv7l"), ("linux/amd64", "x86_64")):
            docker("pull", "--platform", platform, image)
            info = json.loads(docker("image", "inspect", image).stdout)[0]
            assert info["Architecture"] == platform.split("/")[1]
            assert repo_digest in info["RepoDigests"]  # the same index digest the store holds
            out = docker("run", "--rm", "--network", "none", "--platform", platform, image,
                         "sh", "-c", "uname -m | sed s/^/arch=/").stdout
            assert out.strip() == f"arch={machine}"
            docker("rmi", image)
    finally:
        server.stop()


def index_digest(root: Path) -> str:
    return json.loads((root / "index.json").read_text())["manifests"][0]["digest"]
