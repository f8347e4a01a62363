"""Build progress: event values, and renderers that show them (BuildKit's formats).

Events: ``VertexStarted`` (``#7 [linux/arm64 builder 3/5] RUN go build``), ``VertexLog`` (one output line),
``VertexDone`` (``#7 DONE 4.2s``), ``VertexCached`` (``#7 CACHED``), ``VertexError`` (``#7 ERROR: …``, or
``#7 CANCELED`` when the build was cancelled) and ``Message`` (warnings, notes). Every vertex event carries a
digest: the solver's vertex digest, or one made from the progress id and name for steps outside the graph
(export, verify).

Renderers: ``plain`` (the lines above), ``rawjson`` (BuildKit's ``SolveStatus`` JSON, one object per line:
``vertexes`` [{digest, inputs, name, started, completed, cached, error}], ``logs`` [{vertex, stream, data (base64),
timestamp}], ``warnings`` [{level, short (base64)}]; timestamps RFC 3339 in UTC; no ``statuses``, polyarch has no
sub-step progress), ``quiet`` (nothing while it runs) and ``tty`` (a live view through rich, imported only then).
``auto`` is tty when the stream is a terminal, else plain.

A failing step's last output lines (``TAIL_LINES``, BuildKit's 10) travel on its ``VertexError``; the plain, tty
and quiet renderers print them when they close (BuildKit's block: ``------`` / `` > NAME:`` / lines / ``------``),
so the tty view, which redraws, never hides them; rawjson carries every line in ``logs`` and the error in the
vertex. No full log is kept: plain progress shows every line as it comes. ``Progress`` numbers the vertices and
is what the solver calls; it is thread-safe.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from polyarch.cancel import Cancelled
from polyarch.errors import UsageError

__all__ = [
    "MODES",
    "TAIL_LINES",
    "Message",
    "Progress",
    "Renderer",
    "VertexCached",
    "VertexDone",
    "VertexError",
    "VertexLog",
    "VertexStarted",
    "failure_block",
    "make_renderer",
]

MODES = ("auto", "tty", "plain", "rawjson", "quiet")
TAIL_LINES = 10  # output lines of a failed step shown again at the end (BuildKit shows 10)


@dataclass(frozen=True, slots=True)
class VertexStarted:
    id: int
    name: str
    time: float  # wall clock (time.time())
    digest: str = ""
    inputs: tuple[str, ...] = ()


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
    digest: str = ""
    inputs: tuple[str, ...] = ()
    time: float = 0.0  # wall clock


@dataclass(frozen=True, slots=True)
class VertexError:
    id: int
    name: str
    error: str
    elapsed: float
    tail: tuple[str, ...] = field(default=())  # the last output lines ("0.123 text"), oldest first
    canceled: bool = False  # stopped because the build was cancelled, not failed


@dataclass(frozen=True, slots=True)
class Message:
    level: str  # info | warning
    text: str


Event = VertexStarted | VertexLog | VertexDone | VertexCached | VertexError | Message


class Renderer(Protocol):
    def emit(self, event: Event) -> None: ...
    def close(self) -> None: ...


def failure_block(event: VertexError) -> str:
    """BuildKit's summary of a failed step: its name and last output lines between rulers ("" when canceled)."""
    if event.canceled:
        return ""
    lines = ["------", f" > {event.name}:", *event.tail, "------"]
    return "\n".join(lines) + "\n"


class _Failures:
    """The failed steps a human renderer prints again when it closes."""

    def __init__(self) -> None:
        self.failed: list[VertexError] = []

    def note(self, event: Event) -> None:
        if isinstance(event, VertexError) and not event.canceled:
            self.failed.append(event)

    def text(self) -> str:
        return "".join(failure_block(e) for e in self.failed)


