"""The local image store through the CLI, as a user runs it, with skopeo as an independent reader."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.conftest import BASE_NAME, run_cli


def _tree(root: Path) -> dict[str, str]:
    """Every file under root with its sha256: a store snapshot for 'nothing changed' checks."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "index.json.lock":
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_base_image_has_three_platforms(base_root: Path) -> None:
    out = run_cli("images", "--format", "json", root=base_root).stdout
    rows = json.loads(out)
    assert [r["name"] for r in rows] == [BASE_NAME]
    assert rows[0]["platforms"] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert rows[0]["complete"] is True


def test_normalized_names_resolve(base_root: Path) -> None:
    a = run_cli("inspect", "--raw", BASE_NAME, root=base_root).stdout
    b = run_cli("inspect", "--raw", "docker.io/base/busybox:1", root=base_root).stdout
    assert a == b


@pytest.mark.skopeo
def test_skopeo_reads_the_store(base_root: Path, tmp_path: Path) -> None:
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{base_root}:{BASE_NAME}"], capture_output=True,
                         text=True, check=True).stdout
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    plats = [(m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant", ""))
             for m in index["manifests"]]
    assert plats == [("linux", "amd64", ""), ("linux", "arm64", ""), ("linux", "arm", "v7")]
    ours = run_cli("inspect", "--raw", BASE_NAME, root=base_root).stdout.strip()
    assert json.loads(ours) == index
    subprocess.run(["skopeo", "copy", "--all", f"oci:{base_root}:{BASE_NAME}", f"dir:{tmp_path / 'copy'}"],
                   check=True, capture_output=True)
    assert (tmp_path / "copy" / "manifest.json").exists()


@pytest.mark.skopeo
def test_save_formats_read_by_skopeo(base_root: Path, tmp_path: Path) -> None:
    oci = tmp_path / "img.oci.tar"
    run_cli("save", BASE_NAME, "-o", str(oci), root=base_root)
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{oci}"], capture_output=True, text=True,
                         check=True).stdout
    assert len(json.loads(raw)["manifests"]) == 3
    docker = tmp_path / "img.docker.tar"
    run_cli("save", BASE_NAME, "-o", str(docker), "--format", "docker", "--platform", "linux/arm64", root=base_root)
    info = json.loads(subprocess.run(["skopeo", "inspect", f"docker-archive:{docker}"], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["Architecture"] == "arm64"
    assert info["RepoTags"] == [] or "base/busybox" in json.dumps(info)


def test_save_load_round_trip(base_root: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    run_cli("save", BASE_NAME, "-o", str(archive), root=base_root)
    fresh = tmp_path / "fresh"
    out = run_cli("load", "-i", str(archive), root=fresh).stdout
    assert f"Loaded image: {BASE_NAME}" in out
    assert run_cli("inspect", "--raw", BASE_NAME, root=fresh).stdout == \
        run_cli("inspect", "--raw", BASE_NAME, root=base_root).stdout
    docker = tmp_path / "d.tar"
    run_cli("save", BASE_NAME, "-o", str(docker), "--format", "docker", "--platform", "linux/arm/v7", root=base_root)
    out = run_cli("load", "-i", str(docker), root=fresh).stdout
    assert "Loaded image: base/busybox:1" in out
    rows = json.loads(run_cli("images", "--format", "json", root=fresh).stdout)
    assert rows[0]["platforms"] == ["linux/arm/v7"]


def test_import_is_reproducible(busybox_tars: dict[str, Path], tmp_path: Path) -> None:
    digests = []
    for i in range(2):
        out = run_cli("import", "--platform", f"linux/arm64={busybox_tars['linux/arm64']}", "-t", "x/y:1",
                      root=tmp_path / f"r{i}", env={"SOURCE_DATE_EPOCH": "1234567890"}).stdout
        digests.append(out.strip())
    assert digests[0] == digests[1]
    cfg = json.loads(run_cli("inspect", "x/y:1", root=tmp_path / "r0").stdout)
    assert cfg["manifests"][0]["created"] == "2009-02-13T23:31:30Z"


def test_import_gzip_zstd_inputs_and_append(busybox_tars: dict[str, Path], tmp_path: Path) -> None:
    import zstandard

    gz = tmp_path / "a.tar.gz"
    gz.write_bytes(gzip.compress(busybox_tars["linux/amd64"].read_bytes()))
    zst = tmp_path / "b.tar.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(busybox_tars["linux/arm64"].read_bytes()))
    root = tmp_path / "r"
    run_cli("import", "--platform", f"linux/amd64={gz}", "-t", "m:1", "--compression", "zstd", root=root)
    run_cli("import", "--append", "--platform", f"linux/arm64={zst}", "-t", "m:1", root=root)
    rows = json.loads(run_cli("images", "--format", "json", root=root).stdout)
    assert rows[0]["platforms"] == ["linux/amd64", "linux/arm64"]
    doc = json.loads(run_cli("inspect", "m:1", root=root).stdout)
    assert doc["manifests"][0]["layers"][0]["mediaType"].endswith("+zstd")
    assert doc["manifests"][1]["layers"][0]["mediaType"].endswith("+gzip")


def test_tag_rm_prune(store_root: Path) -> None:
    run_cli("tag", BASE_NAME, "other:2", root=store_root)
    run_cli("rm", BASE_NAME, root=store_root)
    assert [r["name"] for r in json.loads(run_cli("images", "--format", "json", root=store_root).stdout)] == ["other:2"]
    assert "deleted 0 blobs" in run_cli("prune", "--grace", "0", root=store_root).stdout
    run_cli("rm", "other:2", root=store_root)
    out = run_cli("prune", "--grace", "0", root=store_root).stdout
    assert "deleted 10 blobs" in out  # 3 layers + 3 configs + 3 manifests + 1 index
    assert not list((store_root / "blobs" / "sha256").iterdir())


# --- bad input: one line, non-zero exit, store unchanged -------------------------------------------------

def _assert_one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr
    after = proc.stderr.split(errors[0], 1)[1].strip().splitlines()
    assert all(line.startswith("hint: ") for line in after), proc.stderr


@pytest.mark.parametrize("case", ["truncated", "not-tar", "bad-platform", "uppercase-ref", "traversal"])
def test_import_bad_input(case: str, store_root: Path, busybox_tars: dict[str, Path], tmp_path: Path) -> None:
    good = busybox_tars["linux/arm64"]
    bad = tmp_path / "bad.tar"
    platform, ref, fragment = "linux/arm64", "ok/ref:1", ""
    if case == "truncated":
        bad.write_bytes(good.read_bytes()[: 700_000])
        fragment = "tar"
    elif case == "not-tar":
        bad.write_bytes(b"this is not a tar archive\n" * 100)
        fragment = "not a valid tar archive"
    elif case == "bad-platform":
        bad, platform, fragment = good, "linux/arm65", "unknown architecture 'arm65'"
    elif case == "uppercase-ref":
        bad, ref, fragment = good, "Ok/Ref:1", "lowercase"
    else:
        import io
        import tarfile

        with tarfile.open(bad, "w") as t:
            info = tarfile.TarInfo("../../escape")
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
        fragment = "escapes the root"
    before = _tree(store_root)
    proc = run_cli("import", "--platform", f"{platform}={bad}", "--platform", f"linux/amd64={busybox_tars['linux/amd64']}",
                   "-t", ref, root=store_root, check=False)
    _assert_one_line_error(proc, fragment)
    assert _tree(store_root) == before


def test_unwritable_root_error(tmp_path: Path, busybox_tars: dict[str, Path]) -> None:
    (tmp_path / "file").write_text("x")
    proc = run_cli("images", root=tmp_path / "file" / "store", check=False)
    _assert_one_line_error(proc, "cannot initialise the layout")
    if os.geteuid() == 0 and shutil.which("mount"):
        ro = tmp_path / "ro"
        ro.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)]).returncode == 0:
            try:
                proc = run_cli("import", "--platform", f"linux/amd64={busybox_tars['linux/amd64']}", "-t", "a:1",
                               root=ro, check=False)
                _assert_one_line_error(proc, "Read-only file system")
            finally:
                subprocess.run(["umount", str(ro)])


