"""buildx's ``rewrite-timestamp=true`` and ``name-canonical=true`` output options."""

from __future__ import annotations

import json
from pathlib import Path

from tests.pipeline.conftest import build, images_of, layer_members, write_tree

EPOCH = 1700000000


def _ctx(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nCOPY app.sh /srv/app.sh\n",
                                         "app.sh": "echo hi\n"})  # written now: mtime later than EPOCH


def test_rewrite_timestamp_clamps_cached_layers_of_the_build_only(store_root: Path, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    # no SOURCE_DATE_EPOCH: the COPY layer keeps the file's mtime, and the build cache keeps that layer
    build(store_root, ctx, "--platform", "linux/amd64", "-t", "plain:1", "--load", env={"SOURCE_DATE_EPOCH": ""})
    plain = images_of(store_root, "plain:1")[0]
    n = len(plain.manifest.layers) - 1
    assert layer_members(store_root, plain, n)["srv/app.sh"].mtime > EPOCH

    # with an epoch, the cache hit alone does not change the layer …
    build(store_root, ctx, "--platform", "linux/amd64", "-t", "cached:1", "--load")
    assert images_of(store_root, "cached:1")[0].manifest.layers == plain.manifest.layers
    # … rewrite-timestamp=true does: every entry of the build's layer is clamped, base layers are untouched
    build(store_root, ctx, "--platform", "linux/amd64", "-o", "type=image,name=fixed:1,rewrite-timestamp=true")
    fixed = images_of(store_root, "fixed:1")[0]
    assert fixed.manifest.layers[:n] == plain.manifest.layers[:n]
    assert fixed.manifest.layers[n].digest != plain.manifest.layers[n].digest
    members = layer_members(store_root, fixed, n)
    assert members["srv/app.sh"].mtime == EPOCH and all(m.mtime <= EPOCH for m in members.values())
    assert fixed.config.diff_ids[n] != plain.config.diff_ids[n]

    # an already clamped build is left as it is (same digests as without the option)
    fresh = write_tree(tmp_path / "ctx2", {"Dockerfile": "FROM base/busybox:1\nCOPY b.sh /srv/b.sh\n", "b.sh": "b\n"})
    build(store_root, fresh, "--platform", "linux/amd64", "-t", "b:1", "--load")
    build(store_root, fresh, "--platform", "linux/amd64", "-o", "type=image,name=b:2,rewrite-timestamp=true")
    assert images_of(store_root, "b:2")[0].descriptor.digest == images_of(store_root, "b:1")[0].descriptor.digest


def test_rewrite_timestamp_needs_source_date_epoch(store_root: Path, tmp_path: Path) -> None:
    proc = build(store_root, _ctx(tmp_path), "--platform", "linux/amd64", "-o",
                 "type=image,name=x:1,rewrite-timestamp=true", check=False, env={"SOURCE_DATE_EPOCH": ""})
    assert proc.returncode != 0
    assert "rewrite-timestamp=true needs SOURCE_DATE_EPOCH" in proc.stderr and "Traceback" not in proc.stderr
    assert "#1 " not in proc.stderr  # refused before any step ran
    bad = build(store_root, _ctx(tmp_path / "2"), "-o", "type=image,name=x:1,rewrite-timestamp=maybe", check=False)
    assert bad.returncode != 0 and "not a boolean" in bad.stderr


def test_name_canonical_names_the_digest_too(store_root: Path, tmp_path: Path, registry: str) -> None:
    from tests.conftest import run_cli

    ctx, meta = _ctx(tmp_path), tmp_path / "meta.json"
    build(store_root, ctx, "--platform", "linux/amd64,linux/arm64", "--metadata-file", str(meta),
          "-o", "type=image,name=app:1,name-canonical=true")
    doc = json.loads(meta.read_text())
    digest = doc["containerimage.digest"]
    canonical = f"docker.io/library/app@{digest}"
    assert doc["image.name"] == f"app:1,{canonical}"
    assert str(images_of(store_root, canonical)[0].descriptor.digest) == \
        str(images_of(store_root, "app:1")[0].descriptor.digest)

    build(store_root, ctx, "--platform", "linux/amd64,linux/arm64", "--metadata-file", str(meta),
          "-o", f"type=registry,name={registry}/app:2,name-canonical=true")
    doc = json.loads(meta.read_text())
    assert doc["image.name"] == f"{registry}/app:2,{registry}/app@{doc['containerimage.digest']}"
    raw = run_cli("imagetools", "inspect", f"{registry}/app@{doc['containerimage.digest']}", "--raw",
                  root=store_root).stdout
    assert len(json.loads(raw)["manifests"]) == 2
