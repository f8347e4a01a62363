"""Every change polyarch makes to a third-party library, in one place: one function per patch, each saying what it
changes, why, and which library versions it was written against. ``tests/test_libpatches.py`` fails when an
installed library no longer has what a patch relies on, so an upgrade cannot silently turn a patch into a no-op.

* ``trim_imports`` (httpx 0.27–0.29, httpcore 1.0): the ``polyarch`` process never loads httpx's command-line
  client or trio. Called by ``cli.main.main`` only.
* ``raise_httpcore_read_size`` (httpcore 1.0): sockets read in larger pieces. Called by
  ``registry.client.RegistryClient``.
* ``uvicorn_protocol`` (uvicorn 0.29–0.55): uvicorn's HTTP protocols with a request-head deadline, and a larger
  read-pause mark for httptools. Called by ``registry.server.serve.run``.

This module imports no library at import time (``polyarch --help`` stays fast); each patch imports what it patches.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["TRIMMED_IMPORTS", "UVICORN_HIGH_WATER", "raise_httpcore_read_size", "trim_imports", "uvicorn_protocol"]

# module → the library that imports it eagerly and falls back (``except ImportError``) when it is absent
TRIMMED_IMPORTS = {"httpx._main": "httpx", "trio": "httpcore"}
UVICORN_HIGH_WATER = 256 << 10


def trim_imports() -> None:
    """A None entry in ``sys.modules`` for each of ``TRIMMED_IMPORTS``, so importing it fails and its importer
    falls back as when the package is absent.

    Why: httpx's package imports its command-line client (``httpx._main``: rich.console and pygments, ~45 ms);
    httpcore imports trio whenever it is installed (~60 ms), while polyarch's only async code (the registry
    server) runs on asyncio. Only for the ``polyarch`` process, never when polyarch is imported as a library.
    Versions: httpx 0.27–0.29 (``try: from ._main import main``), httpcore 1.0 (``try: import trio`` in
    ``_synchronization``).
    """
    for name in TRIMMED_IMPORTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def raise_httpcore_read_size(nbytes: int) -> None:
    """``httpcore._sync.http11.HTTP11Connection.READ_NUM_BYTES`` (64 KiB) raised to ``nbytes`` (never lowered).

    Why: reading sockets in 1 MiB pieces costs a quarter less CPU per blob byte, which is what bounds download
    speed on loopback and fast LANs. The attribute is a class constant read on every receive, so raising it is
    safe. Versions: httpcore 1.0 (sync client only; polyarch's registry client is sync). Another httpcore that
    lacks the class or attribute keeps its default.
    """
    try:
        from httpcore._sync.http11 import HTTP11Connection
    except ImportError:  # pragma: no cover - another httpcore layout keeps its default
        return
    current = getattr(HTTP11Connection, "READ_NUM_BYTES", None)
    if isinstance(current, int) and current < nbytes:
        HTTP11Connection.READ_NUM_BYTES = nbytes


class _HeadDeadline:
    """Mixin for uvicorn's protocols: a deadline for receiving a complete request head (slowloris).

    Relies on uvicorn's protocol attributes ``loop``, ``transport``, ``cycle`` (``cycle.response_complete``) and
    methods ``connection_made``, ``on_response_complete``, ``connection_lost``.
    """

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


def uvicorn_protocol(header_timeout: float) -> type:
    """uvicorn's httptools protocol (C parser, much faster bodies) when httptools is installed, else its h11
    protocol, subclassed with a request-head deadline of ``header_timeout`` seconds (uvicorn's h11 protocol has
    none: a slowloris client could hold a connection forever). The head is complete at httptools'
    ``on_headers_complete``, or when h11's ``handle_events`` has started a cycle.

    With httptools, also raises ``uvicorn.protocols.http.httptools_impl.HIGH_WATER_LIMIT`` (64 KiB) to
    ``UVICORN_HIGH_WATER``: uvicorn pauses reading once that much body waits for the app, and a socket read is up
    to 256 KiB, so a larger mark halves the pause/resume round trips on blob uploads (memory stays bounded per
    connection). Versions: uvicorn 0.29–0.55 (``H11Protocol``, ``HttpToolsProtocol``, module-level
    ``HIGH_WATER_LIMIT``).
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    try:
        from uvicorn.protocols.http import httptools_impl
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        class TimedH11Protocol(_HeadDeadline, H11Protocol):
            def handle_events(self) -> None:
                super().handle_events()
                if self.cycle is not None and not self.cycle.response_complete:
                    self._disarm()

        return type("RegistryH11Protocol", (TimedH11Protocol,), {"header_timeout": header_timeout})

    httptools_impl.HIGH_WATER_LIMIT = max(httptools_impl.HIGH_WATER_LIMIT, UVICORN_HIGH_WATER)

    class TimedHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._disarm()

    return type("RegistryHttpToolsProtocol", (TimedHttpToolsProtocol,), {"header_timeout": header_timeout})
