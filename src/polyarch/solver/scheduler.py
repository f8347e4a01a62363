"""The scheduler: run a DAG of ops vertices in topological order, one future per vertex digest.

Identical work (same definition digest, e.g. a builder stage on ``$BUILDPLATFORM`` used by every target
platform) runs once and every user shares its ``State``. At most ``parallelism`` vertices run at a time (default:
CPU count). A vertex runs when all its inputs are done; the first failure stops new work, lets running vertices
finish, and is raised (a ``BuildError`` naming the step). Cancellation (the ``Cancel`` token, shared with the
executor, whose RUN runner kills its container when it is triggered): no vertex starts once it is set, the running
ones are waited for (a RUN ends within a second: it is killed), and ``Cancelled`` is raised rather than the error
of a step that was killed. Progress: steps that add a layer are shown with their description
(``[linux/arm64 builder 3/5] RUN …``) and vertex digest as started/done, or as ``CACHED`` when the cache had them.
While a ``FROM`` image is being pulled, the WORKDIR/COPY steps on it get their layers written ahead on a spare
thread (``ahead``, ``Executor.ahead``); that work stops when the solve ends, and the solve waits for it.

API (for ``polyarch build`` and bake, which merges several targets' vertices into one solve)::

    solver = Solver(executor, progress=progress, labels={digest: "linux/arm64"}, cancel=cancel)
    states = solver.solve([plan.result for plan in platform_plans])   # digest -> State
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from polyarch import ops
from polyarch.cancel import Cancel, Cancelled
from polyarch.errors import BuildError, PolyarchError

from .ahead import chain
from .executor import Executor, StepLog
from .state import State

__all__ = ["NullProgress", "ProgressSink", "Solver", "step_name"]

_SHOWN = (ops.Copy, ops.Mkdir, ops.Exec, ops.ImageSource, ops.LocalContext)


def step_name(vertex: ops.Vertex, label: str = "") -> str:
    """The progress name: the vertex description with the platform label inserted (BuildKit's style)."""
    desc = getattr(vertex, "description", "") or ""
    if isinstance(vertex, ops.LocalContext):
        return f"[internal] load build context {vertex.name}" if vertex.name != "context" else \
            "[internal] load build context"
    if isinstance(vertex, ops.ImageSource) and not desc:
        desc = f"[internal] load {vertex.ref}"
    if not desc:
        desc = f"[{vertex.kind}]"
    if label and desc.startswith("["):
        return f"[{label} {desc[1:]}" if not desc.startswith("[internal]") else desc
    return desc


class ProgressSink(Protocol):
    """What the solver reports to (``polyarch.progress.Progress`` is one): a step served from the cache, and a
    step that runs (a context manager giving its output log; an exception leaving it marks the step failed).
    ``digest`` and ``inputs``: the vertex's and its inputs' definition digests (BuildKit's rawjson shows them)."""

    def cached(self, name: str, *, digest: str = "", inputs: Sequence[str] = ()) -> None: ...
    def vertex(self, name: str, *, digest: str = "", inputs: Sequence[str] = ()
               ) -> AbstractContextManager[StepLog]: ...


class _Silent:
    def log(self, line: str, stream: str = "stdout") -> None:
        return None


class NullProgress:
    def cached(self, name: str, *, digest: str = "", inputs: Sequence[str] = ()) -> None:
        return None

    @contextmanager
    def vertex(self, name: str, *, digest: str = "", inputs: Sequence[str] = ()) -> Iterator[StepLog]:
        yield _Silent()


class Solver:
    def __init__(self, executor: Executor, *, progress: ProgressSink | None = None,
                 labels: Mapping[str, str] | None = None, parallelism: int | None = None,
                 cancel: Cancel | None = None) -> None:
        self.executor = executor
        self.cancel = cancel or Cancel()
        self.progress: ProgressSink = progress or NullProgress()
        self.labels = dict(labels or {})
        self.parallelism = max(1, parallelism or os.cpu_count() or 1)
        self.states: dict[str, State] = {}
        self.failed: ops.Vertex | None = None  # the vertex whose error ``solve`` raised
        self._lock = threading.Lock()

    def solve(self, roots: Sequence[ops.Vertex]) -> dict[str, State]:
        """Run everything ``roots`` need; returns the state of every vertex by digest.

        :raises PolyarchError: the first step that failed (other running steps finish first).
        :raises Cancelled: the token was triggered (running steps were stopped and waited for).
        """
        order = ops.walk(roots)
        waiting: dict[str, set[str]] = {}
        users: dict[str, list[ops.Vertex]] = {}
        for v in order:
            deps = {i.digest for i in v.inputs if i.digest not in self.states}
            waiting[v.digest] = deps
            for d in deps:
                users.setdefault(d, []).append(v)
        ready = [v for v in order if not waiting[v.digest] and v.digest not in self.states]
        running: dict[Future[State], ops.Vertex] = {}
        failure: BaseException | None = None
        ended = threading.Event()  # work ahead of a pull stops when the solve ends
        ahead_started: set[str] = set()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ahead") as spare, \
                ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="solve") as pool:
            try:
                while ready or running:
                    if self.cancel.cancelled and failure is None:
                        failure = Cancelled()
                        ready.clear()
                    while ready and failure is None and len(running) < self.parallelism:
                        v = ready.pop(0)
                        running[pool.submit(self._run, v)] = v
                    if not running:
                        break
                    if failure is None:
                        self._start_ahead(running.values(), users, ahead_started, spare, ended)
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in done:
                        v = running.pop(fut)
                        exc = fut.exception()
                        if exc is not None:
                            if self.cancel.cancelled:  # a killed step's error is not the cause
                                failure = failure if isinstance(failure, Cancelled) else Cancelled()
                            elif failure is None:
                                failure, self.failed = exc, v
                            continue
                        self.states[v.digest] = fut.result()
                        for user in users.get(v.digest, ()):
                            pending = waiting[user.digest]
                            pending.discard(v.digest)
                            if not pending and user.digest not in self.states:
                                ready.append(user)
                    if failure is not None:
                        ready.clear()
            finally:
                ended.set()
        if failure is None and self.cancel.cancelled:
            failure = Cancelled()
        if failure is not None:
            if isinstance(failure, Cancelled):
                self.failed = None
            raise failure
        return self.states

    def _start_ahead(self, running: Iterable[ops.Vertex], users: Mapping[str, Sequence[ops.Vertex]],
                     started: set[str], spare: ThreadPoolExecutor, ended: threading.Event) -> None:
        """For each FROM image being resolved (pulled, perhaps), once the sources of the steps on it are known:
        those steps' layers written ahead on the spare thread (``Executor.ahead``; nothing when no pull runs).
        Its errors are dropped: the steps run as always and report their own."""
        for v in running:
            if not isinstance(v, ops.ImageSource) or v.digest in started:
                continue
            steps = chain(v, users, self.states)
            if steps is None:
                continue  # a COPY's source is still being read: look again when it is done
            started.add(v.digest)
            if steps:
                spare.submit(self._ahead, v, steps, ended)

    def _ahead(self, image: ops.ImageSource, steps: list[tuple[ops.Vertex, list[State]]],
               ended: threading.Event) -> None:
        try:
            self.executor.ahead(image, steps, ended.is_set)
        except Exception:  # a guess that failed costs nothing: the steps run as always
            pass

    def _run(self, v: ops.Vertex) -> State:
        inputs = [self.states[i.digest] for i in v.inputs]
        name = step_name(v, self.labels.get(v.digest, ""))
        self.cancel.check()
        key = self.executor.cache_key(v, inputs)
        ids = [i.digest for i in v.inputs]
        if key:
            hit = self.executor.lookup(key, inputs)
            if hit is not None:
                self.progress.cached(name, digest=v.digest, inputs=ids)
                return hit
        if not isinstance(v, _SHOWN):
            return self.executor.run(v, inputs, None, key)
        with self.progress.vertex(name, digest=v.digest, inputs=ids) as handle:
            try:
                return self.executor.run(v, inputs, handle, key)
            except PolyarchError:
                raise
            except OSError as exc:
                raise BuildError(f"{name}: {exc}") from exc
