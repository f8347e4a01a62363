"""Snapshots: layers extracted once, stacked into a writable rootfs for a step, and the step's changes committed.

API (for the solver)::

    snaps = SnapshotStore(store_root, content_store)            # driver: overlay, or copy where overlay fails
    with snaps.prepare([LayerRef(diff_id, blob_descriptor), ...]) as active:   # base → top
        run_step(active.rootfs, spec, on_output)                # worker.runc
        committed = active.commit(LayerOptions(...))            # -> Committed(layer: LayerResult, chain: Digest)
    # the committed layer is now a snapshot: prepare([... , LayerRef(committed.layer.diff_id, desc)]) reuses it

Layout under ``<root>/snapshots/<driver>/`` (``snapshots``, the driver's dir, ``tmp`` and ``active`` are 0700,
and the store root is closed too: see ``content.store`` on permissions): one directory per *chain id* (OCI:
chain(L1)=diff_id(L1), chain(Ln)=sha256(chain(Ln-1) + " " + diff_id(Ln))), because applying a layer depends on
what lies below it (symlinked parents, whiteouts). Each is built in a temp dir and renamed into place when
complete, after the diff_id was verified, so a partial or wrong snapshot is never visible.

- ``overlay``: a chain dir holds only that layer's changes in overlayfs form (0:0 character-device whiteouts,
  ``trusted.overlay.opaque``). A layer is applied into an overlay mount of the chain below it; a RUN rootfs is
  an overlay of all chain dirs (mounted by ``linux.mount_overlay``: every layer named by an O_PATH descriptor,
  one ``fsconfig`` call each, never in an option string built from paths) with a fresh upper dir; ``commit``
  turns the upper dir into the layer and moves it into place as the new chain's dir. Mounted with
  ``redirect_dir=off,metacopy=off,index=off`` so an upper dir is self-contained.
- ``copy`` (fallback; ``driver="copy"``, which the CLI passes for ``POLYARCH_SNAPSHOTTER=copy``, forces it): a
  chain dir holds the full tree; a RUN rootfs is a copy of it; ``commit`` diffs the two trees.

This module is the only one that knows the layout. ``SnapshotDirs(store_root)`` serves everything that is not one
driver's store: the committed snapshots of every driver with their size as ``du -sb`` counts it (``polyarch
prune`` and ``du`` decide, they ask ``remove``), the temp and active dirs builders leave (``leftovers``,
``remove_leftover``, ``clean_leftovers``), the active dirs ``worker.reap`` owns, and
``build_lock``: ``flock`` on ``snapshots/build.lock``, shared for every build, exclusive for prune, so a snapshot
a running build has mounted is never deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from polyarch.content.compression import LayerResult
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import PolyarchError, StoreError, UsageError
from polyarch.fsutil import private_dir
from polyarch.oci.spec import Descriptor

from . import linux
from .apply import ApplyLimits, apply_layer
from .copytree import copy_tree
from .diff import LayerOptions, layer_from_diff, layer_from_upper
from .diskuse import tree_size
from .overlay import OverlayMount, overlay_supported, prune_copy_ups

__all__ = ["ActiveSnapshot", "Committed", "LayerRef", "Leftover", "SnapshotDirs", "SnapshotEntry", "SnapshotStore", "build_lock",
           "chain_ids", "overlay_usable"]

DRIVERS = ("overlay", "copy")
_SNAPSHOTS = "snapshots"
_LOCK_NAME = "build.lock"
_DEFAULT_LIMITS = ApplyLimits()
_DEFAULT_OPTIONS = LayerOptions()


@dataclass(frozen=True, slots=True)
class LayerRef:
    """A layer of a rootfs: its diff_id, and the blob to extract it from when no snapshot exists yet."""

    diff_id: Digest
    blob: Descriptor | None = None


@dataclass(frozen=True, slots=True)
class Committed:
    layer: LayerResult
    chain: Digest


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    out: list[Digest] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append(Digest("sha256", hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest()))
    return out


def overlay_usable(store_root: Path | str) -> bool:
    """Can the overlay driver work in the store at ``store_root``? (``overlay_supported`` on its driver dir)"""
    return overlay_supported(SnapshotDirs(store_root).driver_dir("overlay"))


@dataclass(frozen=True, slots=True)
class Leftover:
    """A temp or active dir under ``snapshots/<driver>/`` (``area``: ``overlay/tmp``, ``copy/active``, …)."""

    area: str
    path: Path
    size: int
    mtime: float


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """A committed snapshot: the dir of chain id ``chain`` (hex) of ``driver``, last modified at ``mtime``."""

    driver: str
    chain: str
    path: Path
    mtime: float


class SnapshotDirs:
    """The snapshot layout of a store, every driver at once; creates nothing but what ``lock`` needs."""

    def __init__(self, store_root: Path | str) -> None:
        self.base = Path(store_root) / _SNAPSHOTS

    def exists(self) -> bool:
        return self.base.exists()

    def driver_dir(self, driver: str) -> Path:
        if driver not in DRIVERS:
            raise UsageError(f"unknown snapshotter {driver!r}", hint="use overlay or copy")
        return self.base / driver

    def active_dirs(self) -> list[Path]:
        """The dirs holding the active snapshots (``<pid>-<hex>``) of each driver, present or not."""
        return [self.base / d / "active" for d in DRIVERS]

    def committed(self) -> list[SnapshotEntry]:
        """Every committed snapshot of every driver (a dir named by a 64-hex chain id)."""
        out: list[SnapshotEntry] = []
        for driver in DRIVERS:
            top = self.base / driver
            if not top.is_dir():
                continue
            for entry in top.iterdir():
                if len(entry.name) != 64:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    out.append(SnapshotEntry(driver, entry.name, entry, entry.lstat().st_mtime))
        return out

    @staticmethod
    def size(entry: SnapshotEntry) -> int:
        """Disk use of a snapshot's tree in bytes, as ``du -sb`` counts it (``diskuse.tree_size``)."""
        return tree_size(entry.path)

    def leftovers(self) -> list[Leftover]:
        """What builders leave while they run (and, killed, behind): temp dirs of snapshots being extracted and
        active snapshots (``<pid>-<hex>``), of every driver, with their size and last change."""
        out: list[Leftover] = []
        for driver in DRIVERS:
            for area in ("tmp", "active"):
                folder = self.base / driver / area
                for entry in list(folder.iterdir()) if folder.is_dir() else []:
                    with contextlib.suppress(OSError):
                        out.append(Leftover(f"{driver}/{area}", entry, tree_size(entry), entry.lstat().st_mtime))
        return out

    @staticmethod
    def remove_leftover(leftover: Leftover) -> None:
        """Remove a temp dir or lock file (an active dir goes through ``worker.reap``, which unmounts it first)."""
        if leftover.path.is_dir() and not leftover.path.is_symlink():
            shutil.rmtree(leftover.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.path.unlink()

    @staticmethod
    def remove(entry: SnapshotEntry) -> None:
        shutil.rmtree(entry.path, ignore_errors=True)

    def clean_leftovers(self, cutoff: float) -> None:
        """Remove temp dirs last changed before ``cutoff`` and the active dirs of dead processes."""
        for driver in DRIVERS:
            tmp = self.base / driver / "tmp"
            for entry in list(tmp.iterdir()) if tmp.is_dir() else []:
                with contextlib.suppress(OSError):
                    if entry.lstat().st_mtime < cutoff:
                        if entry.is_dir() and not entry.is_symlink():
                            shutil.rmtree(entry, ignore_errors=True)
                        else:
                            entry.unlink()  # a chain lock file its killed holder left
            active = self.base / driver / "active"
            if active.is_dir():
                _clean_active(active)

    @contextlib.contextmanager
    def lock(self, *, exclusive: bool = False, wait: bool = True) -> Iterator[bool]:
        """``flock`` on ``snapshots/build.lock``: shared for builds, exclusive for prune.

        Yields False (holding nothing) when ``wait`` is False and the lock is taken."""
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.base / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the build lock under {self.base}: {exc.strerror}") from exc
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing releases the lock


def build_lock(store_root: Path | str, *, exclusive: bool = False,
               wait: bool = True) -> contextlib.AbstractContextManager[bool]:
    """The build lock of the store at ``store_root`` (``SnapshotDirs.lock``)."""
    return SnapshotDirs(store_root).lock(exclusive=exclusive, wait=wait)


def _clean_active(active: Path) -> int:
    """Remove the active dirs in ``active`` whose process is gone (unmounting them first); returns how many."""
    removed = 0
    for entry in list(active.iterdir()):
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue
        with contextlib.suppress(PolyarchError):
            linux.umount(entry / "merged", detach=True)
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    return removed


def _rename_into_place(tmp: Path, final: Path) -> None:
    try:
        os.rename(tmp, final)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and final.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)  # another builder finished the same snapshot first
            return
        raise StoreError(f"cannot publish snapshot {final.name}: {exc.strerror}") from exc


