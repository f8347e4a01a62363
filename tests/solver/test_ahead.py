"""Layers written ahead of a base pull (``solver/ahead.py``, ``Executor.ahead``): which steps qualify, and — the
property that kills the class — a build's result never depends on the guess: for any base (the paths the steps
touch absent, directories, files or symlinks in it), the solve that wrote layers ahead gives exactly the layers of
the solve that did not, and when the guess was right no layer is written twice."""

from __future__ import annotations

import gzip
import io
import tarfile
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyarch import ops
from polyarch import platform as plat
from polyarch.content.images import Image, ImageStore
from polyarch.content.importer import ImportSource, import_rootfs
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import BuildError
from polyarch.platform import Platform
from polyarch.solver.ahead import chain
from polyarch.solver.cache import BuildCache
from polyarch.solver.executor import Executor, ExecutorOptions
from polyarch.solver.scheduler import Solver
from polyarch.solver.state import Layer, State

AMD64 = plat.parse("linux/amd64")
PATHS = ("srv", "srv/w1", "srv/w1/app", "srv/w1/data.bin")
KINDS = ("absent", "dir", "file", "symlink")


def _context(root: Path) -> Path:
    ctx = root / "ctx"
    (ctx / "app" / "pkg").mkdir(parents=True, exist_ok=True)
    (ctx / "app" / "main.py").write_text("print('hi')\n")
    (ctx / "app" / "pkg" / "mod.py").write_text("x = 1\n")
    (ctx / "data.bin").write_bytes(bytes(range(256)) * 64)
    return ctx


def _base(root: Path, kinds: dict[str, str], name: str) -> Image:
    """A one-layer image whose tar has each of ``PATHS`` as ``kinds`` says (children of a non-directory dropped)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        etc = tarfile.TarInfo("etc")
        etc.type, etc.mode, etc.mtime = tarfile.DIRTYPE, 0o755, 1700000000
        tf.addfile(etc)
        dirs = {""}
        for path in PATHS:
            kind = kinds.get(path, "absent")
            if kind == "absent" or (path.rsplit("/", 1)[0] if "/" in path else "") not in dirs:
                continue
            if kind == "dir":
                dirs.add(path)
            info = tarfile.TarInfo(path)
            info.mtime = 1700000000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tf.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/tmp"
                tf.addfile(info)
            else:
                info.size = 3
                tf.addfile(info, io.BytesIO(b"old"))
    tar = root / f"{name}.tar"
    tar.write_bytes(buf.getvalue())
    images = ImageStore(ContentStore(root / "store"))
    index = import_rootfs(images, [ImportSource(AMD64, tar)], epoch=1700000000)
    return images.images(index)[0]


def _plan(ref: str) -> tuple[ops.Vertex, list[ops.Vertex]]:
    image = ops.ImageSource(ref=ref, platform=AMD64)
    ctx = ops.LocalContext()
    workdir = ops.Mkdir(root=image, path="/srv/w1")
    app = ops.Copy(root=workdir, source=ctx, paths=("app/",), dest="/srv/w1/app/")
    data = ops.Copy(root=app, source=ctx, paths=("data.bin",), dest="/srv/w1/")
    return data, [workdir, app, data]


class _Probe(Executor):
    """An executor whose ``ahead`` ends the simulated pull when it is done, and which counts layer writes."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.ahead_done = threading.Event()
        self.written_ahead: list[int] = []
        self.writes = 0

    def ahead(self, image, steps, stop):  # type: ignore[no-untyped-def, override]
        try:
            n = super().ahead(image, steps, stop)
            self.written_ahead.append(n)
            return n
        finally:
            self.ahead_done.set()

    def _write(self, entries):  # type: ignore[no-untyped-def, override]
        self.writes += bool(entries)  # an empty list writes no layer
        return super()._write(entries)


def _solve(root: Path, image: Image, ctx: Path, *, ahead: bool, tag: str,
           plan: tuple[ops.Vertex, list[ops.Vertex]] | None = None) -> tuple[list[Layer], _Probe]:
    store = ContentStore(root / "store")
    cache = BuildCache(root / f"cache-{tag}.db")  # its own cache: the other solve's records are no hits

    def resolve(ref: str, platform: Platform) -> Image:
        if ahead:  # the "pull" lasts until the work ahead is done
            assert executor.ahead_done.wait(20)
        return image

    def pulling(ref: str, platform: Platform) -> Digest | None:
        return image.descriptor.digest if not executor.ahead_done.is_set() else None

    executor = _Probe(store, cache, ExecutorOptions(contexts={"context": ctx}, epoch=1700000000),
                      resolve_image=resolve, pulling=pulling if ahead else None)
    result, _ = plan or _plan("base/ahead:1")
    try:
        states = Solver(executor, parallelism=2).solve([result])
    finally:
        executor.close()
        cache.close()
    return list(states[result.digest].layers), executor


_kinds = st.fixed_dictionaries({p: st.sampled_from(KINDS) for p in PATHS})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=_kinds)
def test_the_result_never_depends_on_what_was_written_ahead(tmp_path_factory, kinds: dict[str, str]) -> None:
    root = tmp_path_factory.mktemp("ahead")
    ctx = _context(root)
    image = _base(root, kinds, "base")
    plain, plain_exec = _solve(root, image, ctx, ahead=False, tag="plain")
    guessed, guess_exec = _solve(root, image, ctx, ahead=True, tag="ahead")
    assert guessed == plain
    assert plain_exec.written_ahead == [] and plain_exec.writes == len(plain) - 1  # one per layer added
    assert guess_exec.written_ahead == [3]  # WORKDIR and both COPY layers, on a root without the base
    if kinds["srv"] == "absent":
        assert guess_exec.writes == 3  # the guess was right: nothing written twice
    assert guess_exec.writes <= 3 + 3


