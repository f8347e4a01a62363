"""``RUN --mount`` values and their realisation as OCI runtime mounts.

API::

    BindMount(target, source, readwrite=False)        # source: a host dir/file the caller supplies
    CacheMount(target, id="", sharing="shared", mode=0o755, uid=0, gid=0, readonly=False)
    TmpfsMount(target, size=0)
    SecretMount(id, target="", env="", required=False, mode=0o400, uid=0, gid=0)
    SshMount(id="default", target="", required=False, mode=0o600, uid=0, gid=0)
    cache_key(mount, platform) -> str                 # the cache dir name; default id includes the platform
    cache_mount_dirs(store_root) -> [CacheMountDir]   # polyarch du/prune: key, id, size, last use, busy
    remove_cache_mount(entry) -> bool                 # under its exclusive lock; False while a step holds it
    MountSetup(store_root, rootfs, scratch, platform, secrets, ssh, overlay_binds=True)   # context manager (runc)
        .add(mount) ; .oci_mounts ; .env ; on exit: stubs removed, locks released, temp mounts undone

Policies: a bind is read-only unless ``readwrite``; then the step writes to a throw-away overlay (or copy) of
the source and the changes are discarded. That overlay is mounted by ``overlay.mounted`` (``linux.mount_overlay``,
or fuse-overlayfs in rootless mode), which names the source by file descriptor: a source path is never put in a mount option string, so a directory
named ``d:/etc`` (or holding ``,`` ``\\`` ``=`` or a newline) is that one directory, not ``d`` over the host's
``/etc``. Cache dirs live under ``<root>/cache-mounts/<key>/data``; ``shared`` takes a shared lock, ``locked``
waits for an exclusive one, ``private`` takes an exclusive one or uses another instance of the cache. Secrets
are written to a 0400 (or ``mode``) file on a private tmpfs outside the rootfs and bind-mounted read-only, or
passed as an environment variable (``env=``); they never enter a layer, an image config or a cache key (the
values are not part of any spec). Mount points that had to be created in the rootfs (stubs) are removed after
the step, and their parents' mtimes restored, so they do not show up in the layer; creation and removal are
fd-relative inside the rootfs (see ``mountpoints.MountPoints``), so a step that plants symlinks cannot turn
the cleanup against the host.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyarch.errors import BuildError, PolyarchError, UsageError
from polyarch.fsutil import lock_held, private_dir
from polyarch.platform import Platform

from . import linux
from .copytree import copy_tree
from .mountpoints import MountPoints
from .overlay import mounted

__all__ = [
    "BindMount",
    "CacheMount",
    "CacheMountDir",
    "Mount",
    "MountSetup",
    "SecretMount",
    "SshMount",
    "TmpfsMount",
    "cache_key",
    "cache_mount_dirs",
    "remove_cache_mount",
]

SHARING = ("shared", "private", "locked")
_CACHE_MOUNTS = "cache-mounts"
_PRIVATE_INSTANCES = 16


@dataclass(frozen=True, slots=True)
class BindMount:
    target: str
    source: Path
    readwrite: bool = False


@dataclass(frozen=True, slots=True)
class CacheMount:
    target: str
    id: str = ""
    sharing: str = "shared"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    readonly: bool = False


@dataclass(frozen=True, slots=True)
class TmpfsMount:
    target: str
    size: int = 0


@dataclass(frozen=True, slots=True)
class SecretMount:
    id: str
    target: str = ""
    env: str = ""
    required: bool = False
    mode: int = 0o400
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True)
class SshMount:
    id: str = "default"
    target: str = ""
    required: bool = False
    mode: int = 0o600
    uid: int = 0
    gid: int = 0


Mount = BindMount | CacheMount | TmpfsMount | SecretMount | SshMount


def cache_key(mount: CacheMount, platform: Platform) -> str:
    """Directory name of a cache mount: an explicit id is shared by every platform; the default id (the
    target) is per platform, so two platforms never share e.g. an apt lock or foreign binaries."""
    if mount.sharing not in SHARING:
        raise UsageError(f"cache mount sharing {mount.sharing!r} is not one of {', '.join(SHARING)}")
    raw = f"id\0{mount.id}" if mount.id else f"target\0{mount.target}\0{platform}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _check_target(target: str) -> str:
    if not target.startswith("/") or "\x00" in target:
        raise UsageError(f"mount target {target!r} must be an absolute path")
    parts = [p for p in target.split("/") if p and p != "."]
    if ".." in parts or not parts:
        raise UsageError(f"mount target {target!r} must not be / or contain '..'")
    return "/" + "/".join(parts)


def _bind(dest: str, source: str, *, readonly: bool) -> dict[str, Any]:
    return {"destination": dest, "type": "bind", "source": source,
            "options": ["rbind", "ro" if readonly else "rw", "nosuid", "nodev"] if readonly
            else ["rbind", "rw"]}


class MountSetup:
    """Realises a step's mounts; a context manager that undoes everything on exit."""

    def __init__(self, store_root: Path, rootfs: Path, scratch: Path, platform: Platform,
                 secrets: Mapping[str, bytes], ssh: Mapping[str, str], *, overlay_binds: bool = True) -> None:
        self.store_root = store_root
        self.overlay_binds = overlay_binds  # False: a read-write bind mount of a directory is a copy, never an overlay
        self.rootfs = rootfs
        self.scratch = scratch
        self.platform = platform
        self.secrets = secrets
        self.ssh = ssh
        self.oci_mounts: list[dict[str, Any]] = []
        self.env: dict[str, str] = {}
        self.stubs = MountPoints(rootfs)
        self._stack = contextlib.ExitStack()
        self._secret_dir: Path | None = None
        self._count = 0

    def __enter__(self) -> MountSetup:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._stack.close()
        finally:
            self.stubs.remove()

    def stub(self, target: str, *, is_dir: bool, ordinary: bool = False) -> None:
        """Make the mount point ``target`` in the rootfs (see ``MountPoints.ensure``); removed on exit."""
        self.stubs.ensure(target, is_dir=is_dir, ordinary=ordinary)

    def _scratch(self, prefix: str) -> Path:
        self._count += 1
        path = self.scratch / f"{prefix}{self._count}"
        path.mkdir(parents=True)
        return path

    def add(self, mount: Mount) -> None:
        try:
            if isinstance(mount, BindMount):
                self._add_bind(mount)
            elif isinstance(mount, CacheMount):
                self._add_cache(mount)
            elif isinstance(mount, TmpfsMount):
                target = _check_target(mount.target)
                opts = ["nosuid", "nodev", "mode=1777"] + ([f"size={mount.size}"] if mount.size else [])
                self.stub(target, is_dir=True)
                self.oci_mounts.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                                        "options": opts})
            elif isinstance(mount, SecretMount):
                self._add_secret(mount)
            elif isinstance(mount, SshMount):
                self._add_ssh(mount)
            else:  # pragma: no cover - typing prevents it
                raise UsageError(f"unknown mount {mount!r}")
        except PolyarchError:
            raise
        except OSError as exc:
            raise BuildError(f"cannot set up mount {mount.target or mount}: {exc}") from exc

    def _add_bind(self, mount: BindMount) -> None:
        target = _check_target(mount.target)
        source = Path(mount.source)
        if not source.exists():
            raise BuildError(f"bind mount source {source} does not exist")
        is_dir = source.is_dir()
        path = os.fspath(source)
        if mount.readwrite:
            work = self._scratch("bind-")
            if is_dir and self.overlay_binds and _overlay_ok(self.store_root):
                for d in ("u", "w", "m"):
                    (work / d).mkdir()
                self._stack.enter_context(mounted([source], work / "u", work / "w", work / "m"))
                path = os.fspath(work / "m")
            elif is_dir:
                copy_tree(source, work / "copy")
                path = os.fspath(work / "copy")
            else:
                shutil.copy2(source, work / "copy")
                path = os.fspath(work / "copy")
        self.stub(target, is_dir=is_dir)
        self.oci_mounts.append(_bind(target, path, readonly=not mount.readwrite))

    def _add_cache(self, mount: CacheMount) -> None:
        target = _check_target(mount.target)
        key = cache_key(mount, self.platform)
        base = self.store_root / _CACHE_MOUNTS
        private_dir(base)  # the caches hold what steps wrote, setuid binaries included
        names = [key] if mount.sharing != "private" else [key] + [f"{key}-{i}" for i in range(1, _PRIVATE_INSTANCES)]
        for i, name in enumerate(names):
            folder = base / name
            data = folder / "data"
            if not data.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "id").write_text((mount.id or f"{mount.target} ({self.platform})") + "\n")
                # unique per thread too: the platforms of one build set up the same cache mount at the same time
                tmp = folder / f"data.tmp{os.getpid()}-{threading.get_ident()}"
                tmp.mkdir(mode=0o700, exist_ok=True)
                os.chmod(tmp, mount.mode & 0o7777)
                if os.geteuid() == 0:
                    os.chown(tmp, mount.uid, mount.gid)
                try:
                    os.rename(tmp, data)
                except OSError:
                    shutil.rmtree(tmp, ignore_errors=True)
            fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            op = {"shared": fcntl.LOCK_SH, "locked": fcntl.LOCK_EX}.get(mount.sharing, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                fcntl.flock(fd, op)
            except BlockingIOError:
                os.close(fd)
                if i == len(names) - 1:
                    raise BuildError(f"cache mount {mount.id or target}: all {len(names)} private instances "
                                     "are in use") from None
                continue
            self._stack.callback(os.close, fd)
            with contextlib.suppress(OSError):
                os.utime(fd)  # the lock file's mtime is the cache's last use (polyarch du/prune)
            self.stub(target, is_dir=True)
            self.oci_mounts.append(_bind(target, os.fspath(data), readonly=mount.readonly))
            return

    def _secret_tmpfs(self) -> Path:
        if self._secret_dir is None:
            path = self._scratch("secrets-")
            os.chmod(path, 0o700)
            if os.geteuid() == 0:
                linux.mount("tmpfs", path, "tmpfs", "mode=0700,size=16m", 0x2 | 0x4 | 0x8)  # nosuid,nodev,noexec
                self._stack.callback(linux.umount, path)
            self._secret_dir = path
        return self._secret_dir

    def _add_secret(self, mount: SecretMount) -> None:
        value = self.secrets.get(mount.id)
        if value is None:
            if mount.required:
                raise BuildError(f"secret {mount.id} is required but was not provided",
                                 hint=f"pass it with --secret id={mount.id},src=FILE or env=VAR")
            return
        if mount.env:
            self.env[mount.env] = value.decode("utf-8", "surrogateescape")
            if not mount.target:
                return
        target = _check_target(mount.target or f"/run/secrets/{mount.id}")
        folder = self._secret_tmpfs()
        path = folder / hashlib.sha256(mount.id.encode()).hexdigest()[:16]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        if os.geteuid() == 0:
            os.chown(path, mount.uid, mount.gid)
        os.chmod(path, mount.mode & 0o7777)
        self.stub(target, is_dir=False)
        self.oci_mounts.append(_bind(target, os.fspath(path), readonly=True))

    def _add_ssh(self, mount: SshMount) -> None:
        sock = self.ssh.get(mount.id)
        if sock is None:
            if mount.required or mount.id == "default":
                raise BuildError(f"no SSH agent socket given for ssh mount {mount.id!r}",
                                 hint="pass --ssh default (uses $SSH_AUTH_SOCK) or --ssh ID=SOCKET")
            return
        if not Path(sock).exists():
            raise BuildError(f"SSH agent socket {sock} does not exist")
        target = _check_target(mount.target or f"/run/buildkit/ssh_agent.{len(self.env)}")
        self.stub(target, is_dir=False)
        self.oci_mounts.append(_bind(target, sock, readonly=False))
        self.env.setdefault("SSH_AUTH_SOCK", target)


@dataclass(frozen=True, slots=True)
class CacheMountDir:
    """A cache mount's directory (``<root>/cache-mounts/<key>``): its id as written at creation, its size as
    ``du -sb`` counts it, last use (a step took its lock) and whether a step holds it now."""

    key: str
    path: Path
    label: str
    size: int
    last_used: float
    busy: bool


def cache_mount_dirs(store_root: Path | str) -> list[CacheMountDir]:
    """Every cache mount directory of the store at ``store_root``."""
    from .diskuse import tree_size

    base = Path(store_root) / _CACHE_MOUNTS
    out: list[CacheMountDir] = []
    for folder in sorted(base.iterdir()) if base.is_dir() else []:
        with contextlib.suppress(OSError):
            try:
                label = (folder / "id").read_text(encoding="utf-8", errors="replace").strip()
            except FileNotFoundError:
                label = ""
            lock = folder / "lock"
            used = (lock if lock.exists() else folder).stat().st_mtime
            out.append(CacheMountDir(folder.name, folder, label, tree_size(folder), used, lock_held(lock) is True))
    return out


def remove_cache_mount(entry: CacheMountDir) -> bool:
    """Delete a cache mount's directory under its exclusive lock; False (nothing deleted) when a step holds it."""
    lock = entry.path / "lock"
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        # the data first, the lock file last: a step that waits on the lock meanwhile finds no data and makes it anew
        shutil.rmtree(entry.path / "data", ignore_errors=True)
        shutil.rmtree(entry.path, ignore_errors=True)
        return True
    finally:
        if fd >= 0:
            os.close(fd)


def _overlay_ok(store_root: Path) -> bool:
    from .snapshot import overlay_usable

    return overlay_usable(store_root)
