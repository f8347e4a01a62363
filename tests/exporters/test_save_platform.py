"""``save --platform`` narrows the archive, never the store: the narrowed index exists only in the archive."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from tests.conftest import BASE_NAME, run_cli


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and "ingest" not in p.parts}


def test_save_of_one_platform_leaves_the_store_as_it_was(store_root: Path, tmp_path: Path) -> None:
    before = _tree(store_root)
    archive = tmp_path / "one.tar"
    run_cli("save", BASE_NAME, "-o", str(archive), "--platform", "linux/arm64", root=store_root)
    assert _tree(store_root) == before
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        root = index["manifests"][0]["digest"].split(":")[1]
        narrowed = json.load(tar.extractfile(f"blobs/sha256/{root}"))  # type: ignore[arg-type]
        names = set(tar.getnames())
    assert [m["platform"]["architecture"] for m in narrowed["manifests"]] == ["arm64"]
    fresh = tmp_path / "fresh"
    run_cli("load", "-i", str(archive), root=fresh)
    out = run_cli("imagetools", "inspect", "--format", "json", f"local:{BASE_NAME}", root=fresh).stdout
    assert "arm64" in out and "amd64" not in out
    assert all(n.startswith(("blobs", "index.json", "oci-layout")) for n in names)
