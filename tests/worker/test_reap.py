"""A SIGKILLed ``polyarch build``: its RUN container dies with it, and what it left (mounts, bundles, runc state)
is reaped by its watcher, by ``polyarch prune`` and by the next build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from polyarch.worker.reap import reap, reap_crashed
from tests.conftest import run_cli
from tests.worker.conftest import have_runc, is_root

pytestmark = [pytest.mark.root, pytest.mark.skipif(not is_root() or not have_runc(), reason="needs root and runc")]

DOCKERFILE = ("FROM base/busybox:1\n"
              "RUN --mount=type=secret,id=tok --mount=type=bind,target=/ctx,rw sleep 1000\n")


def _mounts_under(root: Path) -> list[str]:
    prefix = os.fspath(root) + "/"
    points = [line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(prefix)]


def _containers(root: Path) -> list[dict]:
    out = subprocess.run(["runc", "--root", os.fspath(root / "runc-state"), "list", "--format", "json"],
                         capture_output=True, text=True, check=False).stdout
    return json.loads(out or "null") or []


def _wait(cond, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return ") Z " not in stat  # a zombie is dead


def _start_build(root: Path, tmp_path: Path) -> tuple[subprocess.Popen, dict]:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "tok").write_text("s3cret")
    env = {**os.environ, "POLYARCH_ROOT": os.fspath(root), "SOURCE_DATE_EPOCH": "1700000000"}
    proc = subprocess.Popen([sys.executable, "-m", "polyarch", "build", os.fspath(ctx), "--platform", "linux/amd64",
                             "--secret", f"id=tok,src={tmp_path / 'tok'}", "--progress", "plain"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait(lambda: any(c["status"] == "running" for c in _containers(root)), 60), "the RUN never started"
    (container,) = _containers(root)
    assert container["id"].startswith(f"polyarch-{proc.pid}-")
    assert _mounts_under(root) and list((root / "bundles").iterdir())  # rootfs overlay, secret tmpfs, rw bind
    assert _temp_dirs(proc.pid)  # the build's temporary directory (context view for the rw bind)
    return proc, container


def _temp_dirs(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"polyarch-build-{pid}-*"))


def _assert_clean(root: Path) -> None:
    assert _mounts_under(root) == []
    assert list((root / "bundles").iterdir()) == []
    assert _containers(root) == []
    assert not list((root / "runc-state").iterdir())


def test_killed_builder_takes_its_container_along_and_prune_reaps(store_root: Path, tmp_path: Path) -> None:
    proc, container = _start_build(store_root, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _wait(lambda: not _alive(container["pid"]), 5), "the RUN container outlived its builder"
    assert _wait(lambda: not _temp_dirs(proc.pid), 15), "the watcher left the build's temporary directory"
    run_cli("prune", root=store_root)
    _assert_clean(store_root)


def test_next_build_reaps_when_the_watcher_died_too(store_root: Path, tmp_path: Path) -> None:
    proc, container = _start_build(store_root, tmp_path)
    watchers = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "polyarch-watch"], capture_output=True,
                              text=True, check=False).stdout.split()
    assert len(watchers) == 1
    os.kill(int(watchers[0]), signal.SIGKILL)  # e.g. the OOM killer took both
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    assert _alive(container["pid"])  # nothing killed it: left for the next run of polyarch
    assert reap_crashed(store_root)  # what the next build does first
    assert _wait(lambda: not _alive(container["pid"]), 5)
    _assert_clean(store_root)
    assert not _temp_dirs(proc.pid)
    assert not reap_crashed(store_root)  # nothing left: the next check is a few directory listings


def test_reap_leaves_live_owners_alone(store_root: Path) -> None:
    live = store_root / "bundles" / f"polyarch-{os.getpid()}-abc123"
    dead = store_root / "bundles" / "polyarch-999999999-abc123"
    for d in (live, dead):
        d.mkdir(parents=True)
    assert not reap(store_root, everything=False).containers
    assert live.is_dir() and not dead.exists()


def test_build_temp_dir_of_a_dead_builder_is_reaped(store_root: Path) -> None:
    """A second ^C (or a kill) leaves the build's temporary directory: the next start removes it, not a live
    builder's."""
    from polyarch.worker.reap import build_temp_prefix

    live = Path(tempfile.mkdtemp(prefix=build_temp_prefix()))
    dead = Path(tempfile.mkdtemp(prefix="polyarch-build-999999999-"))
    (dead / "context-view").mkdir()
    try:
        assert reap_crashed(store_root).dirs == 1
        assert live.is_dir() and not dead.exists()
        assert not reap_crashed(store_root)
    finally:
        for d in (live, dead):
            subprocess.run(["rm", "-rf", os.fspath(d)], check=False)


def test_an_owner_holding_its_lock_is_alive_whatever_its_pid(store_root: Path) -> None:
    """A builder in another pid namespace sharing the store: its pid means nothing here (999999998 runs nowhere
    in this namespace), but it holds its owner lock, so its bundle is not reaped until the lock is let go."""
    pid = 999999998
    other = store_root / "bundles" / f"polyarch-{pid}-abc123"
    other.mkdir(parents=True)
    (store_root / "owners").mkdir(mode=0o700)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600); "
        "fcntl.flock(fd, fcntl.LOCK_SH); print('held', flush=True); sys.stdin.read()"),
        str(store_root / "owners" / f"{pid}.lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert not reap_crashed(store_root)
        assert other.is_dir()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert reap_crashed(store_root).dirs == 1
    assert not other.exists() and not (store_root / "owners" / f"{pid}.lock").exists()