class SnapshotStore:
    """Extracted layers under ``<root>/snapshots/<driver>``; hands out writable rootfs for steps."""

    def __init__(self, root: Path | str, content: ContentStore, *, driver: str | None = None,
                 limits: ApplyLimits = _DEFAULT_LIMITS) -> None:
        self.root = Path(root)
        self.content = content
        self.limits = limits
        wanted = (driver or "").strip() or "auto"  # the CLI passes $POLYARCH_SNAPSHOTTER
        if wanted not in (*DRIVERS, "auto"):
            raise UsageError(f"unknown snapshotter {wanted!r}", hint="use overlay or copy")
        dirs = SnapshotDirs(self.root)
        base = dirs.base
        try:
            for d in (self.root, base):
                private_dir(d)
        except OSError as exc:
            raise StoreError(f"cannot create snapshot directories under {base}: {exc.strerror}") from exc
        if wanted == "auto":
            wanted = "overlay" if overlay_supported(dirs.driver_dir("overlay")) else "copy"
        elif wanted == "overlay" and not overlay_supported(dirs.driver_dir("overlay")):
            raise StoreError(f"overlayfs cannot be mounted under {base}",
                             hint="run as root on a filesystem that supports overlay upper dirs, or set "
                                  "POLYARCH_SNAPSHOTTER=copy")
        self.driver = wanted
        self.dir = dirs.driver_dir(wanted)
        self._tmp = self.dir / "tmp"
        self._active = self.dir / "active"
        try:
            for d in (self.dir, self._tmp, self._active):
                private_dir(d)
        except OSError as exc:
            raise StoreError(f"cannot create snapshot directories under {base}: {exc.strerror}") from exc

    # --- layers ----------------------------------------------------------------------------------------------

    def path(self, chain: Digest) -> Path:
        return self.dir / chain.hex

    def has(self, layers: Sequence[LayerRef]) -> bool:
        chains = chain_ids([layer.diff_id for layer in layers])
        return not chains or self.path(chains[-1]).is_dir()

    def ensure(self, layers: Sequence[LayerRef]) -> list[Path]:
        """Extract whatever of the stack is missing; returns the chain dirs, base first. Each chain id is
        extracted once even when threads or processes ask for it at once (``_chain_lock``): the others wait
        and find it done."""
        chains = chain_ids([layer.diff_id for layer in layers])
        for i, (layer, chain) in enumerate(zip(layers, chains, strict=True)):
            if not self.path(chain).is_dir():
                with self._chain_lock(chain):
                    if not self.path(chain).is_dir():
                        self._extract(layer, chains[:i], chain)
        return [self.path(c) for c in chains]

    @contextlib.contextmanager
    def _chain_lock(self, chain: Digest) -> Iterator[None]:
        """``flock`` on ``tmp/<chain>.lock`` (its own open file each time: threads exclude each other too). The
        holder removes the file when done; a waiter that then holds a removed file's lock opens it afresh."""
        path = self._tmp / f"{chain.hex}.lock"
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StoreError(f"cannot lock snapshot {chain.hex[:12]}: {exc.strerror}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)

    def _extract(self, layer: LayerRef, below: list[Digest], chain: Digest) -> None:
        if layer.blob is None:
            raise StoreError(f"layer {layer.diff_id} has no snapshot and no blob to extract it from")
        work = Path(tempfile.mkdtemp(prefix=f"{chain.hex[:12]}-", dir=self._tmp))
        try:
            fs = work / "fs"
            if self.driver == "copy":
                if below:
                    copy_tree(self.path(below[-1]), fs)
                else:
                    fs.mkdir()
                self._apply(layer, fs)
            elif not below:
                fs.mkdir()
                self._apply(layer, fs)
            else:
                fs.mkdir()
                (work / "work").mkdir()
                (work / "merged").mkdir()
                with OverlayMount([self.path(c) for c in below], fs, work / "work", work / "merged"):
                    self._apply(layer, work / "merged")
            _rename_into_place(fs, self.path(chain))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _apply(self, layer: LayerRef, target: Path) -> None:
        assert layer.blob is not None
        with self.content.open(layer.blob.digest) as f:
            apply_layer(f, target, expected_diff_id=layer.diff_id, limits=self.limits)

    # --- steps -----------------------------------------------------------------------------------------------

    def prepare(self, layers: Sequence[LayerRef]) -> ActiveSnapshot:
        """A writable rootfs over ``layers`` (base first); use as a context manager."""
        dirs = self.ensure(layers)
        chains = chain_ids([layer.diff_id for layer in layers])
        work = self._active / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        work.mkdir()
        try:
            active = ActiveSnapshot(self, work, chains[-1] if chains else None, dirs)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return active


class ActiveSnapshot:
    """A writable rootfs for one step. ``commit`` makes its changes a layer; leaving the context releases it."""

    def __init__(self, store: SnapshotStore, work: Path, parent: Digest | None, lowers: list[Path]) -> None:
        self.store = store
        self.work = work
        self.parent = parent
        self.lowers = lowers
        self._mount: OverlayMount | None = None
        if store.driver == "overlay":
            for d in ("upper", "work", "merged"):
                (work / d).mkdir()
            self.upper = work / "upper"
            self._mount = OverlayMount(lowers, self.upper, work / "work", work / "merged")
            self.rootfs = self._mount.__enter__()
        else:
            self.rootfs = work / "rootfs"
            if lowers:
                copy_tree(lowers[-1], self.rootfs)
            else:
                self.rootfs.mkdir()
                os.chmod(self.rootfs, 0o755)
            self.upper = self.rootfs

    def commit(self, options: LayerOptions = _DEFAULT_OPTIONS) -> Committed:
        """Write the changes as a layer into the content store and keep them as the next chain's snapshot.

        The rootfs is unmounted: commit is the last thing done with an active snapshot.
        """
        store = self.store
        if self._mount is not None:
            self._mount.__exit__(None, None, None)
            self._mount = None
            prune_copy_ups(self.upper, self.lowers)
            layer = layer_from_upper(store.content, self.upper, options)
        else:
            lower = self.lowers[-1] if self.lowers else self.work / "empty"
            lower.mkdir(exist_ok=True)
            layer = layer_from_diff(store.content, lower, self.rootfs, options)
        chain = chain_ids([layer.diff_id])[0] if self.parent is None else chain_ids([self.parent, layer.diff_id])[1]
        if not store.path(chain).is_dir():
            _rename_into_place(self.upper, store.path(chain))
        return Committed(layer, chain)

    def release(self) -> None:
        if self._mount is not None:
            self._mount.__exit__(None, None, None)
            self._mount = None
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> ActiveSnapshot:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
