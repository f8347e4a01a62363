"""Outputs through ``polyarch build``: OCI archive and directory, docker archive, local and tar rootfs, registry push,
compression conversion, metadata files."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.errors import UsageError
from polyarch.exporters.spec import parse_output
from tests.pipeline.conftest import build, write_tree

TWO = "linux/amd64,linux/arm64"


@pytest.mark.parametrize("text,kind,dest", [
    ("type=oci,dest=a.tar", "oci", "a.tar"),
    ("type=docker,dest=d.tar", "docker", "d.tar"),
    ("type=local,dest=out", "local", "out"),
    ("out", "local", "out"),
    ("-", "tar", "-"),
    ("type=registry,name=r/x:1,push-by-digest=true", "registry", ""),
    ("type=image,name=r/x:1,push=true", "registry", ""),
])
def test_parse_output(text: str, kind: str, dest: str) -> None:
    spec = parse_output(text)
    assert (spec.type, spec.dest) == (kind, dest)


@pytest.mark.parametrize("text", ["type=nope,dest=x", "type=oci", "dest=x", "type=oci,dest", "",
                                  "type=registry,name=x,compression=lz4", "type=oci,dest=x,tar=maybe"])
def test_parse_output_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        spec = parse_output(text)
        spec.flag("tar", True)


def test_oci_docker_local_tar_outputs(store_root: Path, ctx: Path, tmp_path: Path) -> None:
    oci, ocidir, local, tar = tmp_path / "img.tar", tmp_path / "layout", tmp_path / "local", tmp_path / "fs.tar"
    meta = tmp_path / "meta.json"
    build(store_root, ctx, "--platform", TWO, "-t", "app:1", "-o", f"type=oci,dest={oci}",
          "-o", f"type=oci,dest={ocidir},tar=false", "-o", f"type=local,dest={local}", "-o", f"type=tar,dest={tar}",
          "--metadata-file", str(meta), "--iidfile", str(tmp_path / "iid"))
    digest = (tmp_path / "iid").read_text()
    assert json.loads(meta.read_text())["containerimage.digest"] == digest
    with tarfile.open(oci) as tf:
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        assert index["manifests"][0]["digest"] == digest
        assert f"blobs/sha256/{digest.split(':')[1]}" in tf.getnames()
    layout = ImageStore(ContentStore(ocidir))
    assert [str(i.platform) for i in layout.images(layout.lookup("app:1"))] == TWO.split(",")
    assert (local / "linux_amd64" / "srv" / "app.sh").read_text() == "echo hi\n"
    assert (local / "linux_arm64" / "bin" / "busybox").exists()
    with tarfile.open(tar) as tf:
        assert "linux_arm64/srv/app.sh" in tf.getnames()
    assert ImageStore(ContentStore(store_root)).names() == [n for n in ImageStore(ContentStore(store_root)).names()
                                                           if "app" not in n[0]]  # no --load: not named


def test_docker_output_is_single_platform(store_root: Path, ctx: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.tar"
    meta = tmp_path / "m.json"
    build(store_root, ctx, "--platform", "linux/arm64", "-t", "app:1", "-o", f"type=docker,dest={out}",
          "--metadata-file", str(meta))
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["app:1"]
    assert json.loads(meta.read_text())["containerimage.config.digest"].startswith("sha256:")
    proc = build(store_root, ctx, "--platform", TWO, "-t", "app:1", "-o", f"type=docker,dest={out}", check=False)
    assert proc.returncode == 2 and "one platform" in proc.stderr


def test_push_tags_and_by_digest(store_root: Path, ctx: Path, tmp_path: Path, registry: str) -> None:
    from tests.conftest import run_cli

    meta = tmp_path / "meta.json"
    build(store_root, ctx, "--platform", TWO, "-t", f"{registry}/app:1", "--push", "--metadata-file", str(meta))
    digest = json.loads(meta.read_text())["containerimage.digest"]
    raw = run_cli("imagetools", "inspect", f"{registry}/app:1", "--raw", root=store_root).stdout
    assert json.loads(raw)["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert len(json.loads(raw)["manifests"]) == 2
    build(store_root, ctx, "--platform", "linux/amd64", "--metadata-file", str(meta),
          "-o", f"type=registry,name={registry}/app,push-by-digest=true,compression=zstd,oci-mediatypes=true")
    pushed = json.loads(meta.read_text())
    raw = run_cli("imagetools", "inspect", f"{registry}/app@{pushed['containerimage.digest']}", "--raw",
                  root=store_root).stdout
    doc = json.loads(raw)
    assert doc["manifests"][0]["platform"]["architecture"] == "amd64"
    assert pushed["containerimage.digest"] != digest


def test_from_image_is_pulled_when_the_store_lacks_it(store_root: Path, tmp_path: Path, registry: str) -> None:
    from tests.conftest import run_cli

    run_cli("push", "base/busybox:1", f"{registry}/base/busybox:1", root=store_root)
    empty = tmp_path / "empty"
    ctx = write_tree(tmp_path / "pctx", {"Dockerfile": f"FROM {registry}/base/busybox:1\nCOPY f /f\n", "f": "f"})
    build(empty, ctx, "--platform", TWO, "-t", "pulled:1", "--load")
    images = ImageStore(ContentStore(empty))
    assert [str(i.platform) for i in images.images(images.lookup("pulled:1"))] == TWO.split(",")


@pytest.mark.skopeo
@pytest.mark.skipif(__import__("shutil").which("skopeo") is None, reason="needs skopeo")
def test_skopeo_reads_the_oci_output(store_root: Path, ctx: Path, tmp_path: Path) -> None:
    out = tmp_path / "img.tar"
    build(store_root, ctx, "--platform", TWO, "-t", "app:1", "-o", f"type=oci,dest={out}")
    proc = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{out}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["manifests"]) == 2
    for arch in ("amd64", "arm64"):
        proc = subprocess.run(["skopeo", "--override-arch", arch, "copy", f"oci-archive:{out}",
                               f"dir:{tmp_path / arch}"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        cfg = json.loads(subprocess.run(["skopeo", "--override-arch", arch, "inspect", "--config",
                                         f"oci-archive:{out}"], capture_output=True, text=True).stdout)
        assert cfg["architecture"] == arch and cfg["config"]["WorkingDir"] == "/srv"


def test_store_and_oci_outputs_convert_compression_and_media_types(store_root: Path, ctx: Path,
                                                                   tmp_path: Path) -> None:
    build(store_root, ctx, "--platform", TWO, "-o", "type=image,name=z:1,compression=zstd",
          "-o", "type=image,name=d:1,oci-mediatypes=false", "-o", f"type=oci,dest={tmp_path / 'u.tar'},"
          "compression=uncompressed")
    images = ImageStore(ContentStore(store_root))
    for img in images.images(images.lookup("z:1")):
        assert {d.media_type for d in img.manifest.layers} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    docker = images.read_document(images.lookup("d:1"))
    assert docker.descriptor.media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
    for img in images.images(images.lookup("d:1")):
        assert {d.media_type for d in img.manifest.layers} == {"application/vnd.docker.image.rootfs.diff.tar.gzip"}
        assert img.descriptor.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    proc = build(store_root, ctx, "-o", "type=image,name=x:1,compression=zstd,oci-mediatypes=false", check=False)
    assert proc.returncode != 0 and "zstd" in proc.stderr and "Traceback" not in proc.stderr