class PlainRenderer:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._last = 0
        self._failures = _Failures()

    def emit(self, event: Event) -> None:
        self._failures.note(event)
        if isinstance(event, VertexStarted):
            text = f"\n#{event.id} {event.name}"
        elif isinstance(event, VertexLog):
            text = f"#{event.id} {event.offset:.3f} {event.line}"
        elif isinstance(event, VertexDone):
            text = f"#{event.id} DONE {event.elapsed:.1f}s"
        elif isinstance(event, VertexCached):
            text = f"\n#{event.id} {event.name}\n#{event.id} CACHED"
        elif isinstance(event, VertexError):
            text = f"#{event.id} CANCELED" if event.canceled else f"#{event.id} ERROR: {event.error}"
        else:
            text = f"{event.level.upper()}: {event.text}"
        self.out.write(text.lstrip("\n") + "\n" if self._last == 0 else text + "\n")
        self._last += 1
        self.out.flush()

    def close(self) -> None:
        block = self._failures.text()
        if block:
            self.out.write(block)
        self.out.flush()


def _rfc3339(t: float) -> str:
    """Wall-clock seconds → RFC 3339 in UTC with fractional seconds (Go's time.Time JSON, trailing zeros cut)."""
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return stamp + "Z"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogateescape")).decode("ascii")


class RawJsonRenderer:
    """BuildKit's ``SolveStatus`` (``buildctl``/``docker buildx --progress rawjson``): one JSON object a line."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._vertices: dict[int, dict[str, Any]] = {}  # id -> the vertex as last sent (without end fields)

    def _write(self, doc: dict[str, Any]) -> None:
        self.out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self.out.flush()

    @staticmethod
    def _vertex(digest: str, inputs: Sequence[str], name: str, started: float) -> dict[str, Any]:
        doc: dict[str, Any] = {"digest": digest}
        if inputs:
            doc["inputs"] = list(inputs)
        doc.update(name=name, started=_rfc3339(started))
        return doc

    def emit(self, event: Event) -> None:
        if isinstance(event, VertexStarted):
            vertex = self._vertex(event.digest, event.inputs, event.name, event.time)
            self._vertices[event.id] = {**vertex, "_start": event.time}
            self._write({"vertexes": [vertex]})
        elif isinstance(event, VertexCached):
            vertex = self._vertex(event.digest, event.inputs, event.name, event.time)
            self._write({"vertexes": [{**vertex, "completed": vertex["started"], "cached": True}]})
        elif isinstance(event, VertexLog):
            known = self._vertices.get(event.id)
            if known is None:
                return
            self._write({"logs": [{"vertex": known["digest"], "stream": 2 if event.stream == "stderr" else 1,
                                   "data": _b64(event.line + "\n"),
                                   "timestamp": _rfc3339(known["_start"] + event.offset)}]})
        elif isinstance(event, VertexDone | VertexError):
            known = self._vertices.pop(event.id, None)
            if known is None:
                return
            start = known.pop("_start")
            vertex = {**known, "completed": _rfc3339(start + event.elapsed)}
            if isinstance(event, VertexError):
                vertex["error"] = "context canceled" if event.canceled else event.error
            self._write({"vertexes": [vertex]})
        elif event.level == "warning":
            self._write({"warnings": [{"level": 1, "short": _b64(event.text)}]})
        else:  # a note: a vertex that starts and completes at once (BuildKit's [internal] steps look alike)
            now = time.time()
            digest = "sha256:" + hashlib.sha256(f"polyarch-note/{now}/{event.text}".encode()).hexdigest()
            vertex = self._vertex(digest, (), event.text, now)
            self._write({"vertexes": [{**vertex, "completed": vertex["started"]}]})

    def close(self) -> None:
        self.out.flush()


class QuietRenderer:
    """Nothing while the build runs; a failed step's last lines when it closes (on ``out``, if given)."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out
        self._failures = _Failures()

    def emit(self, event: Event) -> None:
        self._failures.note(event)

    def close(self) -> None:
        block = self._failures.text()
        if block and self.out is not None:
            self.out.write(block)
            self.out.flush()


