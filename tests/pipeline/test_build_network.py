"""``--network default|none|host``: the network of RUN steps without their own ``RUN --network=``; the host's
network and ``--security=insecure`` only with buildx's ``--allow`` entitlements."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import build, by_name, images_of, layer_file, needs_run, write_tree

pytestmark = [pytest.mark.root]

# /proc/net/dev lists the interfaces of the step's network namespace: only "lo" in an empty one
IFACES = "awk -F: 'NR>2 {gsub(/ /, \"\", $1); print $1}' /proc/net/dev | sort | tr '\\n' ' '"


def _ifaces(root: Path, name: str, n: int) -> list[str]:
    img = images_of(root, name)[0]
    return [layer_file(root, img, n + i, f"net{i}").decode().split() for i in range(2)]  # type: ignore[misc]


@needs_run("linux/amd64")
def test_build_network_none_is_the_default_of_runs_and_run_network_overrides(store_root: Path,
                                                                               tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {
        "Dockerfile": f"FROM base/busybox:1\nRUN --network=host {IFACES} > /net0\nRUN {IFACES} > /net1\n",
    })
    host = sorted(p.name for p in Path("/sys/class/net").iterdir())
    n = len(images_of(store_root, "base/busybox:1")[0].manifest.layers)

    build(store_root, ctx, "--platform", "linux/amd64", "-t", "net:default", "--load", "--allow", "network.host")
    assert _ifaces(store_root, "net:default", n) == [host, ["lo", "tap0"]]  # its own namespace, not the host's

    proc = build(store_root, ctx, "--platform", "linux/amd64", "-t", "net:none", "--load", "--network", "none",
                 "--allow", "network.host")
    assert _ifaces(store_root, "net:none", n) == [host, ["lo"]]
    # the build's network is part of the cache key of a RUN that uses it, not of one with its own --network=
    assert by_name(proc.stderr, "RUN awk") == ["DONE"]
    assert by_name(proc.stderr, "RUN --network=host") == ["CACHED"]
    again = build(store_root, ctx, "--platform", "linux/amd64", "-t", "net:none", "--load", "--network", "none",
                  "--allow", "network.host")
    assert by_name(again.stderr, "RUN awk") == ["CACHED"]


def test_build_network_rejects_unknown_mode(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nRUN true\n"})
    proc = build(store_root, ctx, "--network", "bridge", check=False)
    assert proc.returncode == 2
    assert "bridge" in proc.stderr and "none" in proc.stderr
    assert "Traceback" not in proc.stderr


@needs_run("linux/amd64")
@pytest.mark.parametrize("dockerfile,flags,entitlement", [
    ("RUN --network=host true\n", (), "network.host"),
    ("RUN true\n", ("--network", "host"), "network.host"),
    ("RUN --security=insecure true\n", (), "security.insecure"),
    ("RUN --security=insecure true\n", ("--allow", "network.host"), "security.insecure"),
])
def test_build_entitlements_refused_before_any_step(store_root: Path, tmp_path: Path, dockerfile: str,
                                                    flags: tuple[str, ...], entitlement: str) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nRUN echo first-step-ran\n" + dockerfile})
    proc = build(store_root, ctx, "--platform", "linux/amd64", *flags, check=False)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{entitlement} is not allowed" in errors[0]
    assert not [line for line in proc.stderr.splitlines() if line.endswith(" first-step-ran")]  # no step ran
    assert "Traceback" not in proc.stderr
    allowed = build(store_root, ctx, "--platform", "linux/amd64", *flags, "--allow", entitlement, check=False)
    assert allowed.returncode == 0, allowed.stderr
    assert [line for line in allowed.stderr.splitlines() if line.endswith(" first-step-ran")]


def test_build_allow_rejects_unknown_entitlement(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nRUN true\n"})
    proc = build(store_root, ctx, "--allow", "network.hots", check=False)
    assert proc.returncode == 2
    assert "invalid entitlement: network.hots" in proc.stderr and "Traceback" not in proc.stderr


@needs_run("linux/amd64")
def test_bake_allow_network_host(store_root: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    write_tree(tmp_path, {"ctx/Dockerfile": "FROM base/busybox:1\nRUN --network=host true\n",
                          "docker-bake.hcl": 'target "default" {\n  context = "ctx"\n  platforms = ["linux/amd64"]\n}\n'})
    proc = run_cli("bake", "-f", "docker-bake.hcl", "--progress", "plain", root=store_root, cwd=tmp_path,
                   check=False)
    assert proc.returncode == 1 and "error: network.host is not allowed" in proc.stderr
    run_cli("bake", "-f", "docker-bake.hcl", "--allow", "network.host", root=store_root, cwd=tmp_path)
