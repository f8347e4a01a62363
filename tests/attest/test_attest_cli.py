"""Attestations end to end through the CLI: a 2-platform image FROM a Debian-like base (busybox + a dpkg status
file), built with ``--sbom --provenance`` and pushed to the embedded registry (referrers API) and to Debian's
docker-registry (no referrers API: the ``sha256-<hex>`` tag schema); ``--attest-mode=buildx``; ``--load``;
``attestations ls/get``; skopeo still copies the image. Fixtures: ``conftest.py``."""

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

ACCEPT = ",".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.list.v2+json"])


def _get(host: str, repo: str, ref: str) -> dict[str, Any]:
    r = httpx.get(f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _blob(host: str, repo: str, digest: str) -> dict[str, Any]:
    r = httpx.get(f"http://{host}/v2/{repo}/blobs/{digest}", follow_redirects=True)
    assert r.status_code == 200
    return dict(r.json())


def _statements(host: str, repo: str, referrers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for desc in referrers:
        assert desc["artifactType"] == "application/vnd.in-toto+json"
        manifest = _get(host, repo, desc["digest"])
        layer = manifest["layers"][0]
        assert layer["mediaType"] == "application/vnd.in-toto+json"
        st = _blob(host, repo, layer["digest"])
        assert st["predicateType"] == layer["annotations"]["in-toto.io/predicate-type"]
        out[st["predicateType"]] = st | {"_subject": manifest["subject"]["digest"]}
    return out


def _base_digests(root: Path) -> dict[str, str]:
    doc = json.loads(run_cli("imagetools", "inspect", "local:base/debianish:1", "--raw", root=root).stdout)
    return {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in doc["manifests"]}


def _check_pushed(host: str, repo: str, root: Path, referrers_of: Any) -> None:
    index = _get(host, repo, "1")
    platforms = [f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]]
    assert platforms == ["linux/amd64", "linux/arm64"]  # exactly the two: no unknown/unknown entry
    bases = _base_digests(root)
    for m in index["manifests"]:
        plat = f"{m['platform']['os']}/{m['platform']['architecture']}"
        sts = _statements(host, repo, referrers_of(m["digest"]))
        assert set(sts) == {"https://spdx.dev/Document", "https://slsa.dev/provenance/v1"}
        sbom = sts["https://spdx.dev/Document"]
        assert sbom["_subject"] == m["digest"] and sbom["subject"][0]["digest"]["sha256"] == m["digest"][7:]
        pkgs = {p["name"]: p for p in sbom["predicate"]["packages"]}
        assert sbom["predicate"]["spdxVersion"] == "SPDX-2.3"
        assert {n: pkgs[n]["versionInfo"] for n in ("base-files", "libc6", "zlib1g", "curl", "Requests")} == {
            "base-files": "12.4+deb12u5", "libc6": "2.36-9+deb12u4", "zlib1g": "1:1.2.13.dfsg-1",
            "curl": "7.88.1-10+deb12u5", "Requests": "2.31.0"}
        assert "removed-one" not in pkgs
        refs = pkgs["zlib1g"]["externalRefs"][0]["referenceLocator"]
        assert refs == "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12"
        assert pkgs["Requests"]["licenseDeclared"] == "Apache 2.0"
        layer_of = {n: pkgs[n]["annotations"][0]["comment"] for n in ("libc6", "curl")}
        assert layer_of["libc6"] != layer_of["curl"]  # curl came with the app's last layer
        prov = sts["https://slsa.dev/provenance/v1"]["predicate"]
        deps = prov["buildDefinition"]["resolvedDependencies"]
        base = [d for d in deps if d["uri"].startswith("pkg:docker/base/debianish@1")]
        assert base and "sha256:" + base[0]["digest"]["sha256"] == bases[plat]
        assert prov["runDetails"]["metadata"]["startedOn"] == "2023-11-14T22:13:20Z"  # SOURCE_DATE_EPOCH


def test_push_embedded_registry_referrers_api(debianish: tuple[Path, Path], embedded: str, tmp_path: Path) -> None:
    root, app = debianish
    name = f"{embedded}/att/app:1"
    run_cli("build", "--platform", PLATFORMS, "-t", name, "--push", "--sbom", "--provenance=mode=max", str(app),
            root=root, env=EPOCH)

    def referrers(digest: str) -> list[dict[str, Any]]:
        r = httpx.get(f"http://{embedded}/v2/att/app/referrers/{digest}")
        assert r.status_code == 200
        return list(r.json()["manifests"])

    _check_pushed(embedded, "att/app", root, referrers)
    listed = run_cli("attestations", "ls", name, "--format", "json", root=root)
    rows = json.loads(listed.stdout)
    assert sorted((r["platform"], r["type"], r["attached"]) for r in rows) == [
        ("linux/amd64", "provenance", "referrer"), ("linux/amd64", "sbom", "referrer"),
        ("linux/arm64", "provenance", "referrer"), ("linux/arm64", "sbom", "referrer")]
    got = run_cli("attestations", "get", name, "--type", "provenance", "--platform", "linux/arm64", root=root)
    steps = json.loads(got.stdout)["predicate"]["buildDefinition"]["internalParameters"]["buildConfig"]["steps"]
    assert any("COPY status" in s["description"] for s in steps)  # mode=max


def test_push_docker_registry_tag_schema_and_skopeo(debianish: tuple[Path, Path], docker_registry: RefRegistry,
                                                    tmp_path: Path) -> None:
    root, app = debianish
    host = docker_registry.host
    name = f"{host}/att/app:1"
    run_cli("build", "--platform", PLATFORMS, "-t", name, "--push", "--sbom", "--provenance", str(app),
            root=root, env=EPOCH)
    assert httpx.get(f"http://{host}/v2/att/app/referrers/sha256:{'0' * 64}").status_code == 404

    def referrers(digest: str) -> list[dict[str, Any]]:
        return list(_get(host, "att/app", digest.replace(":", "-"))["manifests"])

    _check_pushed(host, "att/app", root, referrers)
    rows = json.loads(run_cli("attestations", "ls", name, "--format", "json", root=root).stdout)
    assert len(rows) == 4 and {r["attached"] for r in rows} == {"referrer"}
    sbom = run_cli("attestations", "get", name, "--type", "sbom", "--platform", "linux/amd64", "--predicate",
                   root=root)
    assert "curl" in {p["name"] for p in json.loads(sbom.stdout)["packages"]}
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    out = tmp_path / "copied"
    proc = subprocess.run(["skopeo", "copy", "--all", "--src-tls-verify=false", f"docker://{name}",
                           f"oci:{out}:1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    index = json.loads((out / "index.json").read_text())
    copied = json.loads((out / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    assert len(copied["manifests"]) == 2


def test_buildx_mode_shape(debianish: tuple[Path, Path], embedded: str) -> None:
    root, app = debianish
    name = f"{embedded}/att/bx:1"
    run_cli("build", "--platform", PLATFORMS, "-t", name, "--push", "--attest", "type=sbom",
            "--attest", "type=provenance,mode=min,version=v0.2", "--attest-mode=buildx", str(app), root=root,
            env=EPOCH)
    index = _get(embedded, "att/bx", "1")
    images = [m for m in index["manifests"] if m["platform"]["os"] != "unknown"]
    atts = [m for m in index["manifests"] if m["platform"]["os"] == "unknown"]
    assert len(images) == 2 and len(atts) == 2
    for att, image in zip(atts, images, strict=True):
        assert att["platform"] == {"os": "unknown", "architecture": "unknown"}
        assert att["annotations"] == {"vnd.docker.reference.digest": image["digest"],
                                      "vnd.docker.reference.type": "attestation-manifest"}
        manifest = _get(embedded, "att/bx", att["digest"])
        config = _blob(embedded, "att/bx", manifest["config"]["digest"])
        assert (config["os"], config["architecture"]) == ("unknown", "unknown")
        types = [x["annotations"]["in-toto.io/predicate-type"] for x in manifest["layers"]]
        assert types == ["https://spdx.dev/Document", "https://slsa.dev/provenance/v0.2"]
        assert {x["mediaType"] for x in manifest["layers"]} == {"application/vnd.in-toto+json"}
    rows = json.loads(run_cli("attestations", "ls", name, "--format", "json", root=root).stdout)
    assert {r["attached"] for r in rows} == {"index"} and len(rows) == 4
    prov = json.loads(run_cli("attestations", "get", name, "--type", "provenance", "--platform", "linux/amd64",
                              root=root).stdout)
    assert prov["predicateType"] == "https://slsa.dev/provenance/v0.2"
    assert any(m["uri"].startswith("pkg:docker/base/debianish@1") for m in prov["predicate"]["materials"])


def test_load_keeps_them_as_store_referrers(debianish: tuple[Path, Path]) -> None:
    root, app = debianish
    run_cli("build", "--platform", PLATFORMS, "-t", "app:1", "--load", "--sbom", str(app), root=root, env=EPOCH)
    rows = json.loads(run_cli("attestations", "ls", "app:1", "--format", "json", root=root).stdout)
    assert [(r["platform"], r["type"]) for r in rows] == [("linux/amd64", "sbom"), ("linux/arm64", "sbom")]
    listed = run_cli("images", "--format", "{{.Repository}}", root=root).stdout.split()
    assert "<none>" not in listed  # the referrer entries are not images
    none = run_cli("attestations", "get", "app:1", "--type", "provenance", root=root, check=False)
    assert none.returncode == 1 and none.stderr.startswith("error: ")


@pytest.mark.parametrize("flags, message", [
    (["--sbom=maybe"], "invalid --sbom"),
    (["--provenance=mode=huge"], "mode must be min or max"),
    (["--attest", "type=signature"], "type must be sbom or provenance"),
    (["--attest", "type=sbom,colour=red"], "unknown key 'colour'"),
    (["--provenance=version=v3"], "version must be v1 or v0.2"),
])
def test_bad_flags_one_error_line(debianish: tuple[Path, Path], flags: list[str], message: str) -> None:
    root, app = debianish
    proc = run_cli("build", *flags, str(app), root=root, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr


def test_bake_attest_attribute_and_flags(debianish: tuple[Path, Path]) -> None:
    root, app = debianish
    (app / "docker-bake.hcl").write_text(
        'target "default" {\n  context = "."\n  platforms = ["linux/amd64", "linux/arm64"]\n'
        '  tags = ["bakeapp:1"]\n  attest = ["type=sbom"]\n}\n')
    run_cli("bake", "--load", "--provenance=mode=max", root=root, env=EPOCH, cwd=app)
    rows = json.loads(run_cli("attestations", "ls", "bakeapp:1", "--format", "json", root=root).stdout)
    assert sorted((r["platform"], r["type"]) for r in rows) == [
        ("linux/amd64", "provenance"), ("linux/amd64", "sbom"), ("linux/arm64", "provenance"),
        ("linux/arm64", "sbom")]
    # referrers belong to the manifest digest: another image (no SOURCE_DATE_EPOCH: new created times) has none
    run_cli("bake", "--load", "--set", "*.tags=bakeapp:2", "--set", "*.attest=type=sbom,disabled=true", root=root,
            cwd=app)
    assert json.loads(run_cli("attestations", "ls", "bakeapp:2", "--format", "json", root=root).stdout) == []
    bad = run_cli("bake", "--set", "*.attest=type=sbom,colour=red", root=root, cwd=app, check=False)
    assert bad.returncode != 0 and bad.stderr.startswith("error: target 'default': attribute 'attest'")


def test_verify_require_attestations_and_imagetools_templates(debianish: tuple[Path, Path], embedded: str) -> None:
    root, app = debianish
    with_atts, without = f"{embedded}/att/v:1", f"{embedded}/att/v:bare"
    run_cli("build", "--platform", PLATFORMS, "-t", with_atts, "--push", "--sbom", "--provenance", str(app),
            root=root, env=EPOCH)
    run_cli("build", "--platform", PLATFORMS, "-t", without, "--push", str(app), root=root)
    assert run_cli("verify", "--require-attestations", with_atts, root=root).returncode == 0
    bare = run_cli("verify", "--require-attestations", without, root=root, check=False)
    assert bare.returncode == 1
    assert "linux/arm64: missing-attestation: no sbom attestation" in bare.stdout
    assert "Traceback" not in bare.stderr
    prov = json.loads(run_cli("imagetools", "inspect", with_atts, "--format", "{{json .Provenance}}",
                              root=root).stdout)
    assert sorted(prov) == ["linux/amd64", "linux/arm64"]
    assert prov["linux/amd64"]["SLSA"]["buildDefinition"]["buildType"] == "https://mobyproject.org/buildkit@v1"
    sbom = json.loads(run_cli("imagetools", "inspect", with_atts, "--format", "{{ json .SBOM }}", root=root).stdout)
    assert "curl" in {p["name"] for p in sbom["linux/arm64"]["SPDX"]["packages"]}


def test_oci_archive_and_layout_keep_them(debianish: tuple[Path, Path], tmp_path: Path) -> None:
    root, app = debianish
    archive, layout = tmp_path / "app.tar", tmp_path / "layout"
    run_cli("build", "--platform", PLATFORMS, "-t", "app:1", "--sbom", "--provenance", "-o",
            f"type=oci,dest={archive}", "-o", f"type=oci,tar=false,dest={layout}", str(app), root=root, env=EPOCH)
    rows = json.loads(run_cli("attestations", "ls", f"oci-layout://{layout}:app:1", "--format", "json",
                              root=root).stdout)
    assert len(rows) == 4 and {r["attached"] for r in rows} == {"referrer"}
    rows = json.loads(run_cli("attestations", "ls", f"oci-archive://{archive}", "--format", "json",
                              root=root).stdout)
    assert len(rows) == 4
    inspect = json.loads(run_cli("imagetools", "inspect", f"oci-archive://{archive}", "--raw", root=root).stdout)
    assert len(inspect["manifests"]) == 2  # the archive's image is still the index, referrers set aside


@pytest.mark.parametrize("mode", ["referrers", "buildx"])
def test_outputs_that_change_manifests_get_attestations_about_the_new_digests(
        debianish: tuple[Path, Path], embedded: str, mode: str) -> None:
    root, app = debianish
    name = f"{embedded}/att/zstd-{mode}:1"
    run_cli("build", "--platform", PLATFORMS, "-t", name, "--sbom", "--attest-mode", mode, "-o",
            "type=registry,compression=zstd,force-compression=true", str(app), root=root, env=EPOCH)
    index = _get(embedded, f"att/zstd-{mode}", "1")
    images = [m for m in index["manifests"] if m["platform"]["os"] != "unknown"]
    assert len(images) == 2
    rows = json.loads(run_cli("attestations", "ls", name, "--format", "json", root=root).stdout)
    assert sorted(r["subject"] for r in rows) == sorted(m["digest"] for m in images)
    for m in images:
        layer = _get(embedded, f"att/zstd-{mode}", m["digest"])["layers"][0]
        assert layer["mediaType"].endswith("zstd")


def test_push_command_carries_store_referrers(debianish: tuple[Path, Path], docker_registry: RefRegistry) -> None:
    root, app = debianish
    run_cli("build", "--platform", PLATFORMS, "-t", "app:1", "--load", "--sbom", "--provenance", str(app),
            root=root, env=EPOCH)
    dest = f"{docker_registry.host}/att/pushed:1"
    run_cli("push", "app:1", dest, root=root)
    rows = json.loads(run_cli("attestations", "ls", dest, "--format", "json", root=root).stdout)
    assert sorted((r["platform"], r["type"]) for r in rows) == [
        ("linux/amd64", "provenance"), ("linux/amd64", "sbom"), ("linux/arm64", "provenance"),
        ("linux/arm64", "sbom")]
