"""What a killed builder leaves behind: its RUN containers die with it, and its mounts and bundles are reaped.

API::

    watch(store_root, state_dir, runtime)   # once per process and store: containers die when this process dies
    reap_crashed(store_root, runtime="runc") -> Reaped   # cheap: only does work when a dead builder left something
    reap(store_root, everything=False, runtime="runc") -> Reaped   # runtime: name on PATH or path of the OCI runtime
    python -m polyarch.worker.reap STORE_ROOT PID RUNTIME   # what the watcher runs after its builder died

Ownership is in the names: containers and bundles are ``polyarch-<pid>-<hex>``, active snapshots
``<pid>-<hex>`` (``snapshots/<driver>/active``), a build's temporary directory (context views, downloads, heredoc
files; ``build_temp_prefix``) ``polyarch-build-<pid>-<random>`` in the system's temporary directory. Every owner holds a shared ``flock`` on ``owners/<pid>.lock`` in
the store while it lives. Something is *stale* when nobody holds its owner's lock (or, with no lock file, when
that pid no longer runs): a builder in another pid namespace sharing the store is never taken for dead;
``everything=True`` (``polyarch prune`` holding the exclusive build lock: no build runs) also takes what has no
recognisable owner. Reaping a stale owner: ``runc kill KILL`` + ``runc delete --force`` for its containers (in
the store's runc state root), ``umount2(MNT_DETACH)`` for every mount point under its bundle and active dirs
(read from /proc/self/mountinfo, deepest first), then those directories are removed, only once nothing is
mounted under them any more.

The watcher: a ``sh`` in its own session that reads a pipe whose only writer is the builder. At a normal exit the
builder writes ``done`` and the watcher exits; when the builder is killed the pipe reaches EOF and the watcher
kills the builder's containers (each RUN runs in its own PID namespace, so killing its init ends every process
of the step) and then runs this module to reap the rest. That is also what a second ^C during a build leaves
(``cli.interrupt`` exits at once): running containers, their bundles, mounted active snapshots and the build's
temporary directory; whatever the watcher could not take, the next start takes (``reap_crashed``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from polyarch.errors import PolyarchError
from polyarch.fsutil import lock_held

__all__ = ["Reaped", "build_temp_prefix", "container_id", "pid_alive", "reap", "reap_crashed", "watch"]

_OWNED = re.compile(r"^(?:polyarch-)?(\d+)-[0-9a-f]+$")
_TEMP = re.compile(r"^polyarch-build-(\d+)-[a-z0-9_]+$")
_lock = threading.Lock()
_watchers: dict[str, int] = {}  # state dir -> write end of the watcher's pipe
_owner_locks: list[int] = []  # descriptors holding this process's owner locks (see _alive)


@dataclass(frozen=True, slots=True)
class Reaped:
    containers: int = 0
    mounts: int = 0
    dirs: int = 0

    def __bool__(self) -> bool:
        return bool(self.containers or self.mounts or self.dirs)


def container_id(suffix: str) -> str:
    """``polyarch-<this pid>-<suffix>``: a container (and bundle) name that says who owns it."""
    return f"polyarch-{os.getpid()}-{suffix}"


def build_temp_prefix() -> str:
    """The name prefix of a build's temporary directory (``tempfile.mkdtemp(prefix=...)``): this pid, so the
    directory of a builder that was killed is reaped."""
    return f"polyarch-build-{os.getpid()}-"


def _temp_dirs() -> list[tuple[Path, int]]:
    """Build temporary directories in the system's temporary directory, with their owner pid."""
    top = Path(tempfile.gettempdir())
    try:
        names = os.listdir(top)
    except OSError:
        return []
    return [(top / n, int(m.group(1))) for n in names if (m := _TEMP.match(n))]


def _temp_stale(pid: int, root: Path, only: int | None) -> bool:
    if only is not None:
        return pid == only
    return pid != os.getpid() and not _alive(pid, root)


def _owner(name: str) -> int | None:
    m = _OWNED.match(name)
    return int(m.group(1)) if m else None


def _owner_lock(root: Path, pid: int) -> Path:
    return root / "owners" / f"{pid}.lock"


