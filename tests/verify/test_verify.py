"""``polyarch verify`` on images made from Debian's busybox-static binaries of three architectures.

The "forgot GOARCH" images are made by ``goarch_images``: today by writing layers directly; when ``polyarch
build`` lands, add a parameter that builds the same two images from a Dockerfile that forgets (and then sets)
GOARCH, and every test below runs against it unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.platform import Platform
from polyarch.verify import verify_image

from .build import put_image, put_index

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")
Run = Callable[..., "object"]


def _root(images: ImageStore) -> Path:
    return images.store.root


def base_layers(busybox_tars: dict[str, Path], platform: str) -> list[bytes]:
    return [busybox_tars[platform].read_bytes()]


BROKEN_DOCKERFILE = """\
FROM base/busybox:1
# the binary was built on the CI runner (amd64) and copied into every platform: GOARCH forgotten
COPY app /usr/bin/app
"""
FIXED_DOCKERFILE = """\
FROM base/busybox:1
ARG TARGETARCH
COPY app-${TARGETARCH} /usr/bin/app
"""


@pytest.fixture(params=["layers", "build"])
def goarch_images(request: pytest.FixtureRequest, elves: dict[str, bytes], busybox_tars: dict[str, Path],
                  tmp_path: Path, run_cli: Run) -> tuple[ImageStore, str, str]:
    """(store, broken name, fixed name): an app image for three platforms whose /usr/bin/app is, in the broken
    one, the amd64 binary everywhere (the Dockerfile forgot GOARCH), in the fixed one each platform's own.
    ``layers`` writes the layers directly; ``build`` runs ``polyarch build`` on two Dockerfiles."""
    if request.param == "build":
        root = request.getfixturevalue("store_root")  # a store holding base/busybox:1
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "app").write_bytes(elves["linux/amd64"])
        for p, arch in (("linux/amd64", "amd64"), ("linux/arm64", "arm64"), ("linux/arm/v7", "arm")):
            (ctx / f"app-{arch}").write_bytes(elves[p])
        for name, text in (("app:broken", BROKEN_DOCKERFILE), ("app:fixed", FIXED_DOCKERFILE)):
            (ctx / "Dockerfile").write_text(text)
            run_cli("build", str(ctx), "--progress", "plain", "--platform", ",".join(PLATFORMS), "-t", name,
                    "--load", root=root, env={"SOURCE_DATE_EPOCH": "1700000000"})
        return ImageStore(ContentStore(root)), "app:broken", "app:fixed"
    images = ImageStore(ContentStore(tmp_path / "store"))
    for name, pick in (("app:broken", lambda p: "linux/amd64"), ("app:fixed", lambda p: p)):
        descs = [put_image(images, p, [*base_layers(busybox_tars, p),
                                       [("usr/bin/app", "file", elves[pick(p)])]]) for p in PLATFORMS]
        put_index(images, name, descs)
    return images, "app:broken", "app:fixed"


def test_forgot_goarch_is_caught_and_fix_verifies(goarch_images: tuple[ImageStore, str, str], run_cli: Run) -> None:
    images, broken, fixed = goarch_images
    proc = run_cli("verify", broken, root=_root(images), check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        "linux/arm64: /usr/bin/app: expected arm64 (aarch64), found x86-64",
        "linux/arm/v7: /usr/bin/app: expected arm/v7 (armv7), found x86-64",
    ]
    assert "2 problems" in proc.stderr
    ok = run_cli("verify", fixed, root=_root(images))
    assert ok.stdout == "" and ok.stderr.startswith("ok: app:fixed")
    assert "linux/arm64 (2 ELF)" in ok.stderr  # /bin/busybox and /usr/bin/app were both looked at


def test_json_has_the_same_facts(goarch_images: tuple[ImageStore, str, str], run_cli: Run) -> None:
    images, broken, _ = goarch_images
    proc = run_cli("verify", broken, "--format", "json", "--platform", "linux/arm64", root=_root(images),
                   check=False)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    assert [p["platform"] for p in doc["platforms"]] == ["linux/arm64"]
    assert doc["platforms"][0]["elf_files"] == 2 and doc["platforms"][0]["layers"] >= 2
    (issue,) = doc["issues"]
    assert issue == {"platform": "linux/arm64", "kind": "elf-mismatch", "path": "/usr/bin/app",
                     "message": "expected arm64 (aarch64), found x86-64", "expected": "arm64 (aarch64)",
                     "found": "x86-64", "line": "linux/arm64: /usr/bin/app: expected arm64 (aarch64), found x86-64"}


def test_verify_image_api_for_build(goarch_images: tuple[ImageStore, str, str]) -> None:
    """What ``polyarch build --verify`` calls before publishing."""
    images, broken, fixed = goarch_images
    assert verify_image(images, images.lookup(fixed)).ok
    report = verify_image(images, images.lookup(broken), platforms=[], require=[])
    assert [i.kind for i in report.issues] == ["elf-mismatch", "elf-mismatch"]


def test_arm64_descriptor_pointing_at_amd64_config(images: ImageStore, elves: dict[str, bytes],
                                                    busybox_tars: dict[str, Path], run_cli: Run) -> None:
    amd = put_image(images, "linux/amd64", base_layers(busybox_tars, "linux/amd64"))
    liar = put_image(images, "linux/arm64", base_layers(busybox_tars, "linux/amd64"), config_platform="linux/amd64")
    put_index(images, "liar:1", [amd, liar])
    proc = run_cli("verify", "liar:1", root=_root(images), check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == "linux/arm64: image config says linux/amd64, the index says linux/arm64"
    assert "linux/arm64: /bin/busybox: expected arm64 (aarch64), found x86-64" in lines


def test_normalized_platforms_are_equal(images: ImageStore, elves: dict[str, bytes]) -> None:
    """arm64 == arm64/v8 between index and config."""
    desc = put_image(images, "linux/arm64/v8", [[("bin/app", "file", elves["linux/arm64"])]],
                     config_platform="linux/arm64")
    idx = put_index(images, "v8:1", [desc])
    assert verify_image(images, idx).ok


@pytest.mark.parametrize("hide", ["whiteout", "opaque"])
def test_deleted_foreign_binary_is_not_checked(images: ImageStore, elves: dict[str, bytes],
                                               busybox_tars: dict[str, Path], hide: str, run_cli: Run) -> None:
    marker = ("opt/tools/.wh.app" if hide == "whiteout" else "opt/tools/.wh..wh..opq", "file", b"")
    desc = put_image(images, "linux/arm64", [
        *base_layers(busybox_tars, "linux/arm64"),
        [("opt/tools/app", "file", elves["linux/amd64"])],
        [("opt/tools/own", "file", elves["linux/arm64"]), marker],
    ])
    put_index(images, "hidden:1", [desc])
    proc = run_cli("verify", "hidden:1", root=_root(images))
    assert "linux/arm64 (2 ELF)" in proc.stderr  # /bin/busybox and /opt/tools/own; app is gone
    # without the deletion the same binary is reported
    desc = put_image(images, "linux/arm64", [*base_layers(busybox_tars, "linux/arm64"),
                                             [("opt/tools/app", "file", elves["linux/amd64"])]])
    put_index(images, "shown:1", [desc])
    proc = run_cli("verify", "shown:1", root=_root(images), check=False)
    assert proc.stdout == "linux/arm64: /opt/tools/app: expected arm64 (aarch64), found x86-64\n"


def test_replaced_file_is_checked_in_its_final_version(images: ImageStore, elves: dict[str, bytes]) -> None:
    fixed = put_image(images, "linux/arm64", [[("bin/app", "file", elves["linux/amd64"])],
                                              [("bin/app", "file", elves["linux/arm64"])]])
    assert verify_image(images, fixed).ok
    broken = put_image(images, "linux/arm64", [[("bin/app", "file", elves["linux/arm64"])],
                                               [("bin/app", "file", elves["linux/amd64"]),
                                                ("bin/same", "link", "bin/app")]])
    report = verify_image(images, broken)
    assert [i.path for i in report.issues] == ["/bin/app", "/bin/same"]


def test_arm_v6_vs_v7(images: ImageStore, elves: dict[str, bytes], busybox_tars: dict[str, Path],
                      run_cli: Run) -> None:
    """An armhf (ARMv7) busybox would crash a Pi Zero: flagged in linux/arm/v6, clean in linux/arm/v7."""
    v6 = put_image(images, "linux/arm/v6", base_layers(busybox_tars, "linux/arm/v7"))
    v7 = put_image(images, "linux/arm/v7", base_layers(busybox_tars, "linux/arm/v7"))
    put_index(images, "pi:1", [v6, v7])
    proc = run_cli("verify", "pi:1", root=_root(images), check=False)
    assert proc.returncode == 1
    assert proc.stdout == "linux/arm/v6: /bin/busybox: expected arm/v6 (armv6), found arm (Tag_CPU_arch v7)\n"
    assert run_cli("verify", "pi:1", "--platform", "linux/arm/v7", root=_root(images)).returncode == 0


def test_index_rules(images: ImageStore, elves: dict[str, bytes], run_cli: Run) -> None:
    arm = put_image(images, "linux/arm64", [[("bin/app", "file", elves["linux/arm64"])]])
    amd = put_image(images, "linux/amd64", [[("bin/app", "file", elves["linux/amd64"])]])
    attestation = put_image(images, "linux/amd64", [[("x.json", "file", b"{}")]]).with_platform(
        Platform("unknown", "unknown"))
    put_index(images, "multi:1", [arm, amd, attestation, amd])
    proc = run_cli("verify", "multi:1", "--require", "linux/amd64,linux/riscv64", root=_root(images), check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"unknown/unknown: manifest {attestation.digest} is listed as an index entry")
    assert lines[1].startswith("linux/amd64: listed twice")
    assert lines[2] == "linux/riscv64: required platform is not in the index"
    assert len(lines) == 3
    proc = run_cli("verify", "multi:1", "--platform", "linux/s390x", root=_root(images), check=False)
    assert "linux/s390x: platform is not in the index" in proc.stdout


def test_single_platform_image_and_require(images: ImageStore, elves: dict[str, bytes], run_cli: Run) -> None:
    desc = put_image(images, "linux/arm64", [[("bin/app", "file", elves["linux/arm64"])]])
    images.set_name("single:1", desc)
    assert run_cli("verify", "single:1", root=_root(images)).returncode == 0
    proc = run_cli("verify", "single:1", "--require", "linux/amd64", root=_root(images), check=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith("linux/amd64: required platform is not in the image")


def test_oci_layout_paths(goarch_images: tuple[ImageStore, str, str], tmp_path: Path, run_cli: Run) -> None:
    """Any OCI layout directory: PATH (one image), PATH:TAG, oci-layout://PATH[:TAG]."""
    images, broken, fixed = goarch_images
    root = _root(images)
    elsewhere = tmp_path / "empty-root"
    assert run_cli("verify", f"{root}:{fixed}", root=elsewhere).returncode == 0
    assert run_cli("verify", f"oci-layout://{root}:{broken}", root=elsewhere, check=False).returncode == 1
    proc = run_cli("verify", str(root), root=elsewhere, check=False)
    assert proc.returncode == 1 and "holds several images" in proc.stderr and "hint:" in proc.stderr
    one = ImageStore(ContentStore(tmp_path / "one"))
    desc = put_image(one, "linux/arm64", [[("bin/app", "file", b"#!/bin/sh\n" * 10)]])
    one.update(lambda entries: [desc])  # a layout whose index.json lists one image, without a name
    assert run_cli("verify", str(tmp_path / "one"), root=elsewhere).returncode == 0
    assert run_cli("verify", f"oci-layout://{tmp_path / 'one'}", root=elsewhere).returncode == 0


