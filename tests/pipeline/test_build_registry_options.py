"""``build`` and ``bake`` take the registry options ``pull``/``push`` take (``--insecure-registry``, ``--tls-ca``):
the CLI makes the one registry client factory and hands it to the build (FROM pulls, cache transfers) and to the
exporters (push). A plain-http registry on a non-loopback address of this machine (on a veth pair) is refused
without ``--insecure-registry`` and used with it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.registry.refregistry import start_registry

from .conftest import build, write_tree


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.registry
@pytest.mark.root
def test_build_and_bake_pull_and_push_through_insecure_registry(store_root: Path, tmp_path: Path,
                                                                 local_address: str) -> None:
    registry = start_registry(tmp_path / "registry", address=local_address)
    try:
        host = registry.host
        run_cli("tag", "base/busybox:1", f"{host}/base/busybox:1", root=store_root)
        run_cli("push", "--insecure-registry", host, f"{host}/base/busybox:1", root=store_root)
        ctx = write_tree(tmp_path / "ctx", {"a": "a\n", "Dockerfile": f"FROM {host}/base/busybox:1\nCOPY a /a\n"})
        fresh = tmp_path / "fresh"

        refused = build(fresh, ctx, "--platform", "linux/arm64", "-t", f"{host}/app:1", "--push", check=False)
        assert refused.returncode != 0
        assert len(_error_lines(refused.stderr)) == 1, refused.stderr
        assert "Traceback" not in refused.stderr and f"--insecure-registry {host}" in refused.stderr

        build(fresh, ctx, "--platform", "linux/arm64", "-t", f"{host}/app:1", "--push", "--insecure-registry", host)
        raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{host}/app:1"],
                             capture_output=True, text=True, check=True).stdout
        assert [m["platform"]["architecture"] for m in json.loads(raw)["manifests"]] == ["arm64"]

        (ctx / "docker-bake.hcl").write_text(
            f'target "app" {{\n  platforms = ["linux/amd64"]\n  tags = ["{host}/bake:1"]\n}}\n')
        baked = run_cli("bake", "--progress", "plain", "--push", "app", root=tmp_path / "fresh2", cwd=ctx,
                        check=False)
        assert baked.returncode != 0 and len(_error_lines(baked.stderr)) == 1, baked.stderr
        assert f"--insecure-registry {host}" in baked.stderr
        run_cli("bake", "--progress", "plain", "--push", "--insecure-registry", host, "app",
                root=tmp_path / "fresh2", cwd=ctx)
        raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{host}/bake:1"],
                             capture_output=True, text=True, check=True).stdout
        assert [m["platform"]["architecture"] for m in json.loads(raw)["manifests"]] == ["amd64"]
    finally:
        registry.stop()
