"""`polyarch prune` on a store the embedded registry serves must not delete what the registry references."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_prune_keeps_pushed_images(make_api, tmp_path: Path) -> None:
    root = tmp_path / "store"
    api = make_api(root)
    _, digest = api.push_image("app", "1", [b"layer-one", b"layer-two"])
    blobs_before = sorted(p.name for p in (root / "blobs" / "sha256").iterdir())
    assert len(blobs_before) >= 4  # 2 layers + config + manifest
    out = run_cli("prune", "--grace", "0", root=root).stdout
    assert "deleted 0 blobs" in out
    assert sorted(p.name for p in (root / "blobs" / "sha256").iterdir()) == blobs_before
    assert api.c.get(f"/v2/app/manifests/{digest}").status_code == 200
