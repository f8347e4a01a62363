"""``Once``: a value computed at most once per key across threads (the others wait for it, and see its error)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Once"]

T = TypeVar("T")


class Once(Generic[T]):
    """``get(key, produce)`` runs ``produce`` for the first caller of ``key``; later callers get its result (or
    its exception), waiting while it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, tuple[threading.Event, list[T | BaseException]]] = {}

    def get(self, key: str, produce: Callable[[], T]) -> T:
        with self._lock:
            slot = self._slots.get(key)
            owner = slot is None
            if slot is None:
                slot = self._slots[key] = (threading.Event(), [])
        event, box = slot
        if owner:
            try:
                box.append(produce())
            except BaseException as exc:
                box.append(exc)
                raise
            finally:
                event.set()
        event.wait()
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return result
