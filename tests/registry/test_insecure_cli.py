"""Every command that reaches a registry reaches a plain-http one on the LAN (a Debian docker-registry on a
non-loopback address of this machine): refused without being told, accepted with ``--insecure-registry HOST``,
with the config file's ``[registry."HOST"] http = true``, and with docker's ``daemon.json``
``insecure-registries`` (a CIDR, a host) named by the config file. (``bake --insecure-registry``:
tests/pipeline/test_build_registry_options.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.registry.refregistry import start_registry

pytestmark = [pytest.mark.registry, pytest.mark.root]


def _commands(host: str, tmp: Path, name: str) -> dict[str, list[str]]:
    """One invocation per command, each touching the registry ``host`` (``name`` keeps variants apart)."""
    hosts = tmp / "hosts.txt"
    hosts.write_text("pi linux/arm64\n")
    src = f"{host}/base/busybox:1"
    ctx = tmp / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "a").write_text("a\n")
    (ctx / "Dockerfile").write_text(f"FROM {src}\nCOPY a /a\n")
    return {
        "push": ["push", "base/busybox:1", f"{host}/{name}/pushed:1"],
        "pull": ["pull", "--platform", "linux/arm64", src],
        "login": ["login", "-u", "someone", "--password-stdin", host],
        "imagetools inspect": ["imagetools", "inspect", src],
        "imagetools create": ["imagetools", "create", "-t", f"{host}/{name}/made:1", src],
        "imagetools copy": ["imagetools", "copy", src, f"{host}/{name}/copied:1"],
        "verify": ["verify", "--platform", "linux/arm64", src],
        "audit": ["audit", "--hosts", str(hosts), "--image", src],
        "run": ["run", "--pull", "always", src, "true"],
        "build": ["build", str(ctx), "--progress", "plain", "--platform", "linux/arm64", "--push",
                  "-t", f"{host}/{name}/built:1"],
    }


def _run(args: list[str], root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, root=root, env=env, check=False, input=b"secret\n", timeout=120)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_every_registry_command_reaches_a_plain_http_lan_registry(store_root: Path, tmp_path: Path,
                                                                   local_address: str) -> None:
    registry = start_registry(tmp_path / "registry", address=local_address)
    try:
        host = registry.host
        run_cli("push", "--insecure-registry", host, "base/busybox:1", f"{host}/base/busybox:1", root=store_root)
        empty = tmp_path / "empty.toml"
        empty.write_text('[docker]\ndaemon-json = ""\n')  # nothing from this host's files
        base_env = {"DOCKER_CONFIG": str(tmp_path / "docker"), "POLYARCH_REGISTRY_RETRIES": "0"}

        refused = _commands(host, tmp_path, "refused")
        for what, args in refused.items():
            proc = _run(args, store_root, {**base_env, "POLYARCH_CONFIG": str(empty)})
            assert proc.returncode != 0, (what, proc.stdout, proc.stderr)
            assert "Traceback" not in proc.stderr, (what, proc.stderr)
            if what == "audit":  # audit reports each image it cannot resolve, and goes on
                assert f"cannot resolve {host}/base/busybox:1" in proc.stderr
                assert "the server does not speak https" in proc.stderr, proc.stderr
                continue
            assert len(_errors(proc.stderr)) == 1, (what, proc.stderr)
            assert f"--insecure-registry {host}" in proc.stderr, (what, proc.stderr)

        # with the flag
        for what, args in _commands(host, tmp_path, "flag").items():
            at = 1 if args[0] != "imagetools" else 2
            flagged = [*args[:at], "--insecure-registry", host, *args[at:]]
            proc = _run(flagged, store_root, {**base_env, "POLYARCH_CONFIG": str(empty)})
            assert proc.returncode == 0, (what, proc.stdout, proc.stderr)

        # through the config file, and through docker's daemon.json (a CIDR, then a host) the config file names
        config = tmp_path / "config.toml"
        config.write_text(f'[registry."{host}"]\nhttp = true\n\n[docker]\ndaemon-json = ""\n')
        daemon_cidr = tmp_path / "daemon-cidr.json"
        daemon_cidr.write_text(json.dumps({"insecure-registries": ["10.204.0.0/16"], "log-level": "warn"}))
        daemon_host = tmp_path / "daemon-host.json"
        daemon_host.write_text(json.dumps({"insecure-registries": [host]}))
        by_daemon_cidr = tmp_path / "by-daemon-cidr.toml"
        by_daemon_cidr.write_text(f'[docker]\ndaemon-json = "{daemon_cidr.name}"\n')  # relative to the file
        by_daemon_host = tmp_path / "by-daemon-host.toml"
        by_daemon_host.write_text(f'[docker]\ndaemon-json = "{daemon_host}"\n')
        for variant, path in (("config", config), ("daemoncidr", by_daemon_cidr), ("daemonhost", by_daemon_host)):
            for what, args in _commands(host, tmp_path, variant).items():
                proc = _run(args, store_root, {**base_env, "POLYARCH_CONFIG": str(path)})
                assert proc.returncode == 0, (variant, what, proc.stdout, proc.stderr)

        made = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{host}/config/made:1"],
                              capture_output=True, text=True, check=True).stdout
        assert len(json.loads(made)["manifests"]) == 3
    finally:
        registry.stop()


def test_config_ca_is_trusted_for_its_host_only(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    """``[registry."HOST"] ca = [...]`` trusts that CA for HOST (here a Docker Hub mirror with a self-signed
    certificate) and for no other host."""
    host, cert = tls_server
    env = {"POLYARCH_REGISTRY_RETRIES": "0", "DOCKER_CONFIG": str(tmp_path / "dc"),
           "POLYARCH_CONFIG": str(tmp_path / "config.toml")}
    mirror = f'[registry."docker.io"]\nmirrors = ["https://{host}"]\n\n[docker]\ndaemon-json = ""\n'
    for ca_host, trusted in (("elsewhere.lan:443", False), (host, True)):
        (tmp_path / "config.toml").write_text(f'{mirror}\n[registry."{ca_host}"]\nca = ["{cert}"]\n')
        proc = run_cli("imagetools", "inspect", "busybox:1", root=tmp_path / "root", env=env, check=False)
        assert proc.returncode == 1 and len(_errors(proc.stderr)) == 1, proc.stderr
        # trusted: TLS works and the fake server's "{}" is refused as a manifest
        assert ("CERTIFICATE_VERIFY_FAILED" in proc.stderr) is not trusted, proc.stderr
