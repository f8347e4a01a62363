"""Referrers (attestations) travel with every path that copies an image: ``imagetools copy`` and ``create``
(embedded registry with the referrers API, Debian's docker-registry with the tag schema, buildx index entries),
``load`` of OCI archives (no ``<none>`` images), ``save``, ``pull`` and ``push`` of a pulled image."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.attest.conftest import EPOCH, PLATFORMS
from tests.conftest import run_cli
from tests.registry.refregistry import RefRegistry

ALL = [("linux/amd64", "provenance"), ("linux/amd64", "sbom"), ("linux/arm64", "provenance"), ("linux/arm64", "sbom")]


def _rows(root: Path, where: str) -> list[dict[str, Any]]:
    return list(json.loads(run_cli("attestations", "ls", where, "--format", "json", root=root).stdout))


def _kinds(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((r["platform"], r["type"]) for r in rows)


def _push_attested(root: Path, app: Path, src: str, *extra: str) -> None:
    """Build ``app`` for every platform with an SBOM and a provenance each, and push it as ``src``."""
    run_cli("build", "--platform", PLATFORMS, "-t", src, "--push", "--sbom", "--provenance", *extra, str(app),
            root=root, env=EPOCH)


def _index(host: str, repo: str, ref: str) -> dict[str, Any]:
    r = httpx.get(f"http://{host}/v2/{repo}/manifests/{ref}",
                  headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_imagetools_copy_and_create_carry_referrers(debianish: tuple[Path, Path], embedded: str,
                                                    docker_registry: RefRegistry, tmp_path: Path) -> None:
    root, app = debianish
    src = f"{embedded}/travel/src:1"
    _push_attested(root, app, src)
    digests = [m["digest"] for m in _index(embedded, "travel/src", "1")["manifests"]]

    # registry (API) → another repository of the same registry (API)
    copied = run_cli("imagetools", "copy", src, f"{embedded}/travel/copy:1", root=root)
    assert "4 referrer(s) copied" in copied.stdout
    assert _kinds(_rows(root, f"{embedded}/travel/copy:1")) == ALL

    # registry (API) → docker-registry (no API: the sha256-<hex> tag of each platform manifest lists them)
    host = docker_registry.host
    created = run_cli("imagetools", "create", "-t", f"{host}/travel/created:1", src, root=root)
    assert "4 referrer(s) copied" in created.stdout
    assert _kinds(_rows(root, f"{host}/travel/created:1")) == ALL
    for digest in digests:
        tagged = _index(host, "travel/created", digest.replace(":", "-"))
        assert len(tagged["manifests"]) == 2
        assert {m["artifactType"] for m in tagged["manifests"]} == {"application/vnd.in-toto+json"}

    # docker-registry (tag schema read) → embedded registry, one platform: its referrers only
    run_cli("imagetools", "copy", "--platform", "linux/arm64", f"{host}/travel/created:1",
            f"{embedded}/travel/arm:1", root=root)
    assert _kinds(_rows(root, f"{embedded}/travel/arm:1")) == [("linux/arm64", "provenance"),
                                                                ("linux/arm64", "sbom")]

    # --no-referrers leaves them behind
    bare = run_cli("imagetools", "copy", "--no-referrers", src, f"{embedded}/travel/bare:1", root=root)
    assert "referrer" not in bare.stdout
    assert _rows(root, f"{embedded}/travel/bare:1") == []

    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    out = tmp_path / "skopeo"
    proc = subprocess.run(["skopeo", "copy", "--all", "--src-tls-verify=false", f"docker://{host}/travel/created:1",
                           f"oci:{out}:1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_imagetools_buildx_mode_entries_travel_as_they_are(debianish: tuple[Path, Path], embedded: str,
                                                           docker_registry: RefRegistry) -> None:
    root, app = debianish
    src = f"{embedded}/travel/bx:1"
    _push_attested(root, app, src, "--attest-mode=buildx")
    dest = f"{docker_registry.host}/travel/bx:1"
    run_cli("imagetools", "create", "-t", dest, src, root=root)
    rows = _rows(root, dest)
    assert _kinds(rows) == ALL and {r["attached"] for r in rows} == {"index"}
    # a copy of both platforms by --platform is a new index: the attestation entries of both come along
    run_cli("imagetools", "copy", "--platform", "linux/arm64,linux/amd64", src, f"{embedded}/travel/bx2:1",
            root=root)
    assert _kinds(_rows(root, f"{embedded}/travel/bx2:1")) == ALL


def test_single_platform_pull_keeps_its_buildx_attestation(debianish: tuple[Path, Path], embedded: str,
                                                          empty_root: Path) -> None:
    root, app = debianish
    src = f"{embedded}/travel/bxpull:1"
    _push_attested(root, app, src, "--attest-mode=buildx")
    out = run_cli("pull", "--platform", "linux/arm64", src, root=empty_root).stdout
    assert "unknown" not in out
    assert _kinds(_rows(empty_root, f"local:{src}")) == [("linux/arm64", "provenance"), ("linux/arm64", "sbom")]
    listing = run_cli("images", root=empty_root).stdout
    assert "<none>" not in listing and "unknown" not in listing


@pytest.mark.parametrize("mode", ["referrers", "buildx"])
def test_load_of_an_oci_archive_keeps_attestations_attached(debianish: tuple[Path, Path], empty_root: Path,
                                                            tmp_path: Path, mode: str) -> None:
    root, app = debianish
    archive = tmp_path / "app.tar"
    run_cli("build", "--platform", PLATFORMS, "-t", "app:1", "--sbom", "--provenance", "--attest-mode", mode, "-o",
            f"type=oci,dest={archive}", str(app), root=root, env=EPOCH)
    loaded = run_cli("load", "-i", str(archive), root=empty_root)
    assert loaded.stdout.splitlines() == ["Loaded image: app:1"]  # no "Loaded image ID" for the referrers
    listed = json.loads(run_cli("images", "--format", "json", root=empty_root).stdout)
    assert [(r["name"], sorted(r["platforms"])) for r in listed] == [("app:1", ["linux/amd64", "linux/arm64"])]
    table = run_cli("images", root=empty_root).stdout
    assert "<none>" not in table and "unknown" not in table
    assert _kinds(_rows(empty_root, "app:1")) == ALL


def test_save_then_load_keeps_them(debianish: tuple[Path, Path], empty_root: Path, tmp_path: Path) -> None:
    root, app = debianish
    run_cli("build", "--platform", PLATFORMS, "-t", "app:1", "--load", "--sbom", "--provenance", str(app), root=root,
            env=EPOCH)
    whole, arm = tmp_path / "whole.tar", tmp_path / "arm.tar"
    run_cli("save", "-o", str(whole), "app:1", root=root)
    run_cli("save", "--platform", "linux/arm64", "-o", str(arm), "app:1", root=root)
    assert _kinds(_rows(root, f"oci-archive://{whole}")) == ALL
    assert _kinds(_rows(root, f"oci-archive://{arm}")) == [("linux/arm64", "provenance"), ("linux/arm64", "sbom")]
    run_cli("load", "-i", str(whole), root=empty_root)
    assert _kinds(_rows(empty_root, "app:1")) == ALL
    assert "<none>" not in run_cli("images", root=empty_root).stdout


def test_pull_keeps_them_and_push_sends_them_on(debianish: tuple[Path, Path], embedded: str,
                                                docker_registry: RefRegistry, empty_root: Path) -> None:
    root, app = debianish
    src = f"{docker_registry.host}/travel/pulled:1"
    _push_attested(root, app, src)
    run_cli("pull", "--platform", "linux/arm64", src, root=empty_root)
    assert _kinds(_rows(empty_root, f"local:{src}")) == [("linux/arm64", "provenance"), ("linux/arm64", "sbom")]
    assert "<none>" not in run_cli("images", root=empty_root).stdout
    run_cli("pull", "--all-platforms", src, root=empty_root)
    assert _kinds(_rows(empty_root, f"local:{src}")) == ALL
    dest = f"{embedded}/travel/repushed:1"
    run_cli("push", src, dest, root=empty_root)
    assert _kinds(_rows(empty_root, dest)) == ALL