def test_a_right_guess_writes_each_layer_once(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    image = _base(tmp_path, {}, "empty")
    layers, executor = _solve(tmp_path, image, ctx, ahead=True, tag="a")
    assert executor.written_ahead == [3] and executor.writes == 3
    assert len(layers) == 1 + 3


def test_a_base_with_the_workdir_gets_its_own_layers(tmp_path: Path) -> None:
    """The base has /srv/w1: the real WORKDIR adds nothing, so the guessed WORKDIR layer is left unused, while
    the COPY layers (their parents exist either way) are the ones written ahead."""
    ctx = _context(tmp_path)
    image = _base(tmp_path, {"srv": "dir", "srv/w1": "dir"}, "workdir")
    plain, _ = _solve(tmp_path, image, ctx, ahead=False, tag="p")
    layers, executor = _solve(tmp_path, image, ctx, ahead=True, tag="a")
    assert layers == plain and len(layers) == 1 + 2
    assert executor.written_ahead == [3] and executor.writes == 3  # nothing written again: 1 guess unused


def test_no_work_ahead_without_a_running_pull(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    image = _base(tmp_path, {}, "local")
    store = ContentStore(tmp_path / "store")
    with BuildCache(tmp_path / "c.db") as cache:
        executor = Executor(store, cache, ExecutorOptions(contexts={"context": ctx}),
                            resolve_image=lambda r, p: image, pulling=lambda r, p: None)
        try:
            _, steps = _plan("base/ahead:1")
            source = State(key="ctx", directory=ctx)
            todo = [(steps[0], []), (steps[1], [source]), (steps[2], [source])]
            image_vertex = steps[0].inputs[0]
            assert isinstance(image_vertex, ops.ImageSource)
            assert executor.ahead(image_vertex, todo, lambda: False) == 0
        finally:
            executor.close()


def _users(vertices: Sequence[ops.Vertex]) -> dict[str, list[ops.Vertex]]:
    users: dict[str, list[ops.Vertex]] = {}
    for v in ops.walk(list(vertices)):
        for i in v.inputs:
            users.setdefault(i.digest, []).append(v)
    return users


def test_chain_waits_for_sources_and_stops_where_the_base_matters() -> None:
    image = ops.ImageSource(ref="base/x:1", platform=AMD64)
    ctx = ops.LocalContext()
    workdir = ops.Mkdir(root=image, path="/app")
    copy = ops.Copy(root=workdir, source=ctx, paths=("a",), dest="/app/")
    chowned = ops.Copy(root=copy, source=ctx, paths=("b",), dest="/app/", chown="app")
    after = ops.Copy(root=chowned, source=ctx, paths=("c",), dest="/app/")
    run = ops.Exec(root=copy, args=("true",), platform=AMD64)
    users = _users([after, run])
    assert chain(image, users, {}) is None  # the context has not been read yet
    states = {ctx.digest: State(key="k", directory=Path("/nonexistent"))}
    got = chain(image, users, states)
    assert got is not None
    assert [v for v, _ in got] == [workdir, copy]  # --chown needs the base's users; RUN needs the base
    assert got[1][1] == [states[ctx.digest]]
    other = ops.Exec(root=ops.ImageSource(ref="base/y:1", platform=AMD64), args=("true",), platform=AMD64)
    stage = ops.Copy(root=image, source=other, paths=("x",), dest="/")
    assert chain(image, _users([stage]), states) == []  # a stage source is no directory


def _tree(root: Path) -> dict[str, tuple[int, int, bytes | None]]:
    out = {}
    for path in sorted(root.rglob("*")):
        st_ = path.lstat()
        out[str(path.relative_to(root))] = (st_.st_mode, st_.st_mtime_ns,
                                            path.read_bytes() if path.is_file() and not path.is_symlink() else None)
    return out


def test_a_hostile_context_gets_nothing_from_the_host_ahead_either(tmp_path: Path) -> None:
    """Symlinks in the context that point at a host directory: the layers written ahead copy them as symlinks or
    refuse the path, as the steps do; no host byte reaches the store and the host is untouched."""
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "shadow").write_bytes(b"host-secret-1b2c\n")
    before = _tree(host)
    ctx = _context(tmp_path)
    (ctx / "app" / "escape").symlink_to(host)  # copied as a symlink, never followed
    (ctx / "out").symlink_to(host / "etc")  # a source path through it resolves inside the context: not found
    image = _base(tmp_path, {}, "hostile")
    ref = "base/ahead:1"
    _, (workdir, app, _data) = _plan(ref)
    through = ops.Copy(root=app, source=app.inputs[1], paths=("out/shadow",), dest="/srv/w1/")

    layers, executor = _solve(tmp_path, image, ctx, ahead=True, tag="ok")
    plain, _ = _solve(tmp_path, image, ctx, ahead=False, tag="ok-plain")
    assert layers == plain and executor.written_ahead == [3]
    with pytest.raises(BuildError, match="not found"):
        _solve(tmp_path, image, ctx, ahead=True, tag="bad", plan=(through, [workdir, app, through]))
    assert _tree(host) == before
    store = ContentStore(tmp_path / "store")
    for digest, _size in store.list():
        with store.open(digest) as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        assert b"host-secret-1b2c" not in raw
