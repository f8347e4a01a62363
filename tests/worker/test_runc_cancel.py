"""Cancelling a running step at the worker: ``Runner.run`` with a ``Cancel`` token that another thread triggers.
The container is SIGKILLed (its pid namespace, qemu included, dies with it) within a second, ``Cancelled`` is
raised rather than the exit code, and no container or bundle is left; a token cancelled before the step starts
runs nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from polyarch import platform as plat
from polyarch.cancel import Cancel, Cancelled
from polyarch.worker.runc import StepContext, StepSpec
from tests.worker.conftest import have_runc, is_root
from tests.worker.test_runc import Env, _no_container_left, emulators  # noqa: F401  (fixture)

pytestmark = [pytest.mark.root, pytest.mark.skipif(not is_root() or not have_runc(), reason="needs root and runc")]


@pytest.fixture
def env(store_root: Path) -> Env:
    return Env(store_root)


def _run_and_cancel(env: Env, platform: str) -> tuple[float, list[str]]:
    cancel = Cancel()
    lines: list[str] = []
    started = threading.Event()

    def output(line: str) -> None:
        lines.append(line)
        if line == "running":
            started.set()

    spec = StepSpec(("/bin/sh", "-c", "echo running; sleep 600"), StepContext(plat.parse(platform)))
    errors: list[BaseException] = []

    def step() -> None:
        with env.snaps.prepare(env.base(platform)) as active:
            try:
                env.runner.run(active.rootfs, spec, output, cancel=cancel)
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)

    worker = threading.Thread(target=step)
    worker.start()
    assert started.wait(120), lines
    sent = time.monotonic()
    cancel.cancel()
    worker.join(30)
    elapsed = time.monotonic() - sent
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], Cancelled), errors
    _no_container_left(env)
    return elapsed, lines


def test_cancel_kills_a_native_step(env: Env) -> None:
    elapsed, lines = _run_and_cancel(env, "linux/amd64")
    assert elapsed < 1.0 and lines == ["running"]


@pytest.mark.binfmt
def test_cancel_kills_an_emulated_step(env: Env, emulators: None) -> None:  # noqa: F811
    elapsed, _ = _run_and_cancel(env, "linux/arm64")
    assert elapsed < 1.0


def test_cancelled_before_start_runs_nothing(env: Env) -> None:
    cancel = Cancel()
    cancel.cancel()
    lines: list[str] = []
    spec = StepSpec(("/bin/sh", "-c", "echo ran"), StepContext(plat.parse("linux/amd64")))
    with env.snaps.prepare(env.base("linux/amd64")) as active, pytest.raises(Cancelled):
        env.runner.run(active.rootfs, spec, lines.append, cancel=cancel)
    assert lines == []
    _no_container_left(env)
