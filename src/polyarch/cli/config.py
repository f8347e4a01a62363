"""polyarch's one configuration file, read by the CLI into a frozen ``Config``; and docker's ``daemon.json``.

Where (``Environment.config_location``): ``POLYARCH_CONFIG`` (must exist), else ``/etc/polyarch/config.toml``
for root, ``$XDG_CONFIG_HOME/polyarch/config.toml`` (default ``~/.config/polyarch/config.toml``) for other users;
a missing default file is an empty configuration. The file is read only by commands that use it
(``load_config``, cached per file state), so a command that uses none of it never fails because of it.

Sections (TOML, stdlib ``tomllib``; unknown sections, keys and wrong types are errors):

- ``[registry."host[:port]"]``, as buildkitd.toml: ``http = true`` (plain http), ``insecure = true`` (https
  without verification, then http), ``ca = ["/path.pem"]`` (CAs trusted for that host only), ``mirrors =
  ["host[:port]"]`` (one pull mirror) → ``registry.endpoints.HostConfig`` values.
- ``[docker] daemon-json = "/etc/docker/daemon.json"`` (the default; ``""`` ignores it): docker's daemon file
  whose ``insecure-registries`` (hosts and CIDRs) polyarch honours too (``registry_rules``).
- ``[gc]``: the build cache's size policy, applied after each successful build and bake (BuildKit's gc policy):
  ``enabled = true``, ``keep-storage = "10GB"`` (docker's size units, powers of 1024; ``0``: no limit),
  ``keep-duration = "48h"`` (a Go duration; records used more recently are kept) → ``pipeline.gcpolicy.GcPolicy``.

Relative paths are relative to the directory of the file that names them. A bad file is one ``ConfigError``
(a ``UsageError``: exit 2) naming ``FILE:LINE``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyarch.errors import UsageError
from polyarch.pipeline.gcpolicy import GcPolicy, parse_duration, parse_size
from polyarch.registry.endpoints import HostConfig

if TYPE_CHECKING:
    from polyarch.cli.environment import Environment

__all__ = ["DEFAULT_DAEMON_JSON", "Config", "ConfigError", "DockerConfig", "RegistryRules", "Where", "load_config",
           "parse_config", "registry_rules"]

DEFAULT_DAEMON_JSON = "/etc/docker/daemon.json"


class ConfigError(UsageError):
    """A configuration file polyarch cannot use; the message starts with ``FILE:LINE:``."""


@dataclass(frozen=True, slots=True)
class DockerConfig:
    daemon_json: str = DEFAULT_DAEMON_JSON  # "" ignores docker's daemon.json
    daemon_json_line: int = 0  # where the file set it (0: the default)


@dataclass(frozen=True, slots=True)
class Config:
    """The configuration file as read. Each field is one top-level section of the file, by the same name."""

    path: Path | None = None  # the file read, None when there was none
    registry: tuple[HostConfig, ...] = ()
    docker: DockerConfig = field(default_factory=DockerConfig)
    gc: GcPolicy = field(default_factory=GcPolicy)

    def host(self, name: str) -> HostConfig | None:
        return next((h for h in self.registry if h.host == name.lower()), None)


@dataclass(frozen=True, slots=True)
class RegistryRules:
    """What the registry client takes from the configuration: per-host rules, and docker's insecure registries."""

    hosts: tuple[HostConfig, ...] = ()
    insecure: frozenset[str] = frozenset()
    networks: tuple[str, ...] = ()


