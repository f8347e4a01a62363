"""Each ops vertex kind → worker and content-store calls, with the persistent cache in front.

``Executor.run(vertex, inputs, handle)`` is called by the scheduler once per vertex digest with the ``State`` of
each input (in ``vertex.inputs`` order); it returns the vertex's ``State``. Steps that add a layer (Copy, Mkdir,
Exec) first compute their cache key and return the cached layer when the cache has it (``State.cached``).
COPY layers are computed from the source tree alone (``copylayer``), so a platform-independent COPY gives the
same blob for every platform and, inside one build, is written once (``_layer_once``). A RUN bind mount of a
local context shows the context minus its ``.dockerignore`` (``ctxview``, made once per build); ADD unpacks
local archives only, a download only with ``--unpack=true``; heredoc files are written by ``inline``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from polyarch import ops
from polyarch.cancel import Cancel
from polyarch.content.images import Image
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import BuildError, PolyarchError, UsageError
from polyarch.frontend.dockerignore import matcher, parse_dockerignore
from polyarch.oci.jsonutil import key_json
from polyarch.platform import Platform
from polyarch.worker.securepath import secure_join

from . import cachekey
from .cache import BuildCache
from .copylayer import Entry, content_key, mkdir_entries, parse_chmod, plan_copy, write_layer
from .inline import write_inline_files
from .once import Once
from .rootview import RootView, resolve_chown
from .state import Layer, State
from .unpack import is_archive, merge_entries, unpack_entries, unpacks

if TYPE_CHECKING:
    from polyarch.worker.snapshot import ActiveSnapshot, SnapshotStore

__all__ = ["ExecRunner", "Executor", "ExecutorOptions", "StepLog"]


class StepLog(Protocol):
    """Where a running step's output lines go (``polyarch.progress.VertexHandle`` is one)."""

    def log(self, line: str, stream: str = "stdout") -> None: ...


class ExecRunner(Protocol):
    """Runs one RUN step in ``rootfs`` (the worker's executor, adapted); raises BuildError on failure, and
    ``polyarch.cancel.Cancelled`` once ``cancel`` is triggered (the step is stopped first)."""

    def __call__(self, vertex: ops.Exec, rootfs: Path, sources: Mapping[int, Path],
                 on_output: Callable[[str], None], *, cancel: Cancel) -> None: ...


@dataclass(frozen=True, slots=True)
class ExecutorOptions:
    contexts: Mapping[str, Path] = field(default_factory=dict)  # LocalContext name -> directory
    epoch: int | None = None  # SOURCE_DATE_EPOCH
    compression: str = "gzip"
    network: str = "default"  # the build's --network: what a RUN without --network= (or with =default) gets
    snapshotter: str | None = None  # snapshot driver (overlay, copy, auto); None: automatic
    uncached: frozenset[str] = frozenset()  # vertex digests that never take a cached result (--no-cache-filter)


