"""``load_archive`` refuses a config blob over ``MAX_CONFIG`` (RELIABILITY T9) in OCI and docker archives, before
it is stored: the store is left as it was."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from tests.security.hostile import File, HostileImage, Sym, layer_tar, oci_archive, sha256

from polyarch.content.images import MAX_CONFIG, ImageStore
from polyarch.content.loader import load_archive
from polyarch.content.store import ContentStore
from polyarch.errors import DigestMismatch, LimitExceeded


def _big_config(n: int = MAX_CONFIG + 1) -> bytes:
    head = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"pad":"'
    return head + b"a" * (n - len(head) - 2) + b'"}'


def _state(store: ContentStore) -> tuple[list[object], bytes]:
    return sorted(store.list()), (store.root / "index.json").read_bytes()


def _add(tar: tarfile.TarFile, name: str, data: bytes, size: int | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    tar.addfile(info, io.BytesIO(data))


def test_oci_archive_with_a_config_over_the_cap_is_refused(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    before = _state(store)
    image = HostileImage([], config_bytes=_big_config())
    with pytest.raises(LimitExceeded, match="config"):
        load_archive(ImageStore(store), oci_archive(image, "big:1", tmp_path / "a.tar"))
    assert _state(store) == before
    assert not list((store.root / "ingest").iterdir())


def test_oci_archive_config_larger_than_declared_is_refused(tmp_path: Path) -> None:
    """The manifest says 100 bytes; the archive member has more: ingest stops at the declared size."""
    store = ContentStore(tmp_path / "store")
    before = _state(store)
    big = _big_config()
    cfg_desc = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(big), "size": 100}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": cfg_desc, "layers": []}).encode()
    top = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                              "digest": sha256(manifest), "size": len(manifest)}]}
    path = tmp_path / "lying.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "index.json", json.dumps(top).encode())
        _add(tar, "blobs/sha256/" + sha256(manifest).split(":")[1], manifest)
        _add(tar, "blobs/sha256/" + sha256(big).split(":")[1], big)
    with pytest.raises(DigestMismatch):
        load_archive(ImageStore(store), path)
    assert _state(store) == before


def test_docker_archive_with_a_config_over_the_cap_is_refused(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    before = _state(store)
    path = tmp_path / "docker.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "manifest.json", json.dumps([{"Config": "c.json", "Layers": [], "RepoTags": ["big:1"]}]).encode())
        _add(tar, "c.json", _big_config())
    with pytest.raises(LimitExceeded, match=r"c\.json"):
        load_archive(ImageStore(store), path)
    assert _state(store) == before


def test_config_at_the_cap_loads(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    layer = layer_tar([File("a"), Sym("b", "a")])
    cfg = _big_config(MAX_CONFIG)
    cfg = cfg.replace(b'"diff_ids":[]', b'"diff_ids":["' + sha256(layer).encode() + b'"]')[:MAX_CONFIG - 2] + b'"}'
    image = HostileImage([layer], config_bytes=cfg)
    assert [x.name for x in load_archive(ImageStore(store), oci_archive(image, "ok:1", tmp_path / "a.tar"))] == ["ok:1"]
