"""Every bake attribute takes effect or fails the bake naming target and attribute: ``entitlements`` must be
granted by ``--allow``, ``attest`` entries are valid ``--attest`` values, ``shm-size``/``ulimits``/``extra-hosts`` valid
values of ``--shm-size``/``--ulimit``/``--add-host``,
``call`` runs the build's ``--call`` report instead of building."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyarch.cli.bake_request import check_supported
from polyarch.errors import UsageError
from polyarch.frontend.bake import Target
from tests.bake.test_cli import bake


@pytest.mark.parametrize(("attrs", "allow", "message"), [
    ({"shm-size": "128 lots"}, (), "attribute 'shm-size': invalid value '128 lots'"),
    ({"ulimits": ("nofile=1024:10",)}, (), "attribute 'ulimits': invalid value 'nofile=1024:10'"),
    ({"extra-hosts": {"db": "not-an-ip"}}, (), "attribute 'extra-hosts': invalid value 'db=not-an-ip'"),
    ({"attest": ("type=sbom,colour=red",)}, (), "attribute 'attest': invalid --attest"),
    ({"attest": ("type=provenance,mode=huge",)}, (), "attribute 'attest'"),
    ({"attest": ("type=signature",)}, (), "type must be sbom or provenance"),
    ({"entitlements": ("network.host",)}, (), "attribute 'entitlements' needs network.host, not granted"),
    ({"entitlements": ("device",)}, ("device",), "unknown entitlement 'device'"),
])
def test_unsupported_or_ungranted_attributes_fail(attrs: dict[str, object], allow: tuple[str, ...],
                                                  message: str) -> None:
    with pytest.raises(UsageError) as exc:
        check_supported(Target("app", attrs), frozenset(allow))
    assert "target 'app'" in exc.value.message and message in exc.value.message


@pytest.mark.parametrize("attrs", [
    {}, {"attest": ("type=sbom,disabled=true", "type=provenance,disabled=true")},
    {"attest": ("type=sbom", "type=provenance,mode=max")}, {"attest": ({"type": "sbom", "generator": "x"},)},
    {"entitlements": ("network.host", "security.insecure")}, {"no-cache-filter": ()}, {"call": "build"},
    {"shm-size": "128m"}, {"ulimits": ("nofile=1024:1024",)}, {"no-cache-filter": ("build",)},
    {"extra-hosts": {"db": "10.0.0.1"}},
])
def test_supported_attributes_pass(attrs: dict[str, object]) -> None:
    check_supported(Target("app", attrs), frozenset({"network.host", "security.insecure"}))


def test_the_bake_fails_before_building_with_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "docker-bake.hcl").write_text('target "default" {\n  shm-size = "2 gigs"\n}\n')
    proc = bake(tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.splitlines()[0] == "error: target 'default': attribute 'shm-size': invalid value '2 gigs'"
    assert "Traceback" not in proc.stderr
    assert bake(tmp_path, "--print").returncode == 0  # --print shows what the file says


def test_call_runs_the_report_instead_of_building(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch AS base\nCOPY a /a\nFROM base AS final\n")
    (tmp_path / "docker-bake.hcl").write_text(
        'target "lint" {\n  call = "check"\n}\ntarget "stages" {\n  call = "targets"\n}\n'
        'target "bad" {\n  call = "nope"\n}\n')
    proc = bake(tmp_path, "lint", "stages")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "[lint]" and "[stages]" in lines
    assert any("base" in line for line in lines[lines.index("[stages]"):])
    bad = bake(tmp_path, "bad")
    assert bad.returncode != 0 and "attribute 'call': unknown call 'nope'" in bad.stderr