class Executor:
    def __init__(self, store: ContentStore, cache: BuildCache, options: ExecutorOptions,
                 run_exec: ExecRunner | None = None, *, resolve_image: Callable[[str, Platform], Image],
                 cancel: Cancel | None = None,
                 pulling: Callable[[str, Platform], Digest | None] | None = None) -> None:
        self.store = store
        self.cancel = cancel or Cancel()  # the build's token: a running RUN is stopped when it is triggered
        self.resolve_image = resolve_image  # FROM images (pipeline.bases.BaseImages.image)
        # the manifest digest of a FROM image whose pull is still running, else None (BaseImages.pulling)
        self.pulling = pulling
        self.cache = cache
        self.options = options
        self.run_exec = run_exec
        from polyarch.worker.reap import build_temp_prefix

        self._tmp = Path(tempfile.mkdtemp(prefix=build_temp_prefix()))  # pid in the name: reaped if killed
        self._layers: Once[Layer | None] = Once()
        self._snapshots: SnapshotStore | None = None
        self._snap_lock = threading.Lock()
        self._chain_locks: dict[str, threading.Lock] = {}
        self._view_locks: dict[str, threading.Lock] = {}
        self._fresh: set[str] = set()  # cache keys of ``options.uncached`` vertices: looked up never, stored again
        self._keys: dict[tuple[str, tuple[str, ...]], str] = {}  # (vertex, input keys) -> cache key, this build
        self._keys_lock = threading.Lock()

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------------------------------

    @property
    def snapshots(self) -> SnapshotStore:
        with self._snap_lock:
            if self._snapshots is None:
                from polyarch.worker.snapshot import SnapshotStore

                self._snapshots = SnapshotStore(self.store.root, self.store, driver=self.options.snapshotter)
            return self._snapshots

    def _prepare(self, layers: Sequence[Layer]) -> ActiveSnapshot:
        """A writable rootfs over ``layers``; the snapshots it stacks are recorded as used (for prune)."""
        from polyarch.worker.snapshot import LayerRef, chain_ids

        refs = [LayerRef(x.diff_id, x.descriptor) for x in layers]
        chains = [c.hex for c in chain_ids([x.diff_id for x in layers])]
        self.cache.used_snapshots([(c, chains[i - 1] if i else "", str(x.diff_id))
                                   for i, (c, x) in enumerate(zip(chains, layers, strict=True))])
        snapshots = self.snapshots
        if not snapshots.has(refs):
            for i, chain in enumerate(chains):  # extract each missing layer once, even when platforms ask at once
                with self._snapshot_lock(chain):
                    snapshots.ensure(refs[:i + 1])
        return snapshots.prepare(refs)

    def _snapshot_lock(self, chain: str) -> threading.Lock:
        with self._snap_lock:
            return self._chain_locks.setdefault(chain, threading.Lock())

    def _hash_file(self, path: str, st: os.stat_result) -> str:
        sig = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"
        found = self.cache.file_hash(path, sig)
        if found is not None:
            return found
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = "sha256:" + h.hexdigest()
        self.cache.put_file_hash(path, sig, digest)
        return digest

    def _cached(self, key: str) -> tuple[bool, Layer | None]:
        found = self.cache.get(key)
        if found == "":
            return False, None
        if found is None:
            return True, None
        assert isinstance(found, Layer)
        if not self.store.has(found.descriptor.digest):
            return False, None
        return True, found

    def _layer_once(self, entries: Sequence[Entry], produce: Callable[[], Layer | None]) -> Layer | None:
        """Write a layer at most once per build for identical entries (platforms share COPY layers)."""
        rows = [[e.rel, e.kind, e.mode, e.uid, e.gid, e.host, e.linkname, e.size, e.mtime] for e in entries]
        return self._layers.get(cachekey.entries_key(rows, self.options.epoch, self.options.compression), produce)

    def _stack(self, root: State, layer: Layer | None, key: str, cached: bool) -> State:
        layers = root.layers + ((layer,) if layer is not None else ())
        return State(key=key, layers=layers, added=layer, cached=cached)

    # --- dispatch --------------------------------------------------------------------------------------------

    def cache_key(self, vertex: ops.Vertex, inputs: Sequence[State]) -> str:
        """The persistent key of a layer step (Copy, Mkdir, Exec); "" for sources (never 'cached' steps). The key
        of a vertex in ``options.uncached`` is never looked up (``lookup`` misses)."""
        memo = (vertex.digest, tuple(s.key for s in inputs))
        with self._keys_lock:
            key = self._keys.get(memo)
        if key is None:  # the same inputs give the same key within a build: ``ahead`` computed it already
            key = self._key(vertex, inputs)
            with self._keys_lock:
                self._keys[memo] = key
        if key and vertex.digest in self.options.uncached:
            self._fresh.add(key)
        return key

    def _key(self, vertex: ops.Vertex, inputs: Sequence[State]) -> str:
        if isinstance(vertex, ops.Copy):
            return self._copy_key(vertex, inputs[0], inputs[1])
        if isinstance(vertex, ops.Mkdir):
            return cachekey.vertex_key(vertex, [s.key for s in inputs])
        if isinstance(vertex, ops.Exec):
            keys = [inputs[0].key, *self._mount_keys(vertex, inputs[1:])]
            network = self.network_of(vertex)
            return cachekey.vertex_key(vertex, keys, {"network": network} if network != vertex.network else None)
        return ""

    def network_of(self, vertex: ops.Exec) -> str:
        """A RUN's network: its own ``--network=`` unless that is ``default``, which is the build's ``--network``."""
        return self.options.network if vertex.network == "default" else vertex.network

    def _mount_keys(self, vertex: ops.Exec, states: Sequence[State]) -> list[str]:
        """Keys of an Exec's mounted inputs: a host directory (the context) by the content of what is mounted."""
        keys = []
        for m, state in zip([m for m in vertex.mounts if m.source is not None], states, strict=True):
            if state.directory is None:
                keys.append(state.key)
                continue
            patterns = parse_dockerignore("\n".join(state.exclude))
            entries = plan_copy(str(state.directory), [m.selector or "."], "/mnt/",
                                excluded=matcher(patterns) if patterns else (lambda _p: False), view=None,
                                owner=None, chmod=None)
            keys.append(content_key(entries, self._hash_file))
        return keys

    def lookup(self, key: str, inputs: Sequence[State]) -> State | None:
        """The cached result for ``key`` stacked on the root input, or None on a miss."""
        if key in self._fresh:
            return None
        hit, layer = self._cached(key)
        return self._stack(inputs[0], layer, key, True) if hit else None

    def run(self, vertex: ops.Vertex, inputs: Sequence[State], handle: StepLog | None, key: str = "") -> State:
        if isinstance(vertex, ops.Scratch):
            return State(key=cachekey.scratch_key())
        if isinstance(vertex, ops.ImageSource):
            img = self.resolve_image(vertex.ref, vertex.platform)
            layers = tuple(Layer(d, diff) for d, diff in zip(img.manifest.layers, img.config.diff_ids, strict=True))
            return State(key=cachekey.image_key(str(img.descriptor.digest)), layers=layers, config=img.config,
                         manifest=img.descriptor)
        if isinstance(vertex, ops.LocalContext):
            directory = self.options.contexts.get(vertex.name)
            if directory is None:
                raise UsageError(f"build context {vertex.name!r} was not given",
                                 hint=f"pass --build-context {vertex.name}=PATH")
            return State(key=cachekey.key_of({"local": vertex.name, "path": str(directory)}),
                         directory=directory, exclude=vertex.exclude)
        if isinstance(vertex, ops.InlineFiles):
            return self._inline(vertex)
        if isinstance(vertex, ops.HttpSource):
            from .http import download

            name = vertex.filename or "__unnamed__"
            if "/" in name or name in (".", "..") or "\x00" in name:
                raise BuildError(f"ADD {vertex.url}: {name!r} is not a file name")
            directory = Path(tempfile.mkdtemp(prefix="http-", dir=self._tmp))
            digest = download(vertex.url, directory / name, checksum=vertex.checksum)
            return State(key=cachekey.key_of({"http": digest}), directory=directory)
        if isinstance(vertex, ops.GitSource):
            from .git import checkout

            work = Path(tempfile.mkdtemp(prefix="git-", dir=self._tmp))
            directory, commit = checkout(vertex.url, vertex.ref, work / "repo", subdir=vertex.subdir,
                                         keep_git_dir=vertex.keep_git_dir, checksum=vertex.checksum)
            return State(key=cachekey.key_of({"git": commit, "subdir": vertex.subdir, "keep": vertex.keep_git_dir}),
                         directory=directory)
        if isinstance(vertex, ops.Copy):
            return self._copy(vertex, inputs[0], inputs[1], key or self.cache_key(vertex, inputs))
        if isinstance(vertex, ops.Mkdir):
            return self._mkdir(vertex, inputs[0], key or self.cache_key(vertex, inputs))
        if isinstance(vertex, ops.Exec):
            return self._exec(vertex, inputs, handle, key or self.cache_key(vertex, inputs))
        raise BuildError(f"{vertex.kind} sources are not supported yet")

    def _inline(self, vertex: ops.InlineFiles) -> State:
        directory = self._tmp / ("inline-" + vertex.digest.split(":")[1][:16])
        if not directory.exists():
            work = Path(tempfile.mkdtemp(dir=self._tmp))
            write_inline_files(work, [(f.path, f.content.encode("utf-8", "surrogateescape"), f.mode)
                                      for f in vertex.files])
            try:
                os.rename(work, directory)
            except OSError:  # another platform made it first
                shutil.rmtree(work, ignore_errors=True)
        return State(key=cachekey.key_of({"inline": vertex.digest}), directory=directory)

    # --- COPY ------------------------------------------------------------------------------------------------

    def _excluded(self, source: State, vertex: ops.Copy) -> Callable[[str], bool]:
        patterns = parse_dockerignore("\n".join((*source.exclude, *vertex.exclude)))
        return matcher(patterns) if patterns else (lambda _path: False)

    def _copy_key(self, vertex: ops.Copy, root: State, source: State) -> str:
        if source.directory is not None:
            entries = plan_copy(str(source.directory), vertex.paths, vertex.dest,
                                excluded=self._excluded(source, vertex), view=None, owner=None,
                                chmod=parse_chmod(vertex.chmod), parents=vertex.parents)
            source_key = content_key(entries, self._hash_file)
        else:
            source_key = source.key
        return cachekey.copy_key(vertex, root.key, source_key)

    def _copy(self, vertex: ops.Copy, root: State, source: State, key: str) -> State:
        view = RootView(self.store, root.layers, self.cache) if root.layers else None
        owner = resolve_chown(vertex.chown, view)
        with ExitStack() as stack:
            entries = self._copy_entries(vertex, source, view, owner, stack)
            layer = self._layer_once(entries, lambda: self._write(entries))
        self.cache.put(key, layer)
        return self._stack(root, layer, key, False)

    def _copy_entries(self, vertex: ops.Copy, source: State, view: RootView | None, owner: tuple[int, int] | None,
                      stack: ExitStack) -> list[Entry]:
        """What the COPY adds onto ``view`` (None: an empty root); a stage source is mounted on ``stack``."""
        chmod = parse_chmod(vertex.chmod)
        if source.directory is not None:
            tree, what = str(source.directory), "build context"
        else:
            active = stack.enter_context(self._prepare(source.layers))
            tree, what = str(active.rootfs), "source stage"
        excluded = self._excluded(source, vertex)
        paths, archives = list(vertex.paths), []
        if unpacks(vertex) and source.directory is not None:
            archives = [p for p in paths if is_archive(tree, p)]
            paths = [p for p in paths if p not in archives]
        entries = plan_copy(tree, paths, vertex.dest, excluded=excluded, view=view, owner=owner, chmod=chmod,
                            what=what, parents=vertex.parents) if paths else []
        for archive in archives:
            entries = merge_entries(entries, unpack_entries(tree, archive, self._tmp, vertex.dest, view, owner,
                                                            chmod, stack))
        return entries

    def _write(self, entries: Sequence[Entry]) -> Layer | None:
        return write_layer(self.store, entries, epoch=self.options.epoch, compression=self.options.compression)

    def _mkdir(self, vertex: ops.Mkdir, root: State, key: str) -> State:
        view = RootView(self.store, root.layers, self.cache) if root.layers else None
        try:
            owner = resolve_chown(vertex.chown, view)
        except PolyarchError:
            owner = None
        entries = mkdir_entries(vertex.path, view, owner)
        layer = self._layer_once(entries, lambda: self._write(entries))
        self.cache.put(key, layer)
        return self._stack(root, layer, key, False)

    # --- ahead of a base pull (``ahead``) ------------------------------------------------------------------

    def ahead(self, image: ops.ImageSource, steps: Sequence[tuple[ops.Vertex, Sequence[State]]],
              stop: Callable[[], bool]) -> int:
        """While ``image`` is being pulled, write the layers of ``steps`` (``ahead.chain``: WORKDIR and COPY
        steps on it, parents first, with their source states) as they are on a root without the image's
        layers, and compute their cache keys; the steps themselves run later as always and take these layers
        only when their own entries are the same (``solver/ahead.py`` says why that is safe). Stops at once
        when the pull has ended, ``stop()`` says so or the build is cancelled; steps the cache has are not
        written. Returns how many layers it wrote (for tests)."""
        manifest = self.pulling(image.ref, image.platform) if self.pulling is not None else None
        if manifest is None:
            return 0
        roots: dict[str, State] = {image.digest: State(key=cachekey.image_key(str(manifest)))}
        written = 0
        for vertex, others in steps:
            root = roots.get(vertex.inputs[0].digest)
            if root is None or stop() or self.cancel.cancelled or \
                    self.pulling(image.ref, image.platform) is None:
                break
            inputs = [root, *others]
            key = self.cache_key(vertex, inputs)
            hit = self.lookup(key, inputs)
            if hit is not None:
                roots[vertex.digest] = hit
                continue
            view = RootView(self.store, root.layers, self.cache) if root.layers else None
            try:
                with ExitStack() as stack:
                    if isinstance(vertex, ops.Copy):
                        entries = self._copy_entries(vertex, others[0], view, None, stack)
                    elif isinstance(vertex, ops.Mkdir):
                        entries = mkdir_entries(vertex.path, view, None)
                    else:
                        break
                    layer = self._layer_once(entries, functools.partial(self._write, entries))
            except PolyarchError:
                break  # the step itself will say what is wrong, when it runs
            written += layer is not None
            roots[vertex.digest] = self._stack(root, layer, key, False)
        return written

    # --- RUN -------------------------------------------------------------------------------------------------

    def _context_view(self, state: State) -> Path:
        """The context directory of ``state`` as a bind mount shows it: ``.dockerignore`` applied (made once per
        build, shared by every RUN and platform)."""
        from .ctxview import filtered_view

        assert state.directory is not None
        key = hashlib.sha256(key_json({"d": str(state.directory), "x": list(state.exclude)})).hexdigest()
        with self._snap_lock:
            lock = self._view_locks.setdefault(key, threading.Lock())
        with lock:
            view = self._tmp / f"context-{key[:16]}"
            if not view.exists():
                patterns = parse_dockerignore("\n".join(state.exclude))
                work = Path(tempfile.mkdtemp(prefix="context-", dir=self._tmp))
                filtered_view(state.directory, work / "tree", matcher(patterns),
                              reincludes=any(p.exclusion for p in patterns))
                os.rename(work / "tree", view)
            return view

    def _exec(self, vertex: ops.Exec, inputs: Sequence[State], handle: StepLog | None, key: str) -> State:
        if self.run_exec is None:
            raise BuildError("RUN is not available: the worker's executor is not installed",
                             hint="this build of polyarch lacks polyarch.worker.runc")
        from polyarch.worker.diff import LayerOptions
        from polyarch.worker.snapshot import chain_ids

        root = inputs[0]
        on_output: Callable[[str], None] = handle.log if handle is not None else (lambda _line: None)
        with ExitStack() as stack:
            sources: dict[int, Path] = {}
            states = iter(inputs[1:])
            for i, m in enumerate(vertex.mounts):
                if m.source is None:
                    continue
                state = next(states)
                if state.directory is not None:
                    base = self._context_view(state) if state.exclude else state.directory
                else:
                    act = stack.enter_context(self._prepare(state.layers))
                    base = Path(act.rootfs)
                sources[i] = Path(secure_join(base, m.selector)) if m.selector else base
            active = stack.enter_context(self._prepare(root.layers))
            network = self.network_of(vertex)
            run = vertex if network == vertex.network else dataclasses.replace(vertex, network=network)
            self.run_exec(run, Path(active.rootfs), sources, on_output, cancel=self.cancel)
            committed = active.commit(LayerOptions(compression=self.options.compression, epoch=self.options.epoch))
            parent = chain_ids([x.diff_id for x in root.layers])[-1].hex if root.layers else ""
            self.cache.used_snapshots([(committed.chain.hex, parent, str(committed.layer.diff_id))])
        res = committed.layer
        layer = None if res.uncompressed_size <= 10240 and _empty_tar(self.store, res) else \
            Layer(res.descriptor, res.diff_id, res.uncompressed_size)
        self.cache.put(key, layer)
        return self._stack(root, layer, key, False)


def _empty_tar(store: ContentStore, res: object) -> bool:
    """A layer whose tar holds no entry (RUN changed nothing)."""
    import tarfile

    from polyarch.content.compression import decompressed

    desc = res.descriptor  # type: ignore[attr-defined]
    with store.open(desc.digest) as raw, tarfile.open(fileobj=decompressed(raw), mode="r|") as tf:
        return next(iter(tf), None) is None
