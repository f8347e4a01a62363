"""The examples build as documented (the Go one needs its Debian builder image and is marked slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PLATFORMS, build, images_of, layer_members, needs_run

REPO = Path(__file__).resolve().parents[2]


def test_shell_app_example(store_root: Path, tmp_path: Path) -> None:
    app = REPO / "examples" / "shell-app"
    build(store_root, app, "--platform", PLATFORMS, "--build-arg", "VERSION=1.0", "-t", "shell-app:1", "--load")
    imgs = images_of(store_root, "shell-app:1")
    cfg = imgs[0].config.config
    assert cfg.labels["org.opencontainers.image.version"] == "1.0"
    assert "APP_VERSION=1.0" in cfg.env and cfg.user == "65534:65534"
    assert len({tuple(str(d.digest) for d in i.manifest.layers[1:]) for i in imgs}) == 1
    files = {n for i in range(1, len(imgs[0].manifest.layers)) for n in layer_members(store_root, imgs[0], i)}
    assert {"app/cmd-greet.sh", "app/lib.sh", "usr/local/bin/shell-app"} <= files
    assert not any(n.endswith(".md") for n in files)


@needs_run("linux/arm64")
def test_shell_app_runs_under_emulation(store_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(store_root, REPO / "examples" / "shell-app", "--platform", "linux/arm64", "-o", f"type=local,dest={out}")
    proc = subprocess.run([shutil.which("chroot") or "chroot", str(out), "/usr/local/bin/shell-app", "info"], capture_output=True, text=True,
                          env={"APP_HOME": "/app", "APP_VERSION": "t", "PATH": "/bin"})
    assert proc.stdout.strip() == "shell-app: version t on aarch64", proc.stderr


@pytest.mark.slow
@needs_run(PLATFORMS)
@pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None, reason="needs apt")
def test_go_cross_compile_example(store_root: Path, tmp_path: Path) -> None:
    debs = Path(os.environ.get("POLYARCH_TEST_CACHE", Path.home() / ".cache" / "polyarch-tests")) / "go-debs"
    subprocess.run([sys.executable, str(REPO / "examples" / "go-app" / "make_base.py"), "--root", str(store_root),
                    "--debs", str(debs)], check=True, capture_output=True)
    build(store_root, REPO / "examples" / "go-app", "--platform", PLATFORMS, "-t", "go-app:1", "--load")
    from tests.conftest import run_cli

    assert run_cli("verify", "go-app:1", root=store_root).returncode == 0
