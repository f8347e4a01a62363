"""Running the app under uvicorn: address parsing, TLS (1.2 minimum, optional client certificates), a header
timeout uvicorn's h11 protocol lacks (slowloris), and a lock so one registry process owns a store's sessions.

Only ``polyarch registry serve`` imports this module (and so uvicorn).
"""

from __future__ import annotations

import fcntl
import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from polyarch.errors import UsageError

from .app import create_app
from .state import Registry

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


class _HeadDeadline:
    """Mixin for uvicorn's protocols: a deadline for receiving a complete request head (slowloris)."""

    header_timeout = 30.0
    loop: Any
    transport: Any
    cycle: Any

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def _disarm(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]


class TimedH11Protocol(_HeadDeadline, H11Protocol):
    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()


def _protocol(header_timeout: float) -> type:
    """httptools (C parser, much faster bodies) when installed, else h11; both with the head deadline."""
    try:
        from uvicorn.protocols.http import httptools_impl
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return type("RegistryH11Protocol", (TimedH11Protocol,), {"header_timeout": header_timeout})

    # uvicorn pauses reading once 64 KiB of body wait for the app; a socket read is up to 256 KiB, so a larger
    # mark halves the pause/resume round trips on blob uploads (memory stays bounded per connection).
    httptools_impl.HIGH_WATER_LIMIT = max(httptools_impl.HIGH_WATER_LIMIT, 256 << 10)

    class TimedHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._disarm()

    return type("RegistryHttpToolsProtocol", (TimedHttpToolsProtocol,), {"header_timeout": header_timeout})


def run(reg: Registry, host: str, port: int, *, tls: ssl.SSLContext | None = None, header_timeout: float = 30.0,
        keep_alive: float = 30.0, log_level: str = "warning") -> None:
    """Serve until interrupted (SIGINT/SIGTERM)."""
    protocol = _protocol(header_timeout)
    purge = min(60.0, max(reg.config.upload_ttl / 2, 0.5))
    config = uvicorn.Config(create_app(reg, purge_interval=purge), host=host, port=port, http=protocol, lifespan="on",  # type: ignore[arg-type]
                            log_level=log_level, access_log=log_level in ("debug", "info", "trace"),
                            timeout_keep_alive=int(keep_alive), server_header=False, date_header=True)
    config.load()
    if tls is not None:
        config.ssl = tls
    uvicorn.Server(config).run()