def test_broken_blobs_are_reported_not_crashed(images: ImageStore, elves: dict[str, bytes], run_cli: Run) -> None:
    good = put_image(images, "linux/arm64", [[("bin/app", "file", elves["linux/arm64"])]])
    manifest = images.image(good).manifest
    layer_path = images.store.blob_path(manifest.layers[0].digest)
    data = bytearray(layer_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer_path.chmod(0o644)
    layer_path.write_bytes(bytes(data))
    put_index(images, "corrupt:1", [good])
    proc = run_cli("verify", "corrupt:1", root=_root(images), check=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith("linux/arm64: layer 1: ")
    layer_path.unlink()
    proc = run_cli("verify", "corrupt:1", "--format", "json", root=_root(images), check=False)
    assert json.loads(proc.stdout)["issues"][0]["kind"] == "missing-blob"


def test_diff_id_mismatch_and_unsafe_layer(images: ImageStore, elves: dict[str, bytes]) -> None:
    from polyarch import platform as plat
    from polyarch.oci.spec import ImageConfig

    from .build import tar_bytes, write_layer

    layer = write_layer(images.store, tar_bytes([("bin/app", "file", elves["linux/arm64"])]))
    other = write_layer(images.store, tar_bytes([("bin/other", "file", b"x")]))
    config = ImageConfig(architecture="arm64", os="linux", diff_ids=(other.diff_id,))
    desc = images.put_image(config, [layer.descriptor]).with_platform(plat.parse("linux/arm64"))
    report = verify_image(images, images.put_index([desc]))
    assert [i.kind for i in report.issues] == ["integrity"]
    assert "diff_id" in report.issues[0].message
    unsafe = put_image(images, "linux/arm64", [[("../../etc/x", "file", b"x")]])
    report = verify_image(images, images.put_index([unsafe]))
    assert [(i.kind, i.path) for i in report.issues] == [("invalid-layer", "layer 1")]
    bomb = put_image(images, "linux/arm64", [[("big", "file", bytes(4 << 20))]])
    report = verify_image(images, images.put_index([bomb]), decompress_limit=1 << 20)
    assert [i.kind for i in report.issues] == ["invalid-layer"] and "limit" in report.issues[0].message


def test_zstd_and_uncompressed_layers(images: ImageStore, elves: dict[str, bytes]) -> None:
    for compression in ("zstd", "none"):
        desc = put_image(images, "linux/arm64", [[("bin/app", "file", elves["linux/amd64"])]],
                         compression=compression)
        report = verify_image(images, images.put_index([desc]))
        assert [i.path for i in report.issues] == ["/bin/app"], compression


def test_ignore_patterns(images: ImageStore, elves: dict[str, bytes], run_cli: Run) -> None:
    desc = put_image(images, "linux/amd64", [[("usr/aarch64-linux-gnu/lib/libc.so.6", "file", elves["linux/arm64"]),
                                              ("usr/lib/firmware/dsp.elf", "file", elves["linux/arm/v7"])]])
    put_index(images, "cross:1", [desc])
    proc = run_cli("verify", "cross:1", root=_root(images), check=False)
    assert proc.stdout == ("linux/amd64: /usr/aarch64-linux-gnu/lib/libc.so.6: expected amd64 (x86-64), "
                           "found aarch64\n")
    assert run_cli("verify", "cross:1", "--ignore", "/usr/aarch64-linux-gnu/*", root=_root(images)).returncode == 0


@pytest.mark.parametrize(("args", "code", "needle"), [
    (("verify", "localhost:1/nope:1"), 1, "no image named 'localhost:1/nope:1' in the local store, and localhost:1 "
                                          "cannot be asked"),
    (("verify", "Not A Ref"), 1, "no image named 'Not A Ref' in the local store"),
    (("verify", "oci-layout:///does/not/exist"), 1, "not an OCI image layout"),
    (("verify", "x", "--platform", "linux/armv99x"), 1, "invalid platform"),
    (("verify",), 2, "Missing argument"),
])
def test_bad_input(args: tuple[str, ...], code: int, needle: str, tmp_path: Path, run_cli: Run) -> None:
    proc = run_cli(*args, root=tmp_path / "root", check=False, env={"POLYARCH_REGISTRY_RETRIES": "0"})
    assert proc.returncode == code
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_imported_base_image_is_clean(base_root: Path, run_cli: Run) -> None:
    """``polyarch import`` of Debian's busybox-static for three platforms gives an image verify accepts."""
    proc = run_cli("verify", "base/busybox:1", "--require", "linux/amd64,linux/arm64,linux/arm/v7", root=base_root)
    assert "linux/arm/v7 (1 ELF)" in proc.stderr


def test_docker_media_types(images: ImageStore, elves: dict[str, bytes]) -> None:
    """Docker v2 schema 2 manifest lists and manifests are read the same way."""
    from polyarch import platform as plat
    from polyarch.oci.spec import ImageConfig

    from .build import tar_bytes, write_layer

    descs = []
    for p in ("linux/amd64", "linux/arm64"):
        layer = write_layer(images.store, tar_bytes([("bin/app", "file", elves["linux/amd64"])]))
        pp = plat.parse(p)
        config = ImageConfig(architecture=pp.architecture, os=pp.os, diff_ids=(layer.diff_id,))
        layer_desc = layer.descriptor
        docker_layer = type(layer_desc)("application/vnd.docker.image.rootfs.diff.tar.gzip", layer_desc.digest,
                                        layer_desc.size)
        descs.append(images.put_image(config, [docker_layer], oci=False).with_platform(pp))
    index = images.put_index(descs, oci=False)
    report = verify_image(images, index)
    assert report.media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert [i.line() for i in report.issues] == ["linux/arm64: /bin/app: expected arm64 (aarch64), found x86-64"]