class Where:
    """Line numbers of keys in a TOML text, for error messages (tomllib reports positions of syntax errors only)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def error(self, keys: tuple[str, ...], message: str) -> ConfigError:
        return ConfigError(f"{self.path}:{self.line_of(keys)}: {message}")

    def line_of(self, keys: tuple[str, ...]) -> int:
        """The line of ``keys`` (table path, then a key): its ``key =`` line under the deepest table header
        found, else that header, else 1."""
        start, depth = 0, 0
        for n, line in enumerate(self.lines):
            stripped = line.strip()
            if stripped.startswith("[") and not stripped.startswith("[["):
                parts = _key_parts(stripped.strip("[]"))
                if len(parts) > depth and tuple(keys[: len(parts)]) == parts:
                    start, depth = n + 1, len(parts)
        if depth < len(keys):
            for n in range(start, len(self.lines)):
                stripped = self.lines[n].strip()
                if n >= start and stripped.startswith("[") and depth:
                    break
                if "=" in stripped and _key_parts(stripped.split("=", 1)[0]) == tuple(keys[depth:]):
                    return n + 1
        return start or 1


def _key_parts(text: str) -> tuple[str, ...]:
    parts = re.findall(r'"[^"]*"|\'[^\']*\'|[^."\']+', text)
    return tuple(p.strip().strip('"').strip("'") for p in parts if p.strip())


def _bool(table: dict[str, Any], key: str, keys: tuple[str, ...], where: Where) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise where.error((*keys, key), f"{key} must be true or false, not {value!r}")
    return value


def _strings(table: dict[str, Any], key: str, keys: tuple[str, ...], where: Where) -> tuple[str, ...]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise where.error((*keys, key), f"{key} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


_HOST = re.compile(r"^[a-z0-9._\-\[\]:]+$")
_REGISTRY_KEYS = frozenset({"http", "insecure", "ca", "mirrors"})


def _registry(value: Any, where: Where) -> tuple[HostConfig, ...]:
    if not isinstance(value, dict):
        raise where.error(("registry",), 'registry must be a table of [registry."host[:port]"] sections')
    hosts = []
    for name, table in value.items():
        keys = ("registry", name)
        host = name.strip().lower()
        if not _HOST.match(host):
            raise where.error(keys, f"registry {name!r}: expected host[:port] (no scheme, no path)")
        if not isinstance(table, dict):
            raise where.error(keys, f'registry {name!r} must be a table ([registry."{name}"])')
        unknown = sorted(set(table) - _REGISTRY_KEYS)
        if unknown:
            raise where.error((*keys, unknown[0]), f"unknown key {unknown[0]!r} in [registry.\"{name}\"] "
                                                   f"(known: {', '.join(sorted(_REGISTRY_KEYS))})")
        ca = []
        for path in _strings(table, "ca", keys, where):
            full = where.path.parent / path
            if not full.is_file():
                raise where.error((*keys, "ca"), f"CA file {full} does not exist")
            ca.append(str(full))
        mirrors = _strings(table, "mirrors", keys, where)
        if len(mirrors) > 1:
            raise where.error((*keys, "mirrors"), "only one mirror per registry is supported")
        hosts.append(HostConfig(host, http=_bool(table, "http", keys, where),
                                insecure=_bool(table, "insecure", keys, where), ca=tuple(ca), mirrors=mirrors))
    return tuple(hosts)


def _docker(value: Any, where: Where) -> DockerConfig:
    if not isinstance(value, dict):
        raise where.error(("docker",), "docker must be a table ([docker])")
    unknown = sorted(set(value) - {"daemon-json"})
    if unknown:
        raise where.error(("docker", unknown[0]), f"unknown key {unknown[0]!r} in [docker] (known: daemon-json)")
    path = value.get("daemon-json", DEFAULT_DAEMON_JSON)
    if not isinstance(path, str):
        raise where.error(("docker", "daemon-json"), "daemon-json must be a path (or \"\" to ignore docker's file)")
    return DockerConfig(str(where.path.parent / path) if path else "", where.line_of(("docker", "daemon-json")))


_GC_KEYS = ("enabled", "keep-storage", "keep-duration")


def _gc(value: Any, where: Where) -> GcPolicy:
    if not isinstance(value, dict):
        raise where.error(("gc",), "gc must be a table ([gc])")
    unknown = sorted(set(value) - set(_GC_KEYS))
    if unknown:
        raise where.error(("gc", unknown[0]), f"unknown key {unknown[0]!r} in [gc] (known: {', '.join(_GC_KEYS)})")
    default = GcPolicy()
    enabled = value.get("enabled", default.enabled)
    if not isinstance(enabled, bool):
        raise where.error(("gc", "enabled"), f"enabled must be true or false, not {enabled!r}")
    storage, duration = value.get("keep-storage"), value.get("keep-duration")
    try:
        keep_storage = default.keep_storage if storage is None else \
            storage if isinstance(storage, int) and not isinstance(storage, bool) and storage >= 0 else \
            parse_size(storage, what="keep-storage") if isinstance(storage, str) else -1
    except UsageError as exc:
        raise where.error(("gc", "keep-storage"), f"{exc.message} (e.g. \"10GB\", \"512MB\")") from None
    if keep_storage < 0:
        raise where.error(("gc", "keep-storage"), f"keep-storage must be a size such as \"10GB\", not {storage!r}")
    try:
        keep_duration = default.keep_duration if duration is None else \
            parse_duration(duration, what="keep-duration") if isinstance(duration, str) else -1.0
    except UsageError as exc:
        raise where.error(("gc", "keep-duration"), f"{exc.message} (e.g. \"48h\", \"90m\")") from None
    if keep_duration < 0:
        raise where.error(("gc", "keep-duration"), f"keep-duration must be a duration such as \"48h\", "
                                                   f"not {duration!r}")
    return GcPolicy(enabled, keep_storage, keep_duration)


# section name (= Config field) -> parser of its value
_SECTIONS: dict[str, Callable[[Any, Where], Any]] = {"registry": _registry, "docker": _docker, "gc": _gc}


def parse_config(path: Path, text: str) -> Config:
    """``text`` (the content of ``path``) → ``Config``.

    :raises ConfigError: not TOML, or a section, key or value polyarch does not know.
    """
    where = Where(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\s*\(at line (\d+), column \d+\)$", message) or re.search(r"\s*\(at end of document\)$",
                                                                                        message)
        line = found.group(1) if found and found.groups() else str(max(1, len(where.lines)))
        raise ConfigError(f"{path}:{line}: {message[: found.start()] if found else message}") from None
    values: dict[str, Any] = {}
    for name, value in doc.items():
        parser = _SECTIONS.get(name)
        if parser is None:
            raise where.error((name,), f"unknown section {name!r} (known: {', '.join(sorted(_SECTIONS))})")
        values[name] = parser(value, where)
    return Config(path, **values)


_cache: dict[tuple[str, int, int], Config] = {}


def load_config(env: Environment) -> Config:
    """The configuration file ``env`` points at (see the module doc), parsed once per file state.

    :raises ConfigError: ``POLYARCH_CONFIG`` names a missing file, or the file is unreadable or bad.
    """
    path, explicit = env.config_location()
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        if key in _cache:
            return _cache[key]
        data = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: no such configuration file (POLYARCH_CONFIG)") from None
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None
    config = _cache[key] = parse_config(path, text)
    return config


def registry_rules(config: Config) -> RegistryRules:
    """The config file's ``[registry."…"]`` rules plus the ``insecure-registries`` of docker's ``daemon.json``
    (hosts and CIDRs; a missing default file is none).

    :raises ConfigError: the daemon file is unreadable, not JSON, or its list is malformed.
    """
    docker = config.docker
    if not docker.daemon_json:
        return RegistryRules(config.registry)
    path = Path(docker.daemon_json)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if docker.daemon_json_line:
            raise ConfigError(f"{config.path}:{docker.daemon_json_line}: daemon-json file {path} does not "
                              f"exist") from None
        return RegistryRules(config.registry)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    entries = doc.get("insecure-registries", []) if isinstance(doc, dict) else None
    line = _json_line(text, "insecure-registries")
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ConfigError(f"{path}:{line}: insecure-registries must be a list of hosts and CIDRs")
    hosts: set[str] = set()
    networks: list[str] = []
    for entry in entries:
        text_entry = entry.strip().lower().removeprefix("http://").removeprefix("https://").rstrip("/")
        if "/" in text_entry:
            try:
                networks.append(str(ipaddress.ip_network(text_entry, strict=False)))
            except ValueError:
                raise ConfigError(f"{path}:{line}: insecure-registries: {entry!r} is neither a host[:port] nor "
                                  f"a CIDR") from None
        elif text_entry and _HOST.match(text_entry):
            hosts.add(text_entry)
        else:
            raise ConfigError(f"{path}:{line}: insecure-registries: {entry!r} is not a host[:port]")
    return RegistryRules(config.registry, frozenset(hosts), tuple(networks))


def _json_line(text: str, key: str) -> int:
    at = text.find(f'"{key}"')
    return text.count("\n", 0, at) + 1 if at >= 0 else 1

