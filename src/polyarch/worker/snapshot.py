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
- ``copy`` (fallback; ``POLYARCH_SNAPSHOTTER=copy`` forces it): a chain dir holds the full tree; a RUN rootfs
  is a copy of it; ``commit`` diffs the two trees.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
import threading
import uuid
from collections.abc import Sequence
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
from .archive import ApplyLimits, apply_layer
from .copytree import copy_tree
from .diff import LayerOptions, layer_from_diff, layer_from_upper

__all__ = ["ActiveSnapshot", "Committed", "LayerRef", "SnapshotStore", "chain_ids", "overlay_supported"]

DRIVERS = ("overlay", "copy")
_OVERLAY_OPTS = (("redirect_dir", "off"), ("metacopy", "off"), ("index", "off"))
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


_probe_lock = threading.Lock()
_probe_cache: dict[str, bool] = {}


def overlay_supported(base: Path) -> bool:
    """Can an overlayfs with its upper dir under ``base`` be mounted here? (cached per directory)"""
    key = os.fspath(base)
    with _probe_lock:
        if key in _probe_cache:
            return _probe_cache[key]
        ok = False
        if os.geteuid() == 0:
            private_dir(base)
            probe = Path(tempfile.mkdtemp(prefix="probe-", dir=base))
            try:
                for d in ("l", "u", "w", "m"):
                    (probe / d).mkdir()
                linux.mount_overlay([probe / "l"], probe / "u", probe / "w", probe / "m", _OVERLAY_OPTS)
                linux.umount(probe / "m")
                ok = True
            except PolyarchError:
                ok = False
            finally:
                shutil.rmtree(probe, ignore_errors=True)
        _probe_cache[key] = ok
        return ok


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
        wanted = driver or os.environ.get("POLYARCH_SNAPSHOTTER", "").strip() or "auto"
        if wanted not in (*DRIVERS, "auto"):
            raise UsageError(f"unknown snapshotter {wanted!r}", hint="use overlay or copy")
        base = self.root / "snapshots"
        try:
            for d in (self.root, base):
                private_dir(d)
        except OSError as exc:
            raise StoreError(f"cannot create snapshot directories under {base}: {exc.strerror}") from exc
        if wanted == "auto":
            wanted = "overlay" if overlay_supported(base / "overlay") else "copy"
        elif wanted == "overlay" and not overlay_supported(base / "overlay"):
            raise StoreError(f"overlayfs cannot be mounted under {base}",
                             hint="run as root on a filesystem that supports overlay upper dirs, or set "
                                  "POLYARCH_SNAPSHOTTER=copy")
        self.driver = wanted
        self.dir = base / wanted
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
        """Extract whatever of the stack is missing; returns the chain dirs, base first."""
        chains = chain_ids([layer.diff_id for layer in layers])
        for i, (layer, chain) in enumerate(zip(layers, chains, strict=True)):
            if not self.path(chain).is_dir():
                self._extract(layer, chains[:i], chain)
        return [self.path(c) for c in chains]

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
                with _OverlayMount([self.path(c) for c in below], fs, work / "work", work / "merged"):
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

    def clean_stale(self) -> int:
        """Remove active dirs left by dead processes (unmounting them first); returns how many."""
        removed = 0
        for entry in list(self._active.iterdir()):
            pid = entry.name.split("-", 1)[0]
            if pid.isdigit() and Path(f"/proc/{pid}").exists():
                continue
            linux.umount(entry / "merged", detach=True)
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        return removed


class _OverlayMount:
    def __init__(self, lowers: list[Path], upper: Path, workdir: Path, target: Path) -> None:
        self.lowers, self.upper, self.workdir, self.target = lowers, upper, workdir, target

    def __enter__(self) -> Path:
        if not self.lowers:
            empty = self.workdir.parent / "empty"
            empty.mkdir(exist_ok=True)
            lowers = [empty]
        else:
            lowers = self.lowers
        # overlay wants the top-most lower first
        linux.mount_overlay(lowers[::-1], self.upper, self.workdir, self.target, _OVERLAY_OPTS)
        return self.target

    def __exit__(self, *exc: object) -> None:
        linux.umount(self.target)


class ActiveSnapshot:
    """A writable rootfs for one step. ``commit`` makes its changes a layer; leaving the context releases it."""

    def __init__(self, store: SnapshotStore, work: Path, parent: Digest | None, lowers: list[Path]) -> None:
        self.store = store
        self.work = work
        self.parent = parent
        self.lowers = lowers
        self._mount: _OverlayMount | None = None
        if store.driver == "overlay":
            for d in ("upper", "work", "merged"):
                (work / d).mkdir()
            self.upper = work / "upper"
            self._mount = _OverlayMount(lowers, self.upper, work / "work", work / "merged")
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
            _prune_copy_ups(self.upper, self.lowers)
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


def _lower_lstat(lowers: list[Path], rel: str) -> os.stat_result | None:
    """lstat of ``rel`` in the top-most lower holding it; no symlink in any lower is followed (overlayfs merges
    by name, never through a lower's symlink, and a step may have planted one pointing at the host)."""
    for d in reversed(lowers):
        try:
            dfd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fd = linux.open_beneath(dfd, rel, os.O_PATH | os.O_NOFOLLOW)
            finally:
                os.close(dfd)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return None  # a symlink or a file on the way hides every lower below it at ``rel``
            raise
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)
    return None


def _prune_copy_ups(upper: Path, lowers: list[Path]) -> None:
    """Drop upper directories that are empty, not opaque, and identical in metadata to the lower directory
    they were copied up from (e.g. /etc after a mount stub in it was removed): they change nothing."""
    for dirpath, _dirnames, filenames in os.walk(upper, topdown=False):
        if dirpath == os.fspath(upper) or filenames or os.listdir(dirpath):
            continue
        rel = os.path.relpath(dirpath, upper)
        try:
            if os.getxattr(dirpath, "trusted.overlay.opaque", follow_symlinks=False) == b"y":
                continue
        except OSError:
            pass
        low = _lower_lstat(lowers, rel)
        st = os.lstat(dirpath)
        if low is None or not stat.S_ISDIR(low.st_mode):
            continue
        if (low.st_mode, low.st_uid, low.st_gid, low.st_mtime_ns) == (st.st_mode, st.st_uid, st.st_gid,
                                                                      st.st_mtime_ns):
            os.rmdir(dirpath)
