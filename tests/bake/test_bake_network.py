"""Bake's ``network`` attribute reaches the build: a RUN of a ``network = "none"`` target sees only ``lo``, a
``network = "host"`` target needs ``--allow network.host``; and every bake attribute that has a ``BuildRequest``
field lands in that field (the request is built by keyword, so none is shifted or dropped)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from polyarch.cli.bake import read_bake_files
from polyarch.cli.bake_request import to_request
from polyarch.frontend.bake import Evaluator, parse_files
from polyarch.pipeline.run import BuildRequest
from tests.conftest import run_cli

pytestmark = [pytest.mark.root]

# the interfaces of the step's network namespace, on one line the progress shows
IFACES = "echo IFACES=$(awk -F: 'NR>2 {gsub(/ /, \"\", $1); print $1}' /proc/net/dev | sort | tr '\\n' ,)"


def _project(tmp_path: Path, network: str) -> Path:
    (tmp_path / "ctx").mkdir(parents=True, exist_ok=True)
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM base/busybox:1\nRUN {IFACES}\n")
    (tmp_path / "docker-bake.hcl").write_text(
        f'target "default" {{\n  context = "ctx"\n  platforms = ["linux/amd64"]\n  network = "{network}"\n}}\n')
    return tmp_path


def _ifaces(stderr: str) -> list[str]:
    return [line.split("IFACES=", 1)[1] for line in stderr.splitlines() if "IFACES=" in line and "echo" not in line]


@pytest.fixture(autouse=True)
def _need_runtime() -> None:
    if os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("RUN steps need root and runc")


def test_bake_print_shows_network(tmp_path: Path) -> None:
    project = _project(tmp_path, "none")
    proc = run_cli("bake", "--print", cwd=project)
    assert '"network": "none"' in proc.stdout


def test_bake_network_none_reaches_the_run(store_root: Path, tmp_path: Path) -> None:
    project = _project(tmp_path, "none")
    proc = run_cli("bake", "--progress", "plain", "--no-cache", root=store_root, cwd=project)
    assert _ifaces(proc.stderr) == ["lo,"], proc.stderr[-2000:]


def test_bake_network_host_needs_the_entitlement(store_root: Path, tmp_path: Path) -> None:
    project = _project(tmp_path, "host")
    proc = run_cli("bake", "--progress", "plain", root=store_root, cwd=project, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "network.host is not allowed" in errors[0]
    assert "Traceback" not in proc.stderr
    allowed = run_cli("bake", "--progress", "plain", "--no-cache", "--allow", "network.host", root=store_root,
                      cwd=project)
    host = sorted(p.name for p in Path("/sys/class/net").iterdir())
    assert _ifaces(allowed.stderr) == ["".join(f"{n}," for n in host)]


# BuildRequest fields no bake attribute sets: files read later (excludes), values from the command line (secrets,
# ssh), and the node a builder runs the request on (build_platform: nodes/distribute.py).
NOT_FROM_BAKE = ("excludes", "secrets", "ssh", "build_platform")


def test_every_bake_attribute_reaches_its_request_field(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile.x").write_text("FROM scratch\n")
    (tmp_path / "docker-bake.hcl").write_text('''\
target "default" {
  context = "ctx"
  dockerfile = "Dockerfile.x"
  platforms = ["linux/arm64"]
  target = "stage"
  args = { A = "1" }
  labels = { L = "2" }
  contexts = { other = "docker-image://busybox" }
  no-cache = true
  pull = true
  annotations = ["index:k=v"]
  cache-from = ["type=local,src=/tmp/cache"]
  cache-to = ["type=local,dest=/tmp/cache"]
  network = "none"
  extra-hosts = { db = "10.0.0.1" }
  ulimits = ["nofile=1024:2048"]
  shm-size = "128m"
  no-cache-filter = ["stage"]
}
''')
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        [t] = Evaluator(parse_files(read_bake_files(("docker-bake.hcl",), Path(".")), {}), {}).definition(
            ["default"], []).targets
        req = to_request(t, {}, no_cache=False, pull=False, epoch=7, allow=frozenset({"network.host"}))
    finally:
        os.chdir(cwd)
    defaults = BuildRequest("")
    unset = [f.name for f in dataclasses.fields(BuildRequest)
             if getattr(req, f.name) == getattr(defaults, f.name) and f.name not in NOT_FROM_BAKE]
    assert unset == []  # every field the bake file sets differs from the default
    assert (req.network, req.filename, req.target, req.epoch) == ("none", "Dockerfile.x", "stage", 7)
    assert [str(p) for p in req.platforms] == ["linux/arm64"]
    assert (dict(req.build_args)["A"], dict(req.labels), dict(req.build_contexts)) == \
        ("1", {"L": "2"}, {"other": "docker-image://busybox"})
    assert (req.no_cache, req.pull, req.annotations, req.allow) == (True, True, ("index:k=v",),
                                                                   frozenset({"network.host"}))
    assert (req.run_options.extra_hosts, req.run_options.ulimits, req.run_options.shm_size, req.no_cache_filter) == \
        ((("db", "10.0.0.1"),), (("nofile", 1024, 2048),), 128 << 20, ("stage",))


def test_bake_network_unknown_mode_is_one_error_line(store_root: Path, tmp_path: Path) -> None:
    project = _project(tmp_path, "bridge")
    proc = run_cli("bake", "--progress", "plain", root=store_root, cwd=project, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "bridge" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
