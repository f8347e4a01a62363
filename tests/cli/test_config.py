"""polyarch's configuration file (``cli/config.py``): where it is, its sections as frozen values, one
``error: FILE:LINE: …`` (exit 2) for a bad one, docker's ``daemon.json`` insecure registries, and the endpoint
rules the values lead to (``registry/endpoints.route_for``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import run_cli

from polyarch.cli.config import Config, ConfigError, DockerConfig, load_config, parse_config, registry_rules
from polyarch.cli.environment import Environment
from polyarch.registry.endpoints import ClientOptions, HostConfig, route_for


def _parse(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return parse_config(path, text)


def test_sections_become_frozen_values(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    config = _parse(tmp_path, '[registry."10.0.0.5:5000"]\nhttp = true\n\n[registry."Lan.Example:443"]\n'
                              'insecure = true\nca = ["ca.pem"]\nmirrors = ["mirror.lan:5000"]\n\n'
                              '[docker]\ndaemon-json = ""\n')
    assert config.registry == (HostConfig("10.0.0.5:5000", http=True),
                               HostConfig("lan.example:443", insecure=True, ca=(str(tmp_path / "ca.pem"),),
                                          mirrors=("mirror.lan:5000",)))
    assert config.docker.daemon_json == "" and config.host("LAN.example:443") is config.registry[1]
    with pytest.raises(AttributeError):
        config.registry = ()  # type: ignore[misc]
    assert _parse(tmp_path, "").docker == DockerConfig()


@pytest.mark.parametrize(("text", "line", "words"), [
    ('[registry."a:5000"]\nhttp = true\ninsecure = "yes"\n', 3, "insecure must be true or false"),
    ('# c\n[registry."a"]\nhttp = true\nverify = false\n', 4, "unknown key 'verify'"),
    ('[registry."a"]\nhttp = true\n\n[registry."b"]\nmirrors = ["m1", "m2"]\n', 5, "only one mirror"),
    ('[registry."a"]\nca = ["missing.pem"]\n', 2, "missing.pem does not exist"),
    ('[registry."https://a/x"]\nhttp = true\n', 1, "expected host[:port]"),
    ('\n\n[gcc]\nx = 1\n', 3, "unknown section 'gcc'"),
    ('[docker]\n"daemon-json" = 3\n', 2, "daemon-json must be a path"),
    ('[registry."a"]\nhttp = \n', 2, "Invalid value"),  # a TOML syntax error: tomllib's position
    ('[registry."a"]\nhttp = true\nhttp = false\n', 3, "Cannot overwrite a value"),
])
def test_bad_config_names_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(tmp_path, text)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'config.toml'}:{line}: "), message
    assert words in message and "\n" not in message


def test_file_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert Environment.read({"XDG_CONFIG_HOME": "/cfg"}).config_location() == (
        Path("/cfg/polyarch/config.toml"), False)
    assert Environment.read({}).config_location() == (Path.home() / ".config/polyarch/config.toml", False)
    assert Environment.read({"POLYARCH_CONFIG": "/x.toml"}).config_location() == (Path("/x.toml"), True)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert Environment.read({"XDG_CONFIG_HOME": "/cfg"}).config_location() == (
        Path("/etc/polyarch/config.toml"), False)
    # a missing default file is an empty config; a missing POLYARCH_CONFIG is an error
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert load_config(Environment.read({"XDG_CONFIG_HOME": str(tmp_path)})) == Config()
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(Environment.read({"POLYARCH_CONFIG": str(tmp_path / "none.toml")}))
    (tmp_path / "polyarch").mkdir()
    (tmp_path / "polyarch" / "config.toml").write_text('[registry."h:1"]\nhttp = true\n')
    assert load_config(Environment.read({"XDG_CONFIG_HOME": str(tmp_path)})).registry == (HostConfig("h:1", True),)


def _daemon(tmp_path: Path, text: str) -> Config:
    (tmp_path / "daemon.json").write_text(text)
    return _parse(tmp_path, '[docker]\ndaemon-json = "daemon.json"\n')


def test_docker_daemon_json_insecure_registries(tmp_path: Path) -> None:
    rules = registry_rules(_daemon(tmp_path, '{"insecure-registries": ["10.1.0.0/16", "Reg.lan:5000", '
                                             '"http://other.lan", "fd00::/8"], "debug": true}'))
    assert rules.insecure == {"reg.lan:5000", "other.lan"} and rules.networks == ("10.1.0.0/16", "fd00::/8")
    assert registry_rules(_daemon(tmp_path, "{}")).insecure == frozenset()
    missing = _parse(tmp_path, '[docker]\ndaemon-json = "gone.json"\n')
    with pytest.raises(ConfigError, match=r"config.toml:2: daemon-json file .*gone.json does not exist"):
        registry_rules(missing)
    assert registry_rules(Config(docker=DockerConfig(str(tmp_path / "gone.json")))) == registry_rules(Config(
        docker=DockerConfig("")))  # docker's default file may be absent
    with pytest.raises(ConfigError, match=r"daemon.json:3: not valid JSON"):
        registry_rules(_daemon(tmp_path, '{\n"insecure-registries": [\n"a",,\n]}'))
    with pytest.raises(ConfigError, match=r"daemon.json:2: insecure-registries must be a list"):
        registry_rules(_daemon(tmp_path, '{\n"insecure-registries": "a"}'))
    with pytest.raises(ConfigError, match=r"'10.0.0.0/99' is neither"):
        registry_rules(_daemon(tmp_path, '{"insecure-registries": ["10.0.0.0/99"]}'))


def test_endpoint_rules() -> None:
    opts = ClientOptions(hosts=(HostConfig("plain.lan:5000", http=True), HostConfig("self.lan", insecure=True),
                                HostConfig("ca.lan", ca=("/ca.pem",)), HostConfig("src.lan", mirrors=("m.lan:80",)),
                                HostConfig("m.lan:80", http=True)),
                         insecure=frozenset({"flag.lan"}), insecure_networks=("10.9.0.0/16",))
    route = route_for(opts, "plain.lan:5000", push=True)
    assert (route.base, route.verify) == ("http://plain.lan:5000", True)
    assert (route_for(opts, "self.lan", push=False).base, route_for(opts, "self.lan", push=False).verify) == (
        "https://self.lan", False)
    assert route_for(opts, "flag.lan", push=False).verify is False
    assert route_for(opts, "10.9.3.4:5000", push=False).verify is False
    assert route_for(opts, "10.8.3.4:5000", push=False).verify is True
    assert route_for(opts, "ca.lan", push=False).ca == ("/ca.pem",)
    assert route_for(opts, "src.lan", push=False).base == "http://m.lan:80"  # pulls go to the mirror
    assert route_for(opts, "src.lan", push=True).base == "https://src.lan"  # pushes never do
    assert route_for(ClientOptions(), "example.com", push=False) == route_for(opts, "example.com", push=False)


def test_cli_bad_config_is_one_error_line_only_where_used(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text('[registry."h.lan"]\nhttp = 1\n')
    env = {"POLYARCH_CONFIG": str(bad)}
    proc = run_cli("pull", "h.lan/x:1", root=tmp_path / "s", env=env, check=False)
    assert proc.returncode == 2 and proc.stderr == f"error: {bad}:2: http must be true or false, not 1\n"
    proc = run_cli("imagetools", "inspect", "h.lan/x:1", root=tmp_path / "s", env=env, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {bad}:2: ")
    assert run_cli("images", root=tmp_path / "s", env=env).returncode == 0  # uses no registry
