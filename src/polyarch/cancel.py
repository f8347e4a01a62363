"""Cancellation flowing down: one ``Cancel`` token per build, triggered by the CLI, obeyed by whoever runs work.

The CLI (the composition root) makes the token and triggers it from its SIGINT/SIGTERM handler; the pipeline hands
it to the solver, which starts no new step once it is set, and to the executor's RUN runner, which kills its
container when it is set. ``Cancelled`` (exit code 130, like a shell's ^C) is what cancelled work raises.

API::

    cancel = Cancel()
    with cancel.hook(kill_my_container):   # runs on its own thread when cancel() is called (at once if already)
        ...
    cancel.check()                          # raises Cancelled once cancel() was called
    cancel.cancel()                         # safe from a signal handler: sets a flag, starts the hooks' threads
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from polyarch.errors import PolyarchError

__all__ = ["Cancel", "Cancelled"]


class Cancelled(PolyarchError):
    """The build was cancelled (Ctrl-C or SIGTERM): nothing was exported, the store is as it was."""

    reference = "cancelled"
    exit_code = 130

    def __init__(self, message: str = "build cancelled (interrupted)", *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)


class Cancel:
    """A one-shot cancellation token, thread-safe; hooks are what running work does to stop."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._hooks: dict[int, Callable[[], None]] = {}
        self._next = 0

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """:raises Cancelled: ``cancel()`` was called."""
        if self._event.is_set():
            raise Cancelled()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled (True) or ``timeout`` seconds passed (False)."""
        return self._event.wait(timeout)

    def cancel(self) -> None:
        """Cancel: set the flag and start every registered hook on its own thread (hooks of one token run once)."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            hooks = list(self._hooks.values())
        for fn in hooks:
            _start(fn)

    @contextmanager
    def hook(self, fn: Callable[[], None]) -> Iterator[None]:
        """Run ``fn`` (on a thread of its own) when the token is cancelled while the block runs; at once when it
        already is."""
        with self._lock:
            self._next += 1
            key = self._next
            self._hooks[key] = fn
            now = self._event.is_set()
        if now:
            _start(fn)
        try:
            yield
        finally:
            with self._lock:
                self._hooks.pop(key, None)


def _start(fn: Callable[[], None]) -> None:
    threading.Thread(target=fn, name="cancel-hook", daemon=True).start()