class TtyRenderer:
    """A live list of the vertices with their state and the last output lines of the running ones; when it
    closes, the last output lines of every failed step, below the final view."""

    def __init__(self, out: IO[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.out = out
        self.console = Console(file=out)
        self._rows: dict[int, list[Any]] = {}  # id -> [name, state, start, elapsed, last line]
        self._start = time.monotonic()
        self._failures = _Failures()
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
            style = {"done": "blue", "cached": "blue", "error": "red", "canceled": "yellow", "running": ""}[state]
            suffix = {"cached": "CACHED", "canceled": "CANCELED"}.get(state, f"{elapsed:.1f}s")
            width = max(20, self.console.width - len(suffix) - 6)
            shown = name if len(name) <= width else name[: width - 1] + "…"
            text.append(f" => {shown.ljust(width)}  {suffix}\n", style=style)
            if state in ("running", "error") and last:
                text.append(f" => => # {last[: self.console.width - 10]}\n", style="dim")
        return text

    def emit(self, event: Event) -> None:
        self._failures.note(event)
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
            state = "canceled" if event.canceled else "error"
            self._rows[event.id][1:5] = [state, self._rows[event.id][2], event.elapsed, event.error]
        elif isinstance(event, Message):
            self.console.print(f"{event.level.upper()}: {event.text}")

    def close(self) -> None:
        self._live.stop()
        block = self._failures.text()
        if block:
            self.out.write(block)
            self.out.flush()


def make_renderer(mode: str, out: IO[str] | None = None) -> Renderer:
    stream = out if out is not None else sys.stderr
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    if mode == "plain":
        return PlainRenderer(stream)
    if mode == "rawjson":
        return RawJsonRenderer(stream)
    if mode == "quiet":
        return QuietRenderer(stream)
    if mode == "tty":
        return TtyRenderer(stream)
    raise UsageError(f"unknown progress mode {mode!r}", hint="use " + ", ".join(MODES))


def _progress_digest(vid: int, name: str) -> str:
    """The digest of a step outside the build graph (export, verify): unique per progress id."""
    return "sha256:" + hashlib.sha256(f"polyarch-progress/{vid}/{name}".encode()).hexdigest()


class Progress:
    """Numbers vertices and forwards events to a renderer, from any thread."""

    def __init__(self, renderer: Renderer | None = None) -> None:
        self.renderer: Renderer = renderer or QuietRenderer()
        self._lock = threading.Lock()
        self._next = 0
        self._tails: dict[int, deque[str]] = {}  # running vertex id -> its last output lines
        self.events: list[Event] = []  # every event but output lines, for callers that report (tests, bake)

    def _emit(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, VertexLog):  # output lines are rendered, not kept (they can be many)
                tail = self._tails.get(event.id)
                if tail is not None:
                    tail.append(f"{event.offset:.3f} {event.line}")
            else:
                self.events.append(event)
            self.renderer.emit(event)

    def _take_tail(self, vid: int) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._tails.pop(vid, ()))

    def new_id(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def cached(self, name: str, *, digest: str = "", inputs: Sequence[str] = ()) -> None:
        vid = self.new_id()
        self._emit(VertexCached(vid, name, digest or _progress_digest(vid, name), tuple(inputs), time.time()))

    def message(self, text: str, level: str = "warning") -> None:
        self._emit(Message(level, text))

    @contextmanager
    def vertex(self, name: str, *, digest: str = "", inputs: Sequence[str] = ()) -> Iterator[VertexHandle]:
        handle = VertexHandle(self, self.new_id(), name, time.monotonic())
        with self._lock:
            self._tails[handle.id] = deque(maxlen=TAIL_LINES)
        self._emit(VertexStarted(handle.id, name, time.time(), digest or _progress_digest(handle.id, name),
                                 tuple(inputs)))
        try:
            yield handle
        except BaseException as exc:
            tail = self._take_tail(handle.id)
            if not handle.cached_:
                canceled = isinstance(exc, Cancelled | KeyboardInterrupt)
                self._emit(VertexError(handle.id, name, str(exc) or type(exc).__name__,
                                       time.monotonic() - handle.start, tail, canceled))
            raise
        self._take_tail(handle.id)
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
