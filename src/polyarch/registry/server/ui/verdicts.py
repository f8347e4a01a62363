"""verify's verdicts for the coverage matrix, computed in the background and cached by manifest digest.

The registry layer cannot import ``verify/``: the CLI gives a ``Verifier`` (``verify_image`` over the store) and
this module only schedules it. One worker thread takes digests from a queue — a push enqueues its image's
platform manifests (``after_push``), a page enqueues the cells it shows that have no verdict yet — and a page
never waits: a cell without a verdict shows ``pending``. A digest's verdict never changes, so it is kept (at most
``max_entries``; when full the cache starts over).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from typing import Protocol

from .catalog import Catalog
from .model import CellVerdict, PlatformEntry

__all__ = ["PENDING", "UNVERIFIED", "VerdictCache", "Verifier"]

log = logging.getLogger("polyarch.registry.ui")
PENDING = CellVerdict("pending", "verification queued")
UNVERIFIED = CellVerdict("unverified", "no verifier for this storage")


class Verifier(Protocol):
    """Checks one platform manifest (its ELF files against its platform); never raises for a bad image."""

    def __call__(self, entry: PlatformEntry) -> CellVerdict: ...


class VerdictCache:
    """Verdicts by manifest digest; ``start()`` the worker, ``close()`` it. Without a verifier every cell is
    ``unverified``."""

    def __init__(self, catalog: Catalog, verifier: Verifier | None, *, max_entries: int = 100_000) -> None:
        self._catalog = catalog
        self._verifier = verifier
        self._max = max_entries
        self._done: dict[str, CellVerdict] = {}
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._queue: queue.Queue[PlatformEntry | tuple[str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._verifier is not None and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="registry-ui-verify", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def get(self, entry: PlatformEntry) -> CellVerdict:
        """The verdict, or ``PENDING`` (and the entry queued); never blocks on verification."""
        if self._verifier is None:
            return UNVERIFIED
        known = self._done.get(entry.digest)
        if known is not None:
            return known
        self._enqueue(entry)
        return PENDING

    def after_push(self, digest: str, media_type: str = "") -> None:
        """Queue the image a push just stored (its summary is read on the worker, not the request)."""
        if self._verifier is not None:
            self._queue.put((digest, media_type))

    def wait_idle(self, timeout: float) -> bool:
        """Tests and benches: whether the queue drained within ``timeout`` seconds."""
        done = threading.Event()

        def check() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=check, daemon=True).start()
        return done.wait(timeout)

    def known(self, entries: Iterable[PlatformEntry]) -> dict[str, CellVerdict]:
        return {e.digest: self._done[e.digest] for e in entries if e.digest in self._done}

    def _enqueue(self, entry: PlatformEntry) -> None:
        with self._lock:
            if entry.digest in self._queued:
                return
            self._queued.add(entry.digest)
        self._queue.put(entry)

    def _work(self) -> None:
        assert self._verifier is not None
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if isinstance(item, tuple):
                    for entry in self._catalog.summary(*item).entries:
                        if entry.digest not in self._done:
                            self._enqueue(entry)
                    continue
                try:
                    verdict = self._verifier(item)
                except Exception as exc:  # a verifier bug must not stop the worker
                    log.exception("verify of %s failed", item.digest)
                    verdict = CellVerdict("error", str(exc)[:200])
                with self._lock:
                    if len(self._done) >= self._max:
                        self._done.clear()
                    self._done[item.digest] = verdict
                    self._queued.discard(item.digest)
            finally:
                self._queue.task_done()