def test_blob_not_matching_digest_is_rejected(store_root: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    run_cli("save", BASE_NAME, "-o", str(archive), root=store_root)
    # Corrupt one layer blob inside the archive (same size, different bytes).
    import tarfile

    tampered = tmp_path / "t.tar"
    with tarfile.open(archive) as tin, tarfile.open(tampered, "w") as tout:
        biggest = max((m for m in tin.getmembers() if m.isreg()), key=lambda m: m.size)
        for m in tin.getmembers():
            f = tin.extractfile(m) if m.isreg() else None
            if m.name == biggest.name and f is not None:
                data = bytearray(f.read())
                data[100] ^= 0xFF
                import io

                f = io.BytesIO(bytes(data))
            tout.addfile(m, f)
    fresh = tmp_path / "fresh"
    run_cli("images", root=fresh)
    before = _tree(fresh)
    proc = run_cli("load", "-i", str(tampered), root=fresh, check=False)
    _assert_one_line_error(proc, "hashes to")
    assert _tree(fresh) == before
    # A blob corrupted inside the store itself is detected on read.
    index = json.loads((store_root / "index.json").read_text())["manifests"][0]["digest"].split(":")[1]
    (store_root / "blobs" / "sha256" / index).write_bytes(b"{}")
    proc = run_cli("inspect", BASE_NAME, root=store_root, check=False)
    _assert_one_line_error(proc, "does not match its digest")


def test_usage_error_exit_2(base_root: Path) -> None:
    proc = run_cli("images", "--no-such-flag", root=base_root, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_debug_shows_traceback(tmp_path: Path) -> None:
    proc = run_cli("--debug", "inspect", "nope:1", root=tmp_path / "r", check=False)
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    proc = run_cli("inspect", "nope:1", root=tmp_path / "r", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "no image named" in proc.stderr


def test_version_and_help_fast() -> None:
    assert run_cli("--version").stdout.startswith("polyarch, version")
    out = run_cli("--help").stdout
    assert "import" in out and "images" in out


def test_ctx_exit_code_is_kept() -> None:
    import click

    from polyarch.cli import main as cli_main

    @click.command()
    @click.pass_context
    def failing(ctx: click.Context) -> None:
        ctx.exit(3)

    cli_main.cli.add_command(failing, "failing-for-test")
    try:
        with pytest.raises(SystemExit) as info:
            cli_main.main(["failing-for-test"])
        assert info.value.code == 3
    finally:
        cli_main.cli.commands.pop("failing-for-test", None)
