"""Cancellation flowing down: the token's hooks, the scheduler that starts nothing once cancelled, and the CLI's
signal handling (first signal cancels, a second exits at once)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from polyarch import ops
from polyarch.cancel import Cancel, Cancelled
from polyarch.platform import parse
from polyarch.solver.scheduler import Solver
from polyarch.solver.state import State


def test_hook_runs_on_cancel_and_at_once_when_already_cancelled() -> None:
    token = Cancel()
    ran: list[str] = []
    fired = threading.Event()
    with token.hook(lambda: (ran.append("a"), fired.set())):
        token.check()
        token.cancel()
        assert fired.wait(5)
    with pytest.raises(Cancelled) as info:
        token.check()
    assert info.value.exit_code == 130
    late = threading.Event()
    with token.hook(late.set):
        assert late.wait(5)
    token.cancel()  # once only: the hooks do not run again
    time.sleep(0.05)
    assert ran == ["a"]


def test_hook_left_is_not_run() -> None:
    token = Cancel()
    ran: list[int] = []
    with token.hook(lambda: ran.append(1)):
        pass
    token.cancel()
    time.sleep(0.05)
    assert ran == []


class _Executor:
    """Runs Exec vertices by waiting: the first one cancels the build and blocks until it is told to stop."""

    def __init__(self, cancel: Cancel) -> None:
        self.cancel = cancel
        self.ran: list[str] = []

    def cache_key(self, vertex: ops.Vertex, inputs: Sequence[State]) -> str:
        return ""

    def lookup(self, key: str, inputs: Sequence[State]) -> State | None:
        return None

    def run(self, vertex: ops.Vertex, inputs: Sequence[State], handle: Any, key: str = "") -> State:
        if isinstance(vertex, ops.Exec):
            self.ran.append(vertex.args[-1])
            stopped = threading.Event()
            with self.cancel.hook(stopped.set):
                self.cancel.cancel()
                assert stopped.wait(5)
            raise Cancelled()
        return State(key=vertex.digest)


def test_solver_starts_nothing_once_cancelled() -> None:
    token = Cancel()
    first = ops.Exec(root=ops.Scratch(), args=("sh", "-c", "one"), platform=parse("linux/amd64"))
    second = ops.Exec(root=first, args=("sh", "-c", "two"), platform=parse("linux/amd64"))
    executor = _Executor(token)
    solver = Solver(executor, cancel=token, parallelism=2)  # type: ignore[arg-type]
    with pytest.raises(Cancelled):
        solver.solve([second])
    assert executor.ran == ["one"] and solver.failed is None


def test_solver_refuses_to_start_when_already_cancelled() -> None:
    token = Cancel()
    token.cancel()
    executor = _Executor(token)
    with pytest.raises(Cancelled):
        Solver(executor, cancel=token).solve([ops.Scratch()])  # type: ignore[arg-type]


_SCRIPT = textwrap.dedent("""
    import sys, time
    from polyarch.cli.interrupt import cancel_on_signals
    from polyarch.cancel import Cancelled
    try:
        with cancel_on_signals() as token:
            print("ready", flush=True)
            token.wait()
            print("cancelled", flush=True)
            if sys.argv[1] == "slow":
                time.sleep(60)  # a cleanup that takes long: a second signal must not wait for it
    except Cancelled as exc:
        print("raised", exc.exit_code, flush=True)
        sys.exit(exc.exit_code)
""")


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_first_signal_cancels_second_exits_at_once(signame: str) -> None:
    import signal

    sig = getattr(signal, signame)
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, "slow"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    assert proc.stdout.readline().strip() == "cancelled"
    sent = time.monotonic()
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == 130
    assert time.monotonic() - sent < 2


def test_one_signal_ends_the_block_with_cancelled() -> None:
    import signal

    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, "fast"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert out.split() == ["cancelled", "raised", "130"] and proc.returncode == 130