def _hold_owner_lock(root: Path) -> int:
    """This process's shared lock on ``owners/<pid>.lock``, held (by an open descriptor) until it exits."""
    (root / "owners").mkdir(mode=0o700, exist_ok=True)
    fd = os.open(_owner_lock(root, os.getpid()), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _alive(pid: int, root: Path) -> bool:
    """Whether owner ``pid`` may still run. Its lock decides where it has one: a builder in another pid
    namespace sharing this store has a pid that means nothing here, but its lock is held all the same (the lock
    is shared, so an owner of the same pid in another namespace keeps it too: never reaped wrongly)."""
    held = lock_held(_owner_lock(root, pid))
    return pid_alive(pid) if held is None else held


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists in this pid namespace (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(name: str, root: Path, everything: bool, only: int | None) -> bool:
    pid = _owner(name)
    if only is not None:
        return pid == only
    if pid is None:
        return everything
    return pid != os.getpid() and not _alive(pid, root)


_WATCHER = r"""
trap '' INT TERM HUP
IFS= read -r line
[ "$line" = done ] && exit 0
for c in $("$1" --root "$2" list -q 2>/dev/null); do
  case "$c" in "polyarch-$3-"*) "$1" --root "$2" kill "$c" KILL 2>/dev/null ;; esac
done
exec "$4" -m polyarch.worker.reap "$5" "$3" "$1" >/dev/null 2>&1
"""


def watch(store_root: Path, state_dir: Path, runtime: str) -> None:
    """Start this process's watcher for ``store_root`` unless it runs already."""
    key = os.fspath(state_dir)
    with _lock:
        if key in _watchers:
            return
        read_end, write_end = os.pipe()
        try:
            subprocess.Popen(["/bin/sh", "-c", _WATCHER, "polyarch-watch", runtime, key, str(os.getpid()),
                              sys.executable, os.fspath(store_root)],
                             stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True)
        finally:
            os.close(read_end)
        _watchers[key] = write_end
        _owner_locks.append(_hold_owner_lock(Path(store_root)))
        if len(_watchers) == 1:
            atexit.register(_dismiss)


def _dismiss() -> None:
    """A normal exit: tell every watcher there is nothing to do."""
    with _lock:
        for fd in _watchers.values():
            with contextlib.suppress(OSError):
                os.write(fd, b"done\n")
                os.close(fd)
        _watchers.clear()


def _owned_dirs(root: Path) -> list[Path]:
    out: list[Path] = []
    from .snapshot import SnapshotDirs

    for parent in [root / "bundles", *SnapshotDirs(root).active_dirs()]:
        with contextlib.suppress(OSError):
            out.extend(parent / name for name in os.listdir(parent))
    return out


def reap_crashed(store_root: Path | str, *, runtime: str = "runc") -> Reaped:
    """Reap what dead builders left in ``store_root``; a few directory listings when there is nothing."""
    root = Path(store_root)
    if not any(_stale(d.name, root, False, None) for d in _owned_dirs(root)) and \
            not any(_temp_stale(pid, root, None) for _, pid in _temp_dirs()):
        return Reaped()
    return reap(root, runtime=runtime)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_points() -> list[str]:
    try:
        text = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return []
    return [_unescape(line.split(" ")[4]) for line in text.splitlines() if line.count(" ") >= 5]


def _under(path: str, top: Path) -> bool:
    return path.startswith(os.fspath(top).rstrip("/") + "/")


def _within(path: str, top: Path) -> bool:
    return path == os.fspath(top) or _under(path, top)


def _containers(runtime: str, root: Path, everything: bool, only: int | None) -> int:
    state = root / "runc-state"
    if not state.is_dir():
        return 0
    base = [runtime, "--root", os.fspath(state)]
    try:
        listed = subprocess.run([*base, "list", "-q"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    count = 0
    for cid in listed.stdout.split():
        if not cid.startswith("polyarch-") or not _stale(cid, root, everything, only):
            continue
        for args in (["kill", cid, "KILL"], ["delete", "--force", cid]):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([*base, *args], capture_output=True, timeout=30, check=False)
        count += 1
    return count


def reap(store_root: Path | str, *, everything: bool = False, only: int | None = None,
         runtime: str = "runc") -> Reaped:
    """Kill, unmount and remove what stale owners left under ``store_root`` (see the module doc).

    ``only``: reap that pid's leftovers (the watcher of a builder that died).
    ``runtime``: the OCI runtime (a name on PATH or a path) that ran the containers.
    ``everything``: also what has no recognisable owner, and every mount under ``bundles`` and ``snapshots``
    (only when no build can be running: the caller holds the exclusive build lock)."""
    from . import linux
    from .snapshot import SnapshotDirs

    root = Path(store_root).absolute()
    runtime = shutil.which(runtime.strip() or "runc") or ""  # no runtime: there can be no containers to kill
    containers = _containers(runtime, root, everything, only) if runtime else 0
    owned = _owned_dirs(root)
    doomed = [d for d in owned if _stale(d.name, root, everything, only)]
    live = [d for d in owned if d not in doomed]
    areas = [root / "bundles", SnapshotDirs(root).base] if everything else []

    def reaped(point: str) -> bool:
        if any(_within(point, d) for d in live):
            return False
        return any(_within(point, d) for d in doomed) or any(_under(point, a) for a in areas)

    mounts = 0
    for point in sorted({p for p in _mount_points() if reaped(p)}, key=len, reverse=True):
        with contextlib.suppress(PolyarchError):
            linux.umount(point, detach=True)
            mounts += 1
    still = _mount_points()
    dirs = 0
    for d in doomed:
        if any(_within(p, d) for p in still):
            continue  # never delete through a mount
        shutil.rmtree(d, ignore_errors=True)
        dirs += 1
    for temp, pid in _temp_dirs():
        if _temp_stale(pid, root, only) and not any(_within(p, temp) for p in still):
            shutil.rmtree(temp, ignore_errors=True)
            dirs += 1
    with contextlib.suppress(OSError):
        for lock in os.listdir(root / "owners"):
            pid = int(lock.partition(".")[0]) if lock.partition(".")[0].isdigit() else None
            if pid is not None and pid != os.getpid() and (pid == only or not _alive(pid, root)):
                with contextlib.suppress(OSError):
                    os.unlink(root / "owners" / lock)
    return Reaped(containers, mounts, dirs)


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    only = int(argv[1]) if len(argv) > 1 else None
    reap(root, only=only, runtime=argv[2] if len(argv) > 2 else "runc")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
