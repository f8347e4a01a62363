"""Ctrl-C through a real terminal: ``polyarch build`` runs on a pty as a user's shell would start it (own session,
the pty its controlling terminal) and gets SIGINT on its process group, like a terminal's ^C.

The first ^C cancels the build: exit 130 within seconds (native and under QEMU), no runc container, no mount and
no bundle or active snapshot left, the store's blobs and index as they were. A second ^C exits at once, and what
that leaves is reaped (by the builder's watcher, and by the next start). The failing step's last output lines
are shown in tty and plain progress (BuildKit's block) after the live view.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import pytest

from polyarch.worker.snapshot import SnapshotDirs

from .conftest import EPOCH, needs_run, write_tree

pytestmark = [pytest.mark.root, pytest.mark.binfmt]

SLEEPER = "FROM base/busybox:1\nRUN echo step-started && sleep 600\n"


class Terminal:
    """``python -m polyarch ARGS`` on a new pty: its own session with the pty as controlling terminal."""

    def __init__(self, args: list[str], root: Path, cwd: Path | None = None) -> None:
        master, slave = os.openpty()
        self.master = master
        self.buf = bytearray()
        env = {**os.environ, **EPOCH, "POLYARCH_ROOT": str(root), "TERM": "xterm", "COLUMNS": "120"}

        def controlling_tty() -> None:  # after setsid (start_new_session): make the pty ours
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([sys.executable, "-m", "polyarch", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, cwd=cwd, start_new_session=True,
                                     preexec_fn=controlling_tty)
        os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.buf.extend(data)

    @property
    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", bytes(self.buf).decode("utf-8", "replace")).replace("\r", "")

    def wait_for(self, needle: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared (rc={self.proc.poll()}):\n{self.text[-3000:]}")
            time.sleep(0.05)

    def ctrl_c(self) -> None:
        """What a terminal does on ^C: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._reader.join(timeout=5)
            os.close(self.master)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _runc_list(root: Path) -> list[str]:
    state = root / "runc-state"
    if not state.is_dir():
        return []
    out = subprocess.run(["runc", "--root", str(state), "list", "-q"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def _mounts_under(root: Path) -> list[str]:
    top = str(root.resolve()).rstrip("/") + "/"
    points = [line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(top)]


def _leftovers(root: Path) -> list[str]:
    bundles = root / "bundles"
    out = [str(p) for p in bundles.iterdir()] if bundles.is_dir() else []
    for active in SnapshotDirs(root).active_dirs():
        out += [str(p) for p in active.iterdir()] if active.is_dir() else []
    return out


def _store_state(root: Path) -> tuple[list[str], bytes]:
    blobs = sorted(p.name for p in (root / "blobs" / "sha256").iterdir())
    return blobs, (root / "index.json").read_bytes()


def _container_running(root: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _runc_list(root):
        assert time.monotonic() < deadline, "the RUN container never showed in runc list"
        time.sleep(0.05)


def _interrupt_once(store_root: Path, tmp_path: Path, platform: str) -> float:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": SLEEPER})
    before = _store_state(store_root)
    term = Terminal(["build", str(ctx), "--progress", "plain", "--platform", platform, "-t", "never:1", "--load"],
                    store_root)
    try:
        term.wait_for("step-started")
        _container_running(store_root)
        sent = time.monotonic()
        term.ctrl_c()
        rc = term.finish(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        term.kill()
    assert rc == 130, term.text[-3000:]
    assert elapsed < 3.0, f"^C to exit took {elapsed:.2f}s"
    assert "build cancelled" in term.text and "Traceback" not in term.text
    assert re.search(r"#\d+ CANCELED", term.text), term.text[-2000:]
    assert _runc_list(store_root) == []
    assert _mounts_under(store_root) == []
    assert _leftovers(store_root) == []
    assert _store_state(store_root) == before  # no blob written, no name given
    return elapsed


@needs_run("linux/amd64")
def test_ctrl_c_cancels_a_native_run(store_root: Path, tmp_path: Path) -> None:
    _interrupt_once(store_root, tmp_path, "linux/amd64")


@needs_run("linux/arm64")
def test_ctrl_c_cancels_an_emulated_run(store_root: Path, tmp_path: Path) -> None:
    elapsed = _interrupt_once(store_root, tmp_path, "linux/arm64")
    print(f"^C to exit under QEMU: {elapsed:.2f}s")


@needs_run("linux/amd64,linux/arm64")
def test_second_ctrl_c_exits_at_once_and_leftovers_are_reaped(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": SLEEPER})
    term = Terminal(["build", str(ctx), "--progress", "plain", "--platform", "linux/amd64,linux/arm64"], store_root)
    try:
        term.wait_for("step-started")
        _container_running(store_root)
        # the first ^C starts the cancellation, the second leaves at once without waiting for it
        term.ctrl_c()
        time.sleep(0.005)  # two signals at once would merge into one
        term.ctrl_c()
        sent = time.monotonic()
        rc = term.finish(timeout=30)
        assert time.monotonic() - sent < 2.0
    finally:
        term.kill()
    assert rc == 130
    # the watcher kills what is left and reaps the rest; a new start reaps anything it missed
    def temp_dirs() -> list[Path]:
        return list(Path(tempfile.gettempdir()).glob(f"polyarch-build-{term.proc.pid}-*"))

    deadline = time.monotonic() + 30
    while (_runc_list(store_root) or _mounts_under(store_root) or _leftovers(store_root) or temp_dirs()) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    from polyarch.worker.reap import reap_crashed

    reap_crashed(store_root)
    assert _runc_list(store_root) == []
    assert _mounts_under(store_root) == []
    assert _leftovers(store_root) == []
    assert temp_dirs() == []


FAILING = ("FROM base/busybox:1\n"
           "RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo out-line-$i; done; exit 3\n")


@needs_run("linux/amd64")
@pytest.mark.parametrize("mode", ["tty", "plain"])
def test_failing_step_log_shown_after_the_progress(store_root: Path, tmp_path: Path, mode: str) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": FAILING})
    term = Terminal(["build", str(ctx), "--progress", mode, "--platform", "linux/amd64"], store_root)
    try:
        rc = term.finish(timeout=240)
    finally:
        term.kill()
    text = term.text
    assert rc == 1, text[-3000:]
    # BuildKit's block, after the (live) progress and before the error line: the last 10 lines of the step
    block = text[text.rindex("------\n >"):]
    _ruler, _, rest = block.partition("\n")
    lines = rest.split("------")[0].splitlines()
    assert lines[0].startswith(" > [stage-0 2/2] RUN for i in") and lines[0].endswith(":")
    shown = [re.sub(r"^\d+\.\d+ ", "", line) for line in lines[1:]]
    assert shown == [f"out-line-{i}" for i in range(3, 13)]
    assert "error: " in block and "exit code: 3" in block.split("------")[-1]


@needs_run("linux/amd64,linux/arm64")
def test_ctrl_c_cancels_every_running_step_of_a_bake(store_root: Path, tmp_path: Path) -> None:
    project = write_tree(tmp_path / "proj", {
        "Dockerfile": SLEEPER,
        "docker-bake.hcl": 'target "default" {\n  platforms = ["linux/amd64", "linux/arm64"]\n  tags = ["x/y:1"]\n}\n',
    })
    before = _store_state(store_root)
    term = Terminal(["bake", "--load", "--progress", "tty"], store_root, cwd=project)
    try:
        term.wait_for("step-started")
        deadline = time.monotonic() + 60
        while len(_runc_list(store_root)) < 2:  # both platforms' containers run
            assert time.monotonic() < deadline, term.text[-2000:]
            time.sleep(0.05)
        sent = time.monotonic()
        term.ctrl_c()
        rc = term.finish(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        term.kill()
    assert rc == 130 and elapsed < 3.0, term.text[-2000:]
    assert term.text.count("CANCELED") >= 2 and "build cancelled" in term.text
    assert _runc_list(store_root) == [] and _mounts_under(store_root) == [] and _leftovers(store_root) == []
    assert _store_state(store_root) == before
