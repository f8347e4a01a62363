"""Where and how a registry host is reached: the client's options and the endpoint rules.

- ``docker.io`` is ``registry-1.docker.io``, or ``ClientOptions.mirror`` (the CLI's ``POLYARCH_DOCKERHUB_MIRROR``)
  for pulls; a mirror without a scheme speaks http when loopback, else https.
- Loopback registries (127.0.0.0/8, ::1, localhost) speak plain http; other hosts https with verification, unless
  listed in ``ClientOptions.insecure``: https without verification (the client falls back to http).

Every value here is given by the caller; nothing is read from the environment (the CLI does that).
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field

from . import auth

__all__ = ["HUB_REGISTRY", "ClientOptions", "Endpoint", "base_for", "is_loopback"]

HUB_REGISTRY = "https://registry-1.docker.io"


@dataclass(frozen=True, slots=True)
class ClientOptions:
    insecure: frozenset[str] = frozenset()  # lower-case hosts (host:port) allowed unverified https or http
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


def base_for(options: ClientOptions, domain: str, *, push: bool) -> tuple[str, bool, str]:
    """(base URL, verify TLS, credential host) of ``domain``."""
    if domain == "docker.io":
        if options.mirror and not push:
            mirror = options.mirror.rstrip("/")
            host = mirror.split("://", 1)[-1]
            if "://" not in mirror:
                mirror = ("http://" if is_loopback(host) else "https://") + mirror
            return mirror, host.lower() not in options.insecure, host
        return HUB_REGISTRY, True, "docker.io"
    if is_loopback(domain):
        return f"http://{domain}", True, domain
    if domain.lower() in options.insecure:
        return f"https://{domain}", False, domain
    return f"https://{domain}", True, domain
