"""Build progress: event values, and renderers that show them (BuildKit's formats).

Events: ``VertexStarted`` (``#7 [linux/arm64 builder 3/5] RUN go build``), ``VertexLog`` (one output line),
``VertexDone`` (``#7 DONE 4.2s``), ``VertexCached`` (``#7 CACHED``), ``VertexError`` (``#7 ERROR: …``) and
``Message`` (warnings, notes). Renderers: ``plain`` (the lines above), ``rawjson`` (one JSON object per event
and line), ``quiet`` (nothing) and ``tty`` (a live view through rich, imported only then). ``auto`` is tty when
the stream is a terminal, else plain. ``Progress`` numbers the vertices and is what the solver calls; it is
thread-safe.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import IO, Any, Protocol

from polyarch.errors import UsageError

__all__ = [
    "MODES",
    "Message",
    "Progress",
    "Renderer",
    "VertexCached",
    "VertexDone",
    "VertexError",
    "VertexLog",
    "VertexStarted",
    "make_renderer",
]

MODES = ("auto", "tty", "plain", "rawjson", "quiet")


@dataclass(frozen=True, slots=True)
class VertexStarted:
    id: int
    name: str
    time: float


@dataclass(frozen=True, slots=True)
class VertexLog:
    id: int
    line: str
    offset: float  # seconds since the vertex started
    stream: str = "stdout"


@dataclass(frozen=True, slots=True)
class VertexDone:
    id: int
    name: str
    elapsed: float


@dataclass(frozen=True, slots=True)
class VertexCached:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class VertexError:
    id: int
    name: str
    error: str
    elapsed: float


@dataclass(frozen=True, slots=True)
class Message:
    level: str  # info | warning
    text: str


Event = VertexStarted | VertexLog | VertexDone | VertexCached | VertexError | Message


class Renderer(Protocol):
    def emit(self, event: Event) -> None: ...
    def close(self) -> None: ...


class PlainRenderer:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._last = 0

    def emit(self, event: Event) -> None:
        if isinstance(event, VertexStarted):
            text = f"\n#{event.id} {event.name}"
        elif isinstance(event, VertexLog):
            text = f"#{event.id} {event.offset:.3f} {event.line}"
        elif isinstance(event, VertexDone):
            text = f"#{event.id} DONE {event.elapsed:.1f}s"
        elif isinstance(event, VertexCached):
            text = f"\n#{event.id} {event.name}\n#{event.id} CACHED"
        elif isinstance(event, VertexError):
            text = f"#{event.id} ERROR: {event.error}"
        else:
            text = f"{event.level.upper()}: {event.text}"
        self.out.write(text.lstrip("\n") + "\n" if self._last == 0 else text + "\n")
        self._last += 1
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class RawJsonRenderer:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def emit(self, event: Event) -> None:
        doc: dict[str, Any] = {"type": type(event).__name__, **asdict(event)}
        self.out.write(json.dumps(doc, sort_keys=True) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class QuietRenderer:
    def emit(self, event: Event) -> None:
        return None

    def close(self) -> None:
        return None


class TtyRenderer:
    """A live list of the vertices with their state and the last output lines of the running ones."""

    def __init__(self, out: IO[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self._rows: dict[int, list[Any]] = {}  # id -> [name, state, start, elapsed, last line]
        self._start = time.monotonic()
        self._live = Live(console=self.console, refresh_per_second=8, transient=False,
                          get_renderable=self._render)
        self._live.start()

    def _render(self) -> Any:
        from rich.text import Text

        text = Text()
        text.append(f"[+] Building {time.monotonic() - self._start:.1f}s\n", style="bold blue")
        for _vid, (name, state, start, elapsed, last) in sorted(self._rows.items()):
            if state == "running":
                elapsed = time.monotonic() - start
            style = {"done": "blue", "cached": "blue", "error": "red", "running": ""}[state]
            suffix = "CACHED" if state == "cached" else f"{elapsed:.1f}s"
            width = max(20, self.console.width - len(suffix) - 6)
            shown = name if len(name) <= width else name[: width - 1] + "…"
            text.append(f" => {shown.ljust(width)}  {suffix}\n", style=style)
            if state in ("running", "error") and last:
                text.append(f" => => # {last[: self.console.width - 10]}\n", style="dim")
        return text

    def emit(self, event: Event) -> None:
        now = time.monotonic()
        if isinstance(event, VertexStarted):
            self._rows[event.id] = [event.name, "running", now, 0.0, ""]
        elif isinstance(event, VertexLog) and event.id in self._rows:
            self._rows[event.id][4] = event.line[-200:]
        elif isinstance(event, VertexDone) and event.id in self._rows:
            self._rows[event.id][1:4] = ["done", self._rows[event.id][2], event.elapsed]
        elif isinstance(event, VertexCached):
            self._rows[event.id] = [event.name, "cached", now, 0.0, ""]
        elif isinstance(event, VertexError) and event.id in self._rows:
            self._rows[event.id][1:5] = ["error", self._rows[event.id][2], event.elapsed, event.error]
        elif isinstance(event, Message):
            self.console.print(f"{event.level.upper()}: {event.text}")

    def close(self) -> None:
        self._live.stop()


def make_renderer(mode: str, out: IO[str] | None = None) -> Renderer:
    stream = out if out is not None else sys.stderr
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    if mode == "plain":
        return PlainRenderer(stream)
    if mode == "rawjson":
        return RawJsonRenderer(stream)
    if mode == "quiet":
        return QuietRenderer()
    if mode == "tty":
        return TtyRenderer(stream)
    raise UsageError(f"unknown progress mode {mode!r}", hint="use " + ", ".join(MODES))


class Progress:
    """Numbers vertices and forwards events to a renderer, from any thread."""

    def __init__(self, renderer: Renderer | None = None) -> None:
        self.renderer: Renderer = renderer or QuietRenderer()
        self._lock = threading.Lock()
        self._next = 0
        self.events: list[Event] = []  # every event but output lines, for callers that report (tests, bake)

    def _emit(self, event: Event) -> None:
        with self._lock:
            if not isinstance(event, VertexLog):  # output lines are rendered, not kept (they can be many)
                self.events.append(event)
            self.renderer.emit(event)

    def new_id(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def cached(self, name: str) -> None:
        self._emit(VertexCached(self.new_id(), name))

    def message(self, text: str, level: str = "warning") -> None:
        self._emit(Message(level, text))

    @contextmanager
    def vertex(self, name: str) -> Iterator[VertexHandle]:
        handle = VertexHandle(self, self.new_id(), name, time.monotonic())
        self._emit(VertexStarted(handle.id, name, time.time()))
        try:
            yield handle
        except BaseException as exc:
            if not handle.cached_:
                self._emit(VertexError(handle.id, name, str(exc) or type(exc).__name__,
                                       time.monotonic() - handle.start))
            raise
        if handle.cached_:
            return
        self._emit(VertexDone(handle.id, name, time.monotonic() - handle.start))

    def close(self) -> None:
        with self._lock:
            self.renderer.close()


@dataclass(slots=True)
class VertexHandle:
    progress: Progress
    id: int
    name: str
    start: float
    cached_: bool = False

    def log(self, line: str, stream: str = "stdout") -> None:
        self.progress._emit(VertexLog(self.id, line, time.monotonic() - self.start, stream))

    def output(self, data: bytes, stream: str = "stdout") -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            self.log(line, stream)
