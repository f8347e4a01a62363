"""Where and how a registry host is reached: the client's options and the endpoint rules.

- ``docker.io`` is ``registry-1.docker.io``, or ``ClientOptions.mirror`` (the CLI's ``POLYARCH_DOCKERHUB_MIRROR``)
  for pulls; a mirror without a scheme speaks http when loopback, else https.
- Per-host rules (``ClientOptions.hosts``, the CLI's config file ``[registry."host"]``): ``http`` (plain http),
  ``insecure`` (https without verification, falling back to http), ``ca`` (CAs trusted for that host only),
  ``mirrors`` (pulls of that registry go to its mirror, whose own rules then apply).
- Loopback registries (127.0.0.0/8, ::1, localhost) speak plain http; other hosts https with verification, unless
  listed in ``ClientOptions.insecure`` or their address lies in one of ``ClientOptions.insecure_networks``
  (docker's ``daemon.json`` CIDRs; a name is resolved to check it): https without verification (the client falls
  back to http).

Every value here is given by the caller; nothing is read from the environment or a file (the CLI does that).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads its config (HostConfig) without loading httpx
    from . import auth

__all__ = ["HUB_REGISTRY", "ClientOptions", "Endpoint", "HostConfig", "Route", "is_loopback", "route_for"]

HUB_REGISTRY = "https://registry-1.docker.io"


@dataclass(frozen=True, slots=True)
class HostConfig:
    """How one registry host is reached (buildkitd.toml's ``[registry."host"]``)."""

    host: str  # lower-case host[:port], as in image references
    http: bool = False  # plain http
    insecure: bool = False  # https without verification (then http)
    ca: tuple[str, ...] = ()  # PEM files trusted for this host only
    mirrors: tuple[str, ...] = ()  # pull mirror (host[:port] or URL); at most one


@dataclass(frozen=True, slots=True)
class Route:
    """Where requests for one registry go: base URL, TLS verification, extra CAs, credential host."""

    base: str
    verify: bool
    cred_host: str
    ca: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClientOptions:
    insecure: frozenset[str] = frozenset()  # lower-case hosts (host:port) allowed unverified https or http
    insecure_networks: tuple[str, ...] = ()  # CIDRs whose addresses are treated as ``insecure`` (daemon.json)
    hosts: tuple[HostConfig, ...] = ()  # per-host rules
    mirror: str = ""  # Docker Hub pull mirror (URL or host)
    ca_file: str = ""  # extra trusted CAs (PEM)
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 10.0
    timeout: float = 60.0
    chunk_threshold: int = 32 << 20
    chunk_size: int = 64 << 20
    parallel: int = 4
    allow_nondistributable: bool = False  # fetch foreign layers from their ``urls`` (see ``foreign``)


@dataclass
class Endpoint:
    """Connection facts for one registry host."""

    name: str
    base: str
    verify: bool
    authenticator: auth.Authenticator
    ca: tuple[str, ...] = ()
    lock: threading.Lock = field(default_factory=threading.Lock)


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_config(options: ClientOptions, host: str) -> HostConfig | None:
    host = host.lower()
    return next((h for h in options.hosts if h.host == host), None)


def _in_networks(host: str, networks: tuple[str, ...]) -> bool:
    if not networks:
        return False
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    try:
        addresses = [ipaddress.ip_address(name)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return False
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    return any(addr in net for addr in addresses for net in nets if addr.version == net.version)


def _direct(options: ClientOptions, host: str, cred_host: str) -> Route:
    rule = _host_config(options, host)
    ca = rule.ca if rule else ()
    if rule and rule.http:
        return Route(f"http://{host}", True, cred_host, ca)
    if is_loopback(host):
        return Route(f"http://{host}", True, cred_host, ca)
    if (rule and rule.insecure) or host.lower() in options.insecure or _in_networks(host, options.insecure_networks):
        return Route(f"https://{host}", False, cred_host, ca)
    return Route(f"https://{host}", True, cred_host, ca)


def route_for(options: ClientOptions, domain: str, *, push: bool) -> Route:
    """Where requests for ``domain`` go (pushes never go to a mirror)."""
    rule = _host_config(options, domain)
    mirror = options.mirror if domain == "docker.io" and options.mirror else ""
    if not mirror and rule and rule.mirrors:
        mirror = rule.mirrors[0]
    if mirror and not push:
        mirror = mirror.rstrip("/")
        host = mirror.split("://", 1)[-1]
        if "://" not in mirror:
            return _direct(options, host, host)
        mirror_rule = _host_config(options, host)
        verify = host.lower() not in options.insecure and not (mirror_rule and mirror_rule.insecure)
        return Route(mirror, verify, host, mirror_rule.ca if mirror_rule else ())
    if domain == "docker.io":
        return Route(HUB_REGISTRY, True, "docker.io", rule.ca if rule else ())
    return _direct(options, domain, domain)

