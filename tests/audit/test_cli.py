"""``polyarch audit`` through the CLI: compose / image lists × hosts → table or JSON, exit status."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from polyarch.content.images import ImageStore

from .images import put_index, tiny

Run = Callable[..., "subprocess.CompletedProcess[str]"]

HOSTS_YAML = """\
hosts:
  server: linux/amd64
  pi4: linux/arm64
  pi3: linux/arm/v7
"""

COMPOSE = """\
services:
  web:
    image: app/web:${WEB_TAG:-1}
  db:
    image: app/db:1
  camera:
    image: app/pi:1
  metrics:
    image: app/gone:1
  builder:
    build: .
"""


@pytest.fixture
def fleet(images: ImageStore, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(store root, hosts file, compose file) with app/web (3 platforms), app/db (amd64, arm64), app/pi
    (arm/v6 only); app/gone does not exist."""
    put_index(images, "app/web:1", [tiny(images, p) for p in ("linux/amd64", "linux/arm64", "linux/arm/v7")])
    put_index(images, "app/db:1", [tiny(images, p) for p in ("linux/amd64", "linux/arm64")])
    put_index(images, "app/pi:1", [tiny(images, "linux/arm/v6")])
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(HOSTS_YAML)
    compose = tmp_path / "compose.yaml"
    compose.write_text(COMPOSE)
    return images.store.root, hosts, compose


def test_compose_table(fleet: tuple[Path, Path, Path], run_cli: Run) -> None:
    root, hosts, compose = fleet
    proc = run_cli("audit", "--hosts", str(hosts), str(compose), "--local-only", root=root, check=False)
    assert proc.returncode == 1, proc.stderr
    rows = [line.split("  ") for line in proc.stdout.splitlines()]
    table = [[cell.strip() for cell in row if cell.strip()] for row in rows]
    assert table == [
        ["IMAGE", "server (linux/amd64)", "pi4 (linux/arm64)", "pi3 (linux/arm/v7)"],
        ["app/web:1", "native linux/amd64", "native linux/arm64", "native linux/arm/v7"],
        ["app/db:1", "native linux/amd64", "native linux/arm64", "emulated linux/amd64"],
        ["app/pi:1", "emulated linux/arm/v6", "native linux/arm/v6", "native linux/arm/v6"],
        ["app/gone:1", "missing", "missing", "missing"],
    ]
    assert "skipped compose.yaml:builder: no image" in proc.stderr


def test_compose_json_and_exit_zero_when_all_native(fleet: tuple[Path, Path, Path], tmp_path: Path,
                                                    run_cli: Run) -> None:
    root, hosts, compose = fleet
    proc = run_cli("audit", "--hosts", str(hosts), str(compose), "--format", "json", "--local-only", root=root,
                   check=False)
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    assert [h["name"] for h in doc["hosts"]] == ["server", "pi4", "pi3"]
    db = next(i for i in doc["images"] if i["ref"] == "app/db:1")
    assert db["services"] == ["compose.yaml:db"] and db["platforms"] == ["linux/amd64", "linux/arm64"]
    assert db["hosts"]["pi3"]["status"] == "emulated" and db["hosts"]["pi3"]["platform"] == "linux/amd64"
    gone = next(i for i in doc["images"] if i["ref"] == "app/gone:1")
    assert gone["found"] is False and gone["hosts"]["server"] == {"status": "missing", "note": "image not found"}
    good = tmp_path / "good.txt"
    good.write_text("# the images that run everywhere\napp/web:1\n\napp/web:1\n")
    proc = run_cli("audit", "--hosts", str(hosts), str(good), root=root)
    assert proc.stdout.splitlines()[1].split()[0] == "app/web:1" and len(proc.stdout.splitlines()) == 2


def test_single_platform_image_and_pinned_service(images: ImageStore, tmp_path: Path, run_cli: Run) -> None:
    images.set_name("legacy:1", tiny(images, "linux/amd64"))
    put_index(images, "app/db:1", [tiny(images, p) for p in ("linux/amd64", "linux/arm64")])
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# name platform\npi4 linux/arm64\nserver linux/amd64\n")
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  db:\n    image: app/db:1\n    platform: linux/amd64\n")
    proc = run_cli("audit", "--hosts", str(hosts), str(compose), "--image", "legacy:1", root=images.store.root,
                   check=False)
    assert proc.returncode == 1
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert lines[1] == ["app/db:1", "[linux/amd64]", "emulated", "linux/amd64", "native", "linux/amd64"]
    assert lines[2] == ["legacy:1", "emulated", "linux/amd64", "native", "linux/amd64"]


def test_bad_input_exits(tmp_path: Path, run_cli: Run) -> None:
    proc = run_cli("audit", "--hosts", str(tmp_path / "nope.yaml"), "x", root=tmp_path / "r", check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    hosts = tmp_path / "h"
    hosts.write_text("a linux/amd64\n")
    proc = run_cli("audit", "--hosts", str(hosts), root=tmp_path / "r", check=False)
    assert proc.returncode == 2 and "no image to audit" in proc.stderr




def test_environment_read_by_the_cli(fleet: tuple[Path, Path, Path], run_cli: Run) -> None:
    """Compose variables come from the process environment (over ``.env``); a bad ``POLYARCH_SSH`` is one
    error line."""
    root, hosts, compose = fleet
    (compose.parent / ".env").write_text("WEB_TAG=3\n")
    proc = run_cli("audit", "--hosts", str(hosts), str(compose), "--local-only", "--format", "json", root=root,
                   env={"WEB_TAG": "2"}, check=False)
    assert json.loads(proc.stdout)["images"][0]["ref"] == "app/web:2"
    proc = run_cli("audit", "--hosts", str(hosts), str(compose), "--local-only", root=root,
                   env={"POLYARCH_SSH": "ssh -o 'x"}, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: POLYARCH_SSH: No closing quotation")
    assert "Traceback" not in proc.stderr
