"""What the registry client reports (``registry.observer.TransferObserver``), shown on stderr.

- Every retry, in every mode: ``10.0.0.5:5000: retrying in 1.2s (2/5): 503 Service Unavailable (GET /v2/…)``.
- In a build (``ProgressObserver``): retries as warnings and each blob pulled, pushed or mounted as an info
  message of the build's progress.
- Per blob, for ``pull``/``push``/``imagetools copy``: ``plain`` prints one line when a blob is done
  (``pulled sha256:0123456789ab 12.3 MB in 1.2s (10.2 MB/s)``, ``mounted …``, ``already present …``); ``tty``
  shows a live bar per blob (bytes and rate, through rich); ``quiet`` and ``retries`` show none.

``auto`` is ``tty`` when the stream is a terminal, else ``plain``. Thread-safe: the client reports from a pool.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polyarch.oci.spec import Descriptor
    from polyarch.progress import Progress
    from polyarch.registry.observer import Retry

__all__ = ["MODES", "ProgressObserver", "TransferProgress", "format_bytes", "retry_line", "transfer_progress"]

MODES = ("auto", "tty", "plain", "quiet")
_DONE_WORD = {"fetched": "pulled", "uploaded": "pushed", "mounted": "mounted", "exists": "already present"}


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _short(desc: Descriptor) -> str:
    return f"{desc.digest.algorithm}:{desc.digest.hex[:12]}"


def done_line(desc: Descriptor, outcome: str, seconds: float) -> str:
    """``pulled sha256:0123456789ab 12.3 MB in 1.2s (10.2 MB/s)``; ``mounted …`` and ``already present …``
    without time."""
    word = _DONE_WORD.get(outcome, outcome)
    if outcome in ("fetched", "uploaded"):
        rate = desc.size / seconds if seconds > 0 else 0.0
        return f"{word} {_short(desc)} {format_bytes(desc.size)} in {seconds:.1f}s ({format_bytes(rate)}/s)"
    return f"{word} {_short(desc)} {format_bytes(desc.size)}"


def retry_line(retry: Retry) -> str:
    where = f" ({retry.what})" if retry.what else ""
    return (f"{retry.registry}: retrying in {retry.delay:.1f}s ({retry.attempt}/{retry.limit}): "
            f"{retry.reason}{where}")


class TransferProgress:
    """A ``TransferObserver`` writing to ``out`` in one of ``plain``, ``tty``, ``quiet``, ``retries``."""

    def __init__(self, mode: str, out: IO[str]) -> None:
        self.mode = mode
        self.out = out
        self._lock = threading.Lock()
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}
        if mode == "tty":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), console=Console(file=out), transient=False)
            self._bar.start()

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.stop()
                self._bar = None

    def _print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            self.out.write(line + "\n")
            self.out.flush()

    def retrying(self, retry: Retry) -> None:
        with self._lock:
            self._print(retry_line(retry))

    def blob_started(self, desc: Descriptor, action: str) -> None:
        with self._lock:
            if self._bar is not None and str(desc.digest) not in self._tasks:
                word = "pulling" if action == "pull" else "pushing"
                self._tasks[str(desc.digest)] = self._bar.add_task(f"{word} {_short(desc)}", total=desc.size)

    def blob_progress(self, desc: Descriptor, done: int) -> None:
        with self._lock:
            task = self._tasks.get(str(desc.digest))
            if self._bar is not None and task is not None:
                self._bar.update(task, completed=done)

    def blob_done(self, desc: Descriptor, action: str, outcome: str, seconds: float) -> None:
        word = _DONE_WORD.get(outcome, outcome)
        with self._lock:
            if self._bar is not None:
                task = self._tasks.get(str(desc.digest))
                if task is None:
                    task = self._tasks[str(desc.digest)] = self._bar.add_task("", total=desc.size)
                self._bar.update(task, completed=desc.size, description=f"{word} {_short(desc)}")
                return
            if self.mode == "plain":
                self._print(done_line(desc, outcome, seconds))


class ProgressObserver:
    """A build's ``TransferObserver``: retries become warnings, blobs moved become info messages of ``progress``
    (blobs the registry already had are not mentioned)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def retrying(self, retry: Retry) -> None:
        self.progress.message(retry_line(retry))

    def blob_started(self, desc: Descriptor, action: str) -> None:
        return None

    def blob_progress(self, desc: Descriptor, done: int) -> None:
        return None

    def blob_done(self, desc: Descriptor, action: str, outcome: str, seconds: float) -> None:
        if outcome != "exists":
            self.progress.message(done_line(desc, outcome, seconds), level="info")


@contextmanager
def transfer_progress(mode: str = "retries", out: IO[str] | None = None) -> Iterator[TransferProgress]:
    """A ``TransferProgress`` on ``out`` (default stderr), closed on exit; ``auto`` resolved against ``out``."""
    stream = out if out is not None else sys.stderr
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    progress = TransferProgress(mode, stream)
    try:
        yield progress
    finally:
        progress.close()
