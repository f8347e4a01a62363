"""Blob origins (``polyarch.content.origins``): a pull or build ``FROM`` records where each blob came from, in the
store, so that a later push in another process mounts it across repositories of the same registry instead of
uploading it again (containerd's distribution-source labels). Through the CLI, with Debian's docker-registry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.pipeline.conftest import build
from tests.registry.imagegen import make_test_image

from polyarch.content.images import ImageStore
from polyarch.content.origins import DB_NAME, KEEP, BlobOrigins
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import StoreError
from polyarch.oci.spec import Manifest

TWO = ("linux/amd64", "linux/arm64")


def _blobs(root: Path, name: str) -> set[str]:
    """Config and layer digests of every image under ``name``."""
    images = ImageStore(ContentStore(root))
    out: set[str] = set()
    for image in images.images(images.lookup(name)):
        assert isinstance(image.manifest, Manifest)
        out |= {str(b.digest) for b in (image.manifest.config, *image.manifest.layers)}
    return out


def _counts(stdout: str) -> tuple[int, int]:
    """(uploaded, mounted) from ``polyarch push``'s report line."""
    line = next(x for x in stdout.splitlines() if ": pushed (" in x)
    parts = line.split("(", 1)[1].split(",")
    return int(parts[0].split()[0]), int(parts[1].split()[0])


def test_push_of_an_image_built_from_a_pulled_base_mounts_the_base(ref_registry, tmp_path: Path) -> None:
    host = ref_registry.host
    seed = tmp_path / "seed"
    make_test_image(seed, "base/gen:1", platforms=TWO, layer_sizes=(4096, 70000), seed=11)
    run_cli("push", "base/gen:1", f"{host}/origins/base:1", root=seed)

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {host}/origins/base:1\nCOPY app.sh /app/\n")
    (ctx / "app.sh").write_text("echo hi\n")
    store = tmp_path / "store"
    build(store, ctx, "--platform", ",".join(TWO), "-t", "app:1", "--load")  # FROM pulls the base (one process)
    base_layers = _blobs(seed, "base/gen:1") & _blobs(store, "app:1")
    assert len(base_layers) == 3  # the shared layer and one per platform

    pushed = run_cli("push", "app:1", f"{host}/origins/new:1", root=store)  # another process
    uploaded, mounted = _counts(pushed.stdout)
    assert mounted == len(base_layers), pushed.stdout
    assert uploaded == len(_blobs(store, "app:1")) - len(base_layers)

    # the records, not the registry, made the mounts: without them (the old behaviour) every blob is uploaded
    (store / DB_NAME).unlink()
    before = run_cli("push", "app:1", f"{host}/origins/new2:1", root=store)
    assert _counts(before.stdout) == (len(_blobs(store, "app:1")), 0), before.stdout

    # every pushed repository is complete: a fresh store pulls it whole
    for repo in ("new", "new2"):
        run_cli("pull", "--all-platforms", f"{host}/origins/{repo}:1", root=tmp_path / f"check-{repo}")


def test_pull_records_and_a_push_elsewhere_mounts_everything(ref_registry, tmp_path: Path) -> None:
    host = ref_registry.host
    seed = tmp_path / "seed"
    make_test_image(seed, "base/gen:2", platforms=TWO, layer_sizes=(4096, 50000), seed=12)
    run_cli("push", "base/gen:2", f"{host}/origins/pulled:1", root=seed)
    store = tmp_path / "store"
    run_cli("pull", "--platform", "linux/arm64", f"{host}/origins/pulled:1", root=store)
    with BlobOrigins(store) as origins:
        found = origins.repositories(host, [Digest.parse(d) for d in _blobs(store, f"{host}/origins/pulled:1")])
    assert len(found) == 3 and all(repos == ["origins/pulled"] for repos in found.values())
    pushed = run_cli("push", f"{host}/origins/pulled:1", f"{host}/origins/elsewhere:1", root=store)
    assert _counts(pushed.stdout) == (0, 3), pushed.stdout
    # the push recorded its destination too: a push to a third repository can mount from either
    with BlobOrigins(store) as origins:
        again = origins.repositories(host, [Digest.parse(d) for d in found])
    assert all(sorted(repos) == ["origins/elsewhere", "origins/pulled"] for repos in again.values())


def test_origins_database(tmp_path: Path) -> None:
    digest = Digest.of(b"x")
    origins = BlobOrigins(tmp_path)
    assert origins.repositories("r.example", [digest]) == {}
    assert not (tmp_path / DB_NAME).exists()  # a lookup never creates the file
    for n in range(KEEP + 3):
        origins.record("r.example", f"repo{n}", [digest])
    origins.record("other.example", "x", [digest])
    repos = origins.repositories("r.example", [digest])[str(digest)]
    assert len(repos) == KEEP and "repo0" not in repos and f"repo{KEEP + 2}" in repos
    origins.close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this polyarch knows"):
        BlobOrigins(tmp_path).record("r.example", "repo", [digest])
