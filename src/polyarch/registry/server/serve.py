"""Running the app under uvicorn: address parsing, TLS (1.2 minimum, optional client certificates), a header
timeout uvicorn's protocols lack (slowloris; ``libpatches.uvicorn_protocol``), and a lock so one registry process
owns a store's sessions.

Only ``polyarch registry serve`` imports this module (and so uvicorn).
"""

from __future__ import annotations

import fcntl
import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from polyarch.errors import UsageError
from polyarch.libpatches import uvicorn_protocol

from .app import create_app
from .state import Registry
from .ui import WebUi

__all__ = ["exposure_warning", "is_loopback", "parse_addr", "run", "single_instance", "tls_context"]


def parse_addr(text: str) -> tuple[str, int]:
    """``127.0.0.1:5000``, ``[::1]:5000``, ``localhost:5000`` → (host, port). :raises UsageError:"""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"invalid --addr {text!r}: expected HOST:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise UsageError(f"invalid --addr {text!r}: missing host", hint="use 0.0.0.0:PORT to listen everywhere")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, auth_enabled: bool) -> str | None:
    """The warning to print when the registry listens beyond loopback with no authentication."""
    if is_loopback(host) or auth_enabled:
        return None
    return (f"listening on {host} beyond loopback without authentication: anyone who can reach it can push "
            "and delete; use --htpasswd (and --tls-cert/--tls-key)")


def tls_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """Server TLS context: TLS 1.2 or newer only; with ``client_ca``, a client certificate is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
        if client_ca is not None:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load TLS certificate/key: {getattr(exc, 'strerror', None) or exc}") from exc
    return ctx


@contextmanager
def single_instance(root: Path) -> Iterator[None]:
    """Hold ``<root>/registry.lock`` for the life of the server. :raises UsageError: when another holds it."""
    path = root / "registry.lock"
    fd = open(path, "a+b")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another registry is already serving {root}",
                             hint="stop it, or give this one another --root") from None
        yield
    finally:
        fd.close()


def run(reg: Registry, host: str, port: int, *, tls: ssl.SSLContext | None = None, header_timeout: float = 30.0,
        keep_alive: float = 30.0, log_level: str = "warning", ui: WebUi | None = None) -> None:
    """Serve until interrupted (SIGINT/SIGTERM); with ``ui`` the web page at ``/ui/``."""
    protocol = uvicorn_protocol(header_timeout)
    purge = min(60.0, max(reg.config.upload_ttl / 2, 0.5))
    config = uvicorn.Config(create_app(reg, purge_interval=purge, ui=ui), host=host, port=port, http=protocol, lifespan="on",  # type: ignore[arg-type]
                            log_level=log_level, access_log=log_level in ("debug", "info", "trace"),
                            timeout_keep_alive=int(keep_alive), server_header=False, date_header=True)
    config.load()
    if tls is not None:
        config.ssl = tls
    uvicorn.Server(config).run()
