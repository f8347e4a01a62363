"""README's "CI without nodes" pattern, run as written: the runner commands once per platform (each runner its own
store, as separate machines), then the merge commands, against ``polyarch registry serve`` with htpasswd auth.
The commands are taken from README.md itself (the two ``sh`` blocks of that section, only the registry host
replaced), so the README cannot drift from what is tested. The merged index is checked with skopeo and
``polyarch verify``, and each platform is run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from tests.conftest import REPO, run_cli, serve_registry

EXAMPLE_HOST = "registry.example.com"
PLATFORMS = ("linux/amd64", "linux/arm64")


def readme_ci_blocks() -> tuple[str, str]:
    """The runner and merge ``sh`` blocks of README's CI section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## CI without nodes", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "README's CI section has the runner block and the merge block"
    return blocks[0], blocks[1]


def test_readme_commands_are_the_documented_pattern() -> None:
    runner, merge = readme_ci_blocks()
    assert (f"polyarch build . --platform \"$PLATFORM\" -o type=registry,name={EXAMPLE_HOST}/app,push-by-digest=true "
            "--metadata-file meta.json") in runner
    assert f"polyarch imagetools create -t {EXAMPLE_HOST}/app:1.0 " in merge
    assert f"polyarch verify {EXAMPLE_HOST}/app:1.0 --require linux/amd64,linux/arm64" in merge


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[str]:
    """``polyarch registry serve --htpasswd`` (user ci, password s3cret) on a free loopback port."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("ci:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode() + "\n")
    with serve_registry(tmp_path / "reg", "--htpasswd", str(htpasswd)) as address:
        yield address


def _sh(script: str, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(["sh", "-eu", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"


def _skopeo(ref: str, *more: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "ci:s3cret", *more,
                           f"docker://{ref}"], capture_output=True, check=True, timeout=60).stdout


@pytest.mark.skopeo
def test_matrix_runners_push_by_digest_and_one_job_merges(base_root: Path, auth_registry: str,
                                                          tmp_path: Path) -> None:
    runner_block, merge_block = (b.replace(EXAMPLE_HOST, auth_registry) for b in readme_ci_blocks())
    app = f"{auth_registry}/app"
    base_env = {**os.environ, "REGISTRY_USER": "ci", "REGISTRY_PASSWORD": "s3cret", "POLYARCH_BUILDER": "",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    digests = {}
    for platform in PLATFORMS:  # each runner: its own checkout, store, docker config
        slug = platform.replace("/", "-")
        checkout, store = tmp_path / f"checkout-{slug}", tmp_path / f"store-{slug}"
        checkout.mkdir()
        (checkout / "Dockerfile").write_text('FROM base/busybox:1\nARG TARGETPLATFORM\n'
                                             'RUN echo "built for $TARGETPLATFORM on $(uname -m)" > /built\n'
                                             'COPY app.sh /app.sh\nCMD ["cat", "/built"]\n')
        (checkout / "app.sh").write_text("echo hi\n")
        shutil.copytree(base_root, store, ignore=shutil.ignore_patterns(".complete", "ingest"))
        env = {**base_env, "PLATFORM": platform, "POLYARCH_ROOT": str(store),
               "DOCKER_CONFIG": str(tmp_path / f"docker-{slug}"), "POLYARCH_CONFIG_DIR": str(tmp_path / f"cfg-{slug}")}
        _sh(runner_block, checkout, env)
        meta = json.loads((checkout / "meta.json").read_text())
        digest_file = checkout / f"digest-{slug}.txt"
        assert digest_file.read_text().strip() == meta["containerimage.digest"]
        digests[platform] = meta["containerimage.digest"]
        shutil.copy(digest_file, artifacts)  # upload-artifact
        # pushed by digest only: the repository has no tag yet
        assert _skopeo(f"{app}@{digests[platform]}")
    tags = subprocess.run(["skopeo", "list-tags", "--tls-verify=false", "--creds", "ci:s3cret", f"docker://{app}"],
                          capture_output=True, check=True, text=True, timeout=60).stdout
    assert json.loads(tags)["Tags"] == []

    merge_env = {**base_env, "POLYARCH_ROOT": str(tmp_path / "store-merge"), "DOCKER_CONFIG": str(tmp_path / "dm")}
    _sh(runner_block.splitlines()[0], artifacts, merge_env)  # the merge job logs in as the runners do
    _sh(merge_block, artifacts, merge_env)

    index = json.loads(_skopeo(f"{app}:1.0"))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]] == list(PLATFORMS)
    for platform, m in zip(PLATFORMS, index["manifests"], strict=True):  # each runner's manifest, unchanged
        pushed = json.loads(_skopeo(f"{app}@{digests[platform]}"))
        inner = pushed["manifests"][0] if "manifests" in pushed else {"digest": digests[platform]}
        assert m["digest"] == inner["digest"]
    for arch in ("amd64", "arm64"):  # what a host of each architecture pulls from the tag
        seen = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", "ci:s3cret", "--override-os",
                               "linux", "--override-arch", arch, f"docker://{app}:1.0"],
                              capture_output=True, check=True, text=True, timeout=60).stdout
        assert json.loads(seen)["Architecture"] == arch
    proc = run_cli("verify", f"{app}:1.0", "--require", ",".join(PLATFORMS), env=merge_env)
    report = proc.stdout + proc.stderr
    assert f"ok: {app}:1.0" in report and "linux/amd64 (1 ELF)" in report and "linux/arm64 (1 ELF)" in report
    for platform in PLATFORMS:
        out = run_cli("run", "--platform", platform, f"{app}:1.0", env={**merge_env,
                      "POLYARCH_ROOT": str(tmp_path / f"run-{platform.replace('/', '-')}")}).stdout
        assert f"built for {platform} on " in out
