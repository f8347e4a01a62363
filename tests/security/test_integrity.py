"""RELIABILITY T10 through real commands: a blob whose bytes are not its digest, a layer whose content is not
its diff_id, an index whose platform the child config contradicts → one error line, no name, no snapshot, nothing
applied; and the limits of T9 on documents (a 100 MB config)."""

from __future__ import annotations

import json
import tarfile

import pytest

from tests.conftest import BASE_NAME
from tests.security.conftest import HOSTILE_NAME, PLATFORM, World, assert_clean_failure, chain_ids
from tests.security.hostile import File, HostileImage, gz, layer_tar, oci_archive, sha256
from tests.security.registry import HostileRegistry, registry_files

pytestmark = pytest.mark.root

MARK = [File("from-the-bad-layer", b"must not appear\n")]


def _assert_untouched(world: World, names: set[str]) -> None:
    assert world.names() == names
    left = {k: v for k, v in world.leftovers().items() if v}
    assert not left, f"left behind: {left}"


def _build_run(world: World, base: str, *extra: str):  # type: ignore[no-untyped-def]
    (world.ctx / "Dockerfile").write_text(f"FROM {base}\nRUN true\n")
    return world.cli("build", str(world.ctx), "--progress", "plain", "--platform", PLATFORM, *extra)


@pytest.mark.parametrize("lie", ["bytes", "size"])
def test_t10_blob_not_matching_its_digest_from_a_registry(world: World, lie: str) -> None:
    image = HostileImage([layer_tar(MARK)], base=world.base)
    layer = image.blobs()[3][-1]
    wrong = gz(layer_tar([File("from-the-bad-layer", b"other bytes!!!!\n")]))
    wrong = wrong[:len(layer.data)].ljust(len(layer.data), b"\0") if lie == "bytes" else layer.data + b"\0" * 4096
    with HostileRegistry(registry_files(image, "evil/img", "1", {layer.digest: wrong})) as reg:
        assert_clean_failure(world.cli("pull", "--platform", PLATFORM, f"{reg.host}/evil/img:1"))
        _assert_untouched(world, {BASE_NAME})
        assert_clean_failure(_build_run(world, f"{reg.host}/evil/img:1"))
        _assert_untouched(world, {BASE_NAME})
    assert not (world.store / "blobs" / "sha256" / layer.digest.split(":")[1]).exists()


def test_t10_archive_blob_not_matching_its_name(world: World) -> None:
    image = HostileImage([layer_tar(MARK)], base=world.base)
    path = oci_archive(image, HOSTILE_NAME, world.tmp / "evil.tar")
    layer = image.blobs()[3][-1]
    bad = world.tmp / "bad.tar"
    with tarfile.open(path) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name.endswith(layer.digest.split(":")[1]):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(m, __import__("io").BytesIO(data))
    assert_clean_failure(world.cli("load", "-i", str(bad)))
    _assert_untouched(world, {BASE_NAME})


@pytest.mark.parametrize("command", ["run", "build-run", "build-local"])
def test_t10_diff_id_mismatch(world: World, command: str) -> None:
    lying = sha256(b"not this layer")
    base = [str(d) for d in world.base.config["rootfs"]["diff_ids"]]  # type: ignore[index]
    name = world.load(HostileImage([layer_tar(MARK)], base=world.base, diff_ids=[*base, lying]))
    if command == "run":
        proc = world.cli("run", "--platform", PLATFORM, name, "true")
    elif command == "build-run":
        proc = _build_run(world, name)
    else:
        proc = _build_run(world, name, "-o", f"type=local,dest={world.out}")
    assert_clean_failure(proc)
    _assert_untouched(world, {BASE_NAME, HOSTILE_NAME})
    assert chain_ids([*base, lying])[-1] not in world.snapshot_dirs()
    assert chain_ids([*base, sha256(layer_tar(MARK))])[-1] not in world.snapshot_dirs()
    assert not (world.out / "from-the-bad-layer").exists(), "the lying layer was applied to the output"


@pytest.mark.parametrize("command", ["run", "build-run", "pull"])
def test_t10_index_platform_contradicts_config(world: World, command: str) -> None:
    """The index says linux/amd64; the child's config says linux/arm64: reject before any layer is applied."""
    image = HostileImage([layer_tar(MARK)], base=world.base, extra_config={"architecture": "arm64"},
                         index_platform={"architecture": "amd64", "os": "linux"})
    if command == "pull":
        blobs = world.blobs()
        with HostileRegistry(registry_files(image, "evil/img", "1")) as reg:
            proc = world.cli("pull", "--platform", PLATFORM, f"{reg.host}/evil/img:1")
        assert_clean_failure(proc)
        _assert_untouched(world, {BASE_NAME})
        assert world.blobs() == blobs, "a refused pull left the blobs it had fetched"
        return
    name = world.load(image)
    proc = world.cli("run", "--platform", PLATFORM, name, "true") if command == "run" else _build_run(world, name)
    assert_clean_failure(proc)
    _assert_untouched(world, {BASE_NAME, HOSTILE_NAME})
    assert not world.snapshot_dirs() & set(chain_ids([*world.base.config["rootfs"]["diff_ids"],  # type: ignore[index]
                                                       sha256(layer_tar(MARK))])[-1:])


@pytest.mark.parametrize("via", ["pull", "load"])
def test_t9_100mb_config(world: World, via: str) -> None:
    """A 100 MB config document: a clear limit error, the process stays small, nothing left behind."""
    cfg = {**world.base.config, "pad": "a" * (100 << 20)}
    cfg.pop("history", None)
    image = HostileImage([layer_tar(MARK)], base=world.base, config_bytes=json.dumps(cfg).encode())
    if via == "pull":
        with HostileRegistry(registry_files(image, "evil/img", "1")) as reg:
            proc, _, rss = world.cli_measured("pull", "--platform", PLATFORM, f"{reg.host}/evil/img:1")
    else:
        path = oci_archive(image, HOSTILE_NAME, world.tmp / "big.tar")
        proc, _, rss = world.cli_measured("load", "-i", str(path))
    assert_clean_failure(proc)
    assert rss < 200 << 20, f"peak RSS {rss >> 20} MiB reading a 100 MB config"
    _assert_untouched(world, {BASE_NAME})
