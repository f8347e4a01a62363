"""docker-compatible commands through the real CLI (issue 16 item 8) and ``--format json`` everywhere (item 10):
rmi, images -q/--filter/--format, save of several images and to stdout, load from stdin, untagged archives,
push/pull -a and imagetools create -p/--prefer-index/--metadata-file/--append against Debian's docker-registry,
run pulling a missing image."""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import BASE_NAME, run_cli
from tests.registry.refregistry import RefRegistry, start_registry

from polyarch import platform as plat
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.oci.config import ContainerConfig, ImageConfig
from polyarch.oci.spec import Descriptor, MediaType


def _layer(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_image(root: Path, name: str | None, *, platforms: tuple[str, ...] = ("linux/amd64",),
               created: str = "2024-01-01T00:00:00Z", labels: dict[str, str] | None = None,
               seed: int = 0) -> Descriptor:
    """A small image (one layer per platform) named ``name`` (unnamed when None) in the store at ``root``."""
    images = ImageStore(ContentStore(root))
    rng = random.Random(seed)
    manifests = []
    for text in platforms:
        p = plat.parse(text)
        blob = _layer(f"{p.slug}.bin", rng.randbytes(2000))
        digest, size = images.store.write(blob)
        config = ImageConfig(architecture=p.architecture, os=p.os, variant=p.variant, created=created,
                             config=ContainerConfig(cmd=("/bin/sh",), labels=labels or {}),
                             diff_ids=(Digest.of(blob),))
        manifests.append(images.put_image(config, [Descriptor(MediaType.OCI_LAYER, digest, size)]))
    root_desc = images.put_index(manifests) if len(manifests) > 1 else manifests[0]
    if name:
        images.set_name(name, root_desc)
    else:
        images.update(lambda entries: [*entries, root_desc])
    return root_desc


# --- rmi, images -q / --filter / --format ------------------------------------------------------------------------

@pytest.fixture
def three(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    make_image(root, "app:1", created="2024-01-01T00:00:00Z", labels={"tier": "web"}, seed=1)
    make_image(root, "app:2", created="2024-02-01T00:00:00Z", labels={"tier": "db"}, seed=2)
    make_image(root, "registry.lan/tools/x:dev", created="2024-03-01T00:00:00Z",
               platforms=("linux/amd64", "linux/arm64"), seed=3)
    make_image(root, None, created="2024-04-01T00:00:00Z", seed=4)
    return root


def _lines(*args: str, root: Path) -> list[str]:
    return run_cli(*args, root=root).stdout.splitlines()


def test_images_quiet_filters_and_templates(three: Path) -> None:
    ids = _lines("images", "-q", root=three)
    assert len(ids) == 4 and all(len(i) == 12 for i in ids)
    assert _lines("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=app", root=three) == \
        ["app:1", "app:2"]
    assert _lines("images", "--format", "{{.Repository}}:{{.Tag}}", "app:2", root=three) == ["app:2"]
    assert _lines("images", "--format", "{{.Tag}}", "-f", "reference=registry.lan/*/*", root=three) == ["dev"]
    assert _lines("images", "--format", "{{.Tag}}", "-f", "label=tier=db", root=three) == ["2"]
    assert _lines("images", "--format", "{{.Tag}}", "-f", "label=tier", root=three) == ["1", "2"]
    assert _lines("images", "--format", "{{.Tag}}", "-f", "before=app:2", root=three) == ["1"]
    assert _lines("images", "--format", "{{.Tag}}", "-f", "since=app:2", "-f", "dangling=false", root=three) == \
        ["dev"]
    dangling = _lines("images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}", "-f", "dangling=true", root=three)
    assert len(dangling) == 1 and dangling[0].startswith("<none> <none> ")
    # the dangling image's ID works wherever a name does
    image_id = dangling[0].split()[2]
    run_cli("tag", image_id, "named:1", root=three)
    assert _lines("images", "-q", "named", root=three) == [image_id]
    rows = [json.loads(line) for line in _lines("images", "--format", "{{json .}}", root=three)]
    assert {"Repository", "Tag", "ID", "Digest", "CreatedAt", "Size"} <= set(rows[0])
    table = _lines("images", "--format", "table {{.Repository}}\\t{{.Tag}}", "app", root=three)
    assert table[0].split() == ["REPOSITORY", "TAG"] and table[1].split() == ["app", "1"]
    assert table[1].index("1") == table[0].index("TAG")  # aligned columns
    full = _lines("images", "-q", "--no-trunc", "app:1", root=three)
    assert full[0].startswith("sha256:") and len(full[0]) == 71


@pytest.mark.parametrize("args, message", [
    (("--filter", "colour=red"), "invalid filter 'colour=red'"),
    (("--filter", "dangling=maybe"), "expected true or false"),
    (("--filter", "before=nope:1"), "no image named 'nope:1'"),
    (("--format", "{{.Nope}}"), "can't evaluate field Nope"),
    (("--format", "{{range .}}x{{end}}"), "unsupported --format action"),
    (("--format", "{{.ID"), "unbalanced"),
])
def test_images_bad_filter_or_format_is_one_error(three: Path, args: tuple[str, ...], message: str) -> None:
    proc = run_cli("images", *args, root=three, check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and message in proc.stderr and "Traceback" not in proc.stderr


def test_rmi_is_rm_and_removes_unnamed_by_id(three: Path) -> None:
    out = run_cli("rmi", "app:1", root=three).stdout
    assert out.startswith("Untagged: app:1")
    image_id = _lines("images", "-q", "-f", "dangling=true", root=three)[0]
    assert run_cli("rmi", image_id, root=three).stdout.startswith("Deleted: sha256:")
    assert _lines("images", "--format", "{{.Repository}}:{{.Tag}}", root=three) == ["app:2", "registry.lan/tools/x:dev"]
    proc = run_cli("rmi", "app:1", root=three, check=False)
    assert proc.returncode != 0 and proc.stderr.startswith("error: no image named 'app:1'")


# --- save / load -------------------------------------------------------------------------------------------------

def test_save_several_to_stdout_and_load_from_stdin(three: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    # no -o and stdout not a terminal: the archive goes to stdout
    data = subprocess.run([sys.executable, "-m", "polyarch", "save", "app:1", "registry.lan/tools/x:dev"],
                          capture_output=True, check=True, env={**__import__("os").environ,
                                                                "POLYARCH_ROOT": str(three)}).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == \
        ["app:1", "registry.lan/tools/x:dev"]
    fresh = tmp_path / "fresh"
    proc = subprocess.run([sys.executable, "-m", "polyarch", "load"], input=data, capture_output=True, check=True,
                          env={**__import__("os").environ, "POLYARCH_ROOT": str(fresh)})
    assert proc.stdout.decode().splitlines() == ["Loaded image: app:1", "Loaded image: registry.lan/tools/x:dev"]
    for name in ("app:1", "registry.lan/tools/x:dev"):
        assert run_cli("inspect", "--raw", name, root=fresh).stdout == run_cli("inspect", "--raw", name,
                                                                                root=three).stdout
    # docker archive of two images to '-o -', loaded with '-i -'
    docker = subprocess.run([sys.executable, "-m", "polyarch", "save", "--format", "docker", "-o", "-", "app:1",
                             "app:2", "--platform", "linux/amd64"], capture_output=True, check=True,
                            env={**__import__("os").environ, "POLYARCH_ROOT": str(three)}).stdout
    with tarfile.open(fileobj=io.BytesIO(docker)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert [m["RepoTags"] for m in manifest] == [["app:1"], ["app:2"]]
    out = run_cli("load", "-i", "-", root=tmp_path / "d", input=None, check=False)
    assert out.returncode != 0  # an empty stdin is not an archive: one error line
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    proc = subprocess.run([sys.executable, "-m", "polyarch", "load", "-i", "-"], input=docker, capture_output=True,
                          check=True, env={**__import__("os").environ, "POLYARCH_ROOT": str(tmp_path / "d")})
    assert proc.stdout.decode().splitlines() == ["Loaded image: app:1", "Loaded image: app:2"]


def _untagged_docker_archive(store: Path, name: str, dest: Path) -> str:
    """A docker-archive without RepoTags (and without index.json), as 'docker save IMAGE_ID' writes; returns
    the config digest."""
    run_cli("save", "--format", "docker", "--platform", "linux/amd64", "-o", str(dest), name, root=store)
    out = io.BytesIO()
    with tarfile.open(dest) as src, tarfile.open(fileobj=out, mode="w") as tar:
        for member in src.getmembers():
            if member.name in ("index.json", "oci-layout"):
                continue
            f = src.extractfile(member) if member.isreg() else None
            if member.name == "manifest.json":
                entries = json.load(f)  # type: ignore[arg-type]
                entries[0]["RepoTags"] = None
                config = entries[0]["Config"]
                body = json.dumps(entries).encode()
                member.size = len(body)
                f = io.BytesIO(body)
            tar.addfile(member, f)
    dest.write_bytes(out.getvalue())
    return "sha256:" + config.rsplit("/", 1)[1]


def test_untagged_docker_archive_loads_under_its_image_id(three: Path, tmp_path: Path) -> None:
    archive = tmp_path / "untagged.tar"
    config = _untagged_docker_archive(three, "app:2", archive)
    fresh = tmp_path / "fresh"
    assert run_cli("load", "-i", str(archive), root=fresh).stdout == f"Loaded image ID: {config}\n"
    assert run_cli("load", "-i", str(archive), root=fresh).stdout == f"Loaded image ID: {config}\n"
    assert _lines("images", "-q", "--no-trunc", root=fresh) == [config]  # loaded twice, listed once
    for ref in (config, config[7:19]):
        inspected = json.loads(run_cli("inspect", ref, root=fresh).stdout)
        assert inspected["manifests"][0]["config"] == config
    run_cli("tag", config[:19], "again:1", root=fresh)
    assert _lines("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", "again", root=fresh) == \
        [f"again:1 {config[7:19]}"]


# --- registry: push/pull -a, imagetools create ----------------------------------------------------------------

@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefRegistry]:
    if shutil.which("docker-registry") is None:
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
    reg = start_registry(tmp_path_factory.mktemp("compat-registry"))
    yield reg
    reg.stop()


@pytest.mark.registry
def test_push_and_pull_all_tags(three: Path, registry: RefRegistry, tmp_path: Path) -> None:
    reg = registry.host
    run_cli("tag", "app:1", f"{reg}/compat/app:1", f"{reg}/compat/app:latest", root=three)
    run_cli("tag", "app:2", f"{reg}/compat/app:2", f"{reg}/compat/other:9", root=three)
    out = run_cli("push", "-a", f"{reg}/compat/app", "--progress", "quiet", root=three).stdout
    assert [line.split(": pushed")[0] for line in out.splitlines() if ": pushed" in line] == \
        [f"{reg}/compat/app:1", f"{reg}/compat/app:2", f"{reg}/compat/app:latest"]
    fresh = tmp_path / "fresh"
    out = run_cli("pull", "--all-tags", f"{reg}/compat/app", "--progress", "quiet", root=fresh).stdout
    assert [line.split(": pulled")[0] for line in out.splitlines() if ": pulled" in line] == \
        [f"{reg}/compat/app:1", f"{reg}/compat/app:2", f"{reg}/compat/app:latest"]
    assert _lines("images", "--format", "{{.Tag}}", root=fresh) == ["1", "2", "latest"]
    assert _lines("images", "-q", f"{reg}/compat/app:1", root=fresh) == \
        _lines("images", "-q", f"{reg}/compat/app:1", root=three)
    for args, message in ((("pull", "-a", f"{reg}/compat/app:1"), "--all-tags takes a repository"),
                          (("push", "-a", f"{reg}/compat/app:1"), "--all-tags takes one repository"),
                          (("push", "-a", f"{reg}/compat/none"), "no tag of"),
                          (("pull", "-a", f"{reg}/compat/none"), "error: ")):
        proc = run_cli(*args, root=fresh, check=False)
        assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def _index(reg: str, ref: str, root: Path) -> dict:
    return json.loads(run_cli("imagetools", "inspect", "--raw", f"{reg}/{ref}", root=root).stdout)


def _plats(index: dict) -> list[str]:
    return [f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]]


@pytest.mark.registry
def test_imagetools_create_platform_filter_prefer_index_metadata(tmp_path: Path, registry: RefRegistry) -> None:
    reg = registry.host
    root = tmp_path / "s"
    make_image(root, f"{reg}/it/multi:1", platforms=("linux/amd64", "linux/arm64", "linux/riscv64"), seed=5)
    make_image(root, f"{reg}/it/single:1", platforms=("linux/arm64",), seed=6)
    run_cli("push", f"{reg}/it/multi:1", root=root)
    run_cli("push", f"{reg}/it/single:1", root=root)
    meta = tmp_path / "meta.json"
    out = run_cli("imagetools", "create", "-p", "linux/amd64,linux/riscv64", "-t", f"{reg}/it/two:1",
                  "--metadata-file", str(meta), f"{reg}/it/multi:1", root=root).stdout
    index = _index(reg, "it/two:1", root)
    assert _plats(index) == ["linux/amd64", "linux/riscv64"]
    doc = json.loads(meta.read_text())
    assert doc["containerimage.digest"] == out.split()[-1]
    assert doc["containerimage.descriptor"]["digest"] == doc["containerimage.digest"]
    assert doc["image.name"] == f"{reg}/it/two:1"
    # one single-platform source: an index by default, the manifest itself with --prefer-index=false
    run_cli("imagetools", "create", "-t", f"{reg}/it/pi:1", f"{reg}/it/single:1", root=root)
    assert "manifests" in _index(reg, "it/pi:1", root)
    out = run_cli("imagetools", "create", "--prefer-index=false", "-t", f"{reg}/it/pi:2", f"{reg}/it/single:1",
                  root=root).stdout
    assert "pushed manifest" in out
    assert _index(reg, "it/pi:2", root) == _index(reg, "it/single:1", root)
    proc = run_cli("imagetools", "create", "-p", "linux/s390x", "-t", f"{reg}/it/none:1", f"{reg}/it/multi:1",
                   root=root, check=False)
    assert proc.returncode != 0 and "no source has an image for linux/s390x" in proc.stderr


@pytest.mark.registry
def test_imagetools_append_replaces_a_platform(tmp_path: Path, registry: RefRegistry) -> None:
    reg = registry.host
    root = tmp_path / "s"
    make_image(root, f"{reg}/ap/app:1", platforms=("linux/amd64", "linux/arm64"), seed=7)
    make_image(root, f"{reg}/ap/new-arm:1", platforms=("linux/arm64",), seed=8)
    make_image(root, f"{reg}/ap/riscv:1", platforms=("linux/riscv64",), seed=9)
    for name in ("app", "new-arm", "riscv"):
        run_cli("push", f"{reg}/ap/{name}:1", root=root)
    before = _index(reg, "ap/app:1", root)
    new_arm = json.loads(run_cli("imagetools", "inspect", "--format", "json", f"{reg}/ap/new-arm:1",
                                 root=root).stdout)["digest"]
    run_cli("imagetools", "create", "--append", "-t", f"{reg}/ap/app:1", f"{reg}/ap/new-arm:1",
            f"{reg}/ap/riscv:1", root=root)
    after = _index(reg, "ap/app:1", root)
    assert _plats(after) == ["linux/amd64", "linux/arm64", "linux/riscv64"]
    assert after["manifests"][0]["digest"] == before["manifests"][0]["digest"]
    assert after["manifests"][1]["digest"] == new_arm != before["manifests"][1]["digest"]
    # polyarch's own verify accepts the result (no duplicate platform)
    proc = run_cli("verify", "--format", "json", f"{reg}/ap/app:1", root=root, check=False)
    assert proc.returncode == 0 and "duplicate-platform" not in proc.stdout, proc.stdout


# --- run pulls a missing image ----------------------------------------------------------------------------------

@pytest.mark.registry
def test_run_pulls_a_missing_image_for_the_host(store_root: Path, registry: RefRegistry, tmp_path: Path) -> None:
    reg = registry.host
    run_cli("tag", BASE_NAME, f"{reg}/run/busybox:1", root=store_root)
    run_cli("push", f"{reg}/run/busybox:1", root=store_root)
    fresh = tmp_path / "fresh"
    proc = run_cli("run", f"{reg}/run/busybox:1", "uname", "-m", root=fresh)
    assert proc.stdout.strip() == {"amd64": "x86_64", "arm64": "aarch64"}.get(plat.host().architecture,
                                                                          proc.stdout.strip())
    assert f"Pulling {reg}/run/busybox:1 ({plat.host()})" in proc.stderr
    assert _lines("images", "--format", "{{.Platforms}}", root=fresh) == [str(plat.host())]
    # present now: no second pull
    assert "Pulling" not in run_cli("run", f"{reg}/run/busybox:1", "true", root=fresh).stderr
    proc = run_cli("run", "--pull", "never", f"{reg}/run/absent:1", "true", root=fresh, check=False)
    assert proc.returncode != 0 and "no image named" in proc.stderr


# --- --format json everywhere ------------------------------------------------------------------------------------

def test_every_format_json_prints_json(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("ARG BASE=scratch\nFROM ${BASE} AS base\n# final the image\nFROM base AS final\n"
                                    "ARG V=1\nRUN --mount=type=secret,id=tok echo $V\n")
    outputs = {}
    for call in ("outline", "targets", "plan", "check"):
        outputs[call] = json.loads(run_cli("build", "--call", call, "--format", "json", str(ctx),
                                           root=store_root).stdout)
    assert outputs["outline"]["name"] == "final" and outputs["outline"]["description"] == "the image"
    assert "V" in [a["name"] for a in outputs["outline"]["args"]]
    assert [x["name"] for x in outputs["outline"]["secrets"]] == ["tok"]
    last = outputs["targets"]["targets"][-1]
    assert (last["name"], last["description"], last["default"]) == ("final", "the image", True)
    json.loads(run_cli("images", "--format", "json", root=store_root).stdout)
    json.loads(run_cli("du", "--format", "json", root=store_root).stdout)
    json.loads(run_cli("verify", "--format", "json", BASE_NAME, root=store_root, check=False).stdout)
    json.loads(run_cli("doctor", "--format", "json", root=store_root, check=False).stdout)
    json.loads(run_cli("imagetools", "inspect", "--format", "json", f"local:{BASE_NAME}", root=store_root).stdout)
    json.loads(run_cli("attestations", "ls", "--format", "json", f"local:{BASE_NAME}", root=store_root).stdout)
    json.loads(run_cli("builder", "ls", "--format", "json", root=store_root,
                       env={"POLYARCH_CONFIG_DIR": str(tmp_path / "config")}).stdout)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  pi: linux/arm64\n")
    proc = run_cli("audit", "--format", "json", "--hosts", str(hosts), "--image", BASE_NAME, "--local-only",
                   root=store_root, check=False)
    json.loads(proc.stdout)


def test_every_format_option_is_covered() -> None:
    """Each --format option offering json in src/polyarch/cli is exercised above (a new one must be added)."""
    import re
    cli = Path(__file__).resolve().parents[2] / "src" / "polyarch" / "cli"
    offering = sorted(p.stem for p in cli.glob("*.py")
                      if re.search(r'"--format".*json', p.read_text()) or
                      re.search(r'"--format"[^\n]*\n[^\n]*json', p.read_text()))
    assert offering == ["attestations", "audit", "build", "builder", "doctor", "du", "images", "imagetools",
                        "verify"], offering


def test_save_and_load_refuse_a_terminal(three: Path) -> None:
    """No -o with stdout a terminal, no -i with stdin a terminal: one error line, nothing written to the tty."""
    import os
    import pty
    import subprocess
    import sys

    env = {**os.environ, "POLYARCH_ROOT": str(three)}
    for args, stream, message in ((("save", "app:1"), "stdout", "refusing to write an archive to a terminal"),
                                  (("load",), "stdin", "no archive on stdin")):
        leader, follower = pty.openpty()
        try:
            redirect = {stream: follower}
            proc = subprocess.run([sys.executable, "-m", "polyarch", *args], env=env, timeout=60,
                                  stderr=subprocess.PIPE, **({"stdout": subprocess.PIPE} | redirect))
        finally:
            os.close(follower)
            os.close(leader)
        assert proc.returncode != 0 and proc.stderr.decode().startswith(f"error: {message}"), proc.stderr
