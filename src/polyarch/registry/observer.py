"""The registry client's one outward seam for what it is doing: retries and blob transfers, reported to a
``TransferObserver`` the caller gives (the CLI connects it to its progress output). The client never prints.

Calls come from the threads of a transfer pool, so an observer must be thread-safe. ``NULL_OBSERVER`` ignores
everything (the default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from polyarch.oci.spec import Descriptor

__all__ = ["NULL_OBSERVER", "NullObserver", "Retry", "TransferObserver", "describe_failure"]


@dataclass(frozen=True, slots=True)
class Retry:
    """One retry about to happen: attempt ``attempt`` of at most ``limit`` retries, after ``delay`` seconds,
    because of ``reason`` (``503 Service Unavailable``, a connection error)."""

    registry: str
    what: str  # "GET /v2/library/alpine/blobs/sha256:…"
    attempt: int
    limit: int
    delay: float
    reason: str


class TransferObserver(Protocol):
    """What the client reports. ``action`` is ``pull`` or ``push``; ``done`` counts bytes of the blob moved so far
    (it can go back after a restarted download); ``outcome`` is ``fetched``, ``uploaded``, ``mounted`` or
    ``exists``."""

    def retrying(self, retry: Retry) -> None: ...
    def blob_started(self, desc: Descriptor, action: str) -> None: ...
    def blob_progress(self, desc: Descriptor, done: int) -> None: ...
    def blob_done(self, desc: Descriptor, action: str, outcome: str, seconds: float) -> None: ...


class NullObserver:
    """Ignores every report."""

    def retrying(self, retry: Retry) -> None:
        return None

    def blob_started(self, desc: Descriptor, action: str) -> None:
        return None

    def blob_progress(self, desc: Descriptor, done: int) -> None:
        return None

    def blob_done(self, desc: Descriptor, action: str, outcome: str, seconds: float) -> None:
        return None


NULL_OBSERVER = NullObserver()


def describe_failure(exc: BaseException) -> str:
    """A short reason for a failed attempt (``ConnectError: [Errno 111] Connection refused``)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
