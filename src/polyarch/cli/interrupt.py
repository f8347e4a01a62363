"""Ctrl-C and SIGTERM during a build: the first cancels it, a second exits at once.

The CLI is the composition root, so the signal handlers live here: ``build`` and ``bake`` run their solve inside
``cancel_on_signals()``, which installs handlers for SIGINT and SIGTERM (main thread only) and yields the build's
``polyarch.cancel.Cancel`` token, to be passed down to ``pipeline.run.build_many``. The first signal triggers the
token (the solver starts nothing more, running RUN containers are killed, the build's temporary state is removed
and its blobs rolled back, nothing is exported; the command then exits 130 through ``Cancelled``). A second signal
ends the process at once with 130 (``os._exit``): the builder's watcher (``worker.reap``) kills its containers and
reaps its mounts and bundles, and the next start reaps anything else. The previous handlers are restored when the
block ends; a signal that arrives after the build finished but before the block ends still cancels (raises
``Cancelled``), so what follows (export) never runs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from polyarch.cancel import Cancel, Cancelled

__all__ = ["SIGNALS", "cancel_on_signals"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130


def _exit_now() -> None:
    """The second signal: leave at once (cursor shown again if a live view hid it)."""
    try:
        if sys.stderr.isatty():
            os.write(2, b"\x1b[?25h\n")
    except (OSError, ValueError):
        pass
    os._exit(EXIT_CODE)


@contextmanager
def cancel_on_signals() -> Iterator[Cancel]:
    """Yield a ``Cancel`` token the first SIGINT/SIGTERM triggers; a second signal exits with 130 at once.

    :raises Cancelled: a signal arrived while the block ran (also when the block itself completed).
    """
    token = Cancel()
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield token
        return
    received = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        if received > 1:
            _exit_now()
        token.cancel()

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield token
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if token.cancelled:
        raise Cancelled()
