"""RUN mounts against hostile names and hostile steps (issue 13 items 3 and 11).

- A rw bind source whose name holds ``:`` ``,`` ``\\`` ``=`` or a newline is one directory: the overlay that
  makes it writable never gains a host directory as a lower layer.
- Mount-point stubs are created and removed fd-relative inside the rootfs: a step that swaps a stub's parent for a
  symlink to a host directory does not make the cleanup delete or touch anything there.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyarch import platform as plat
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.worker import linux
from polyarch.worker.mounts import BindMount, MountSetup, SecretMount, TmpfsMount
from polyarch.worker.runc import Runner, StepContext, StepSpec
from polyarch.worker.snapshot import LayerRef, SnapshotStore
from tests.conftest import BASE_NAME
from tests.worker.conftest import have_runc, is_root

pytestmark = [pytest.mark.root, pytest.mark.skipif(not is_root(), reason="needs root (overlay mounts)")]
needs_runc = pytest.mark.skipif(not have_runc(), reason="needs runc")

AMD64 = plat.parse("linux/amd64")
SECRET = "host-secret-7f3a"


def picture(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below ``root`` (and root itself) with type, mode, owner, mtime and bytes."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            path = os.path.join(dirpath, name) if name else dirpath
            st_ = os.lstat(path)
            data = Path(path).read_bytes() if stat.S_ISREG(st_.st_mode) else None
            out[os.path.relpath(path, root)] = (stat.S_IFMT(st_.st_mode), stat.S_IMODE(st_.st_mode), st_.st_uid,
                                                st_.st_mtime_ns, data)
    return out


@pytest.fixture
def sentinel(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A host directory outside every store and context: a secret file, and an empty file and empty dirs named
    like the mount stubs the tests use. Its tree, bytes and mtimes must be identical afterwards."""
    top = tmp_path / "host" / "sentinel-XYZ"
    (top / "b" / "stub").mkdir(parents=True)
    (top / "b" / "file").write_bytes(b"")
    (top / "x" / "y" / "stub").mkdir(parents=True)
    (top / "secret").write_text(SECRET + "\n")
    os.utime(top / "b", ns=(1_000_000_000, 1_000_000_000))
    os.utime(top / "x", ns=(1_000_000_000, 1_000_000_000))
    before = picture(top)
    yield top
    assert picture(top) == before, "the host sentinel directory was changed"


def hostile_source(ctx: Path, name: str, decoy: str) -> Path:
    """``ctx/<name>`` holding one file ``intended``; ``ctx/<decoy>`` is what an injected lowerdir list would
    start with, made to exist so that such a mount would succeed and show the sentinel."""
    src = Path(f"{ctx}/{name}")
    src.mkdir(parents=True)
    (src / "intended").write_text("ok\n")
    Path(f"{ctx}/{decoy}").mkdir(parents=True, exist_ok=True)
    return src


def cases(sentinel: Path) -> list[tuple[str, str]]:
    """(context dir name, decoy) pairs, one per way an option string could be injected."""
    s = os.fspath(sentinel)
    return [
        (f"d:{s}", "d"),                      # lowerdir list separator
        (f"d,lowerdir={s}", "d"),             # option separator: a second lowerdir replaces the first
        (f"d\\\\:{s}", "d\\"),                # an escaped backslash, then a separator
        (f"d\\:{s}", "d"),                    # an escaped colon
        (f"d=x,lowerdir={s}:e", "d=x"),       # '=' and ','
        (f"d\n:{s}", "d\n"),                  # newline, then a separator
    ]


def _setup(tmp_path: Path, store: Path) -> MountSetup:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir(exist_ok=True)
    return MountSetup(store, rootfs, tmp_path / "scratch", AMD64, {}, {})


@pytest.fixture(params=["new", "legacy"])
def kernel_api(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the new mount API and openat2 (this kernel), and as on a kernel without them (legacy
    mount(2) data from fd paths only; the O_NOFOLLOW walk)."""
    if request.param == "legacy":
        monkeypatch.setattr(linux, "_new_overlay_api", lambda: False)
        monkeypatch.setattr(linux, "_has_openat2", lambda: False)
    return str(request.param)


@pytest.mark.parametrize("index", range(6))
def test_rw_bind_of_a_hostile_name_shows_exactly_that_dir(tmp_path: Path, sentinel: Path, index: int,
                                                          kernel_api: str) -> None:
    name, decoy = cases(sentinel)[index]
    src = hostile_source(tmp_path / "ctx", name, decoy)
    before = picture(src)
    with _setup(tmp_path, tmp_path / "store") as setup:
        setup.add(BindMount("/m", src, readwrite=True))
        view = Path(setup.oci_mounts[-1]["source"])
        assert sorted(os.listdir(view)) == ["intended"]
        (view / "written").write_text("discarded\n")
    assert picture(src) == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(["a", ":", ",", "\\", "=", "\n", " ", "lowerdir=", "upperdir=", "@S@"]),
                      min_size=1, max_size=8))
def test_rw_bind_names_property(tmp_path: Path, sentinel: Path, parts: list[str]) -> None:
    """Any name built from separators, escapes and the sentinel's path is one directory, shown as it is."""
    import shutil
    import uuid

    case = tmp_path / uuid.uuid4().hex[:8]
    name = "n" + "".join(parts).replace("@S@", os.fspath(sentinel))
    src = hostile_source(case / "ctx", name, "n")
    try:
        with _setup(case, tmp_path / "store") as setup:
            setup.add(BindMount("/m", src, readwrite=True))
            assert sorted(os.listdir(setup.oci_mounts[-1]["source"])) == ["intended"]
    finally:
        shutil.rmtree(case)


def test_stub_cleanup_after_parent_swapped_for_host_symlink(tmp_path: Path, sentinel: Path, kernel_api: str) -> None:
    """The step renames the stubs' parent away and plants a symlink to the host in its place."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "w" / "x").mkdir(parents=True)  # exists: the cleanup restores its mtime
    with MountSetup(tmp_path / "store", rootfs, tmp_path / "scratch", AMD64, {"s": b"v"}, {}) as setup:
        setup.add(TmpfsMount("/a/b/stub"))
        setup.add(SecretMount("s", target="/a/b/file"))
        setup.add(TmpfsMount("/w/x/y/stub"))
        os.rename(rootfs / "a", rootfs / "gone")
        os.symlink(sentinel, rootfs / "a")
        os.rename(rootfs / "w", rootfs / "w-gone")
        os.symlink(sentinel, rootfs / "w")
    # the stubs were removed where they really are, nothing else
    assert os.listdir(rootfs / "gone") == []
    assert os.listdir(rootfs / "w-gone") == ["x"] and os.listdir(rootfs / "w-gone" / "x") == []
    assert os.readlink(rootfs / "a") == os.fspath(sentinel)


def test_stubs_removed_and_parent_mtime_restored(tmp_path: Path, kernel_api: str) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    os.utime(rootfs / "etc", ns=(5, 5))
    os.symlink("etc", rootfs / "link")
    with MountSetup(tmp_path / "store", rootfs, tmp_path / "scratch", AMD64, {"s": b"v"}, {}) as setup:
        setup.add(TmpfsMount("/etc/a/b"))
        setup.add(SecretMount("s", target="/link/s"))  # an in-root symlink is followed, as runc does
        assert (rootfs / "etc" / "a" / "b").is_dir() and (rootfs / "etc" / "s").is_file()
    assert os.listdir(rootfs / "etc") == []
    assert os.stat(rootfs / "etc").st_mtime_ns == 5


class Env:
    def __init__(self, root: Path, driver: str | None = None) -> None:
        self.root = root
        self.content = ContentStore(root)
        self.images = ImageStore(self.content)
        self.snaps = SnapshotStore(root, self.content, driver=driver)
        self.runner = Runner(root)

    def run(self, script: str, mounts: tuple[object, ...], secrets: dict[str, bytes] | None = None,
            workdir: str = "/") -> list[str]:
        img = self.images.images(self.images.lookup(BASE_NAME), [AMD64])[0]
        layers = [LayerRef(d, b) for d, b in zip(img.config.diff_ids, img.manifest.layers, strict=True)]
        lines: list[str] = []
        spec = StepSpec(("/bin/sh", "-c", script), StepContext(AMD64, "build", f"RUN {script}"),
                        workdir=workdir, mounts=mounts)  # type: ignore[arg-type]
        with self.snaps.prepare(layers) as active:
            self.runner.run(active.rootfs, spec, lines.append, secrets=secrets)
        return lines


@needs_runc
@pytest.mark.parametrize("index", [0, 1, 2])
def test_run_sees_only_the_intended_dir(store_root: Path, tmp_path: Path, sentinel: Path, index: int) -> None:
    name, decoy = cases(sentinel)[index]
    src = hostile_source(tmp_path / "ctx", name, decoy)
    lines = Env(store_root).run("ls -a /m; cat /m/secret 2>/dev/null; echo w > /m/new",
                                (BindMount("/m", src, readwrite=True),))
    assert lines == [".", "..", "intended"]
    assert sorted(os.listdir(src)) == ["intended"]


@needs_runc
@pytest.mark.parametrize("driver", ["overlay", "copy"])
def test_run_planting_symlinks_over_stub_parents(store_root: Path, sentinel: Path, driver: str) -> None:
    """/a and /w/x are made in this step (a stub, the working directory), so the step can rename them even on
    overlay (which refuses to rename directories of lower layers with redirect_dir=off)."""
    script = (f"exec 2>&1; mv /a /gone && ln -s {sentinel} /a && mv /w /w-gone && ln -s {sentinel} /w && echo done")
    lines = Env(store_root, driver).run(script, (TmpfsMount("/a/b/stub"), SecretMount("s", target="/a/b/file"),
                                                 TmpfsMount("/w/x/y/stub")), secrets={"s": b"v"}, workdir="/w/x")
    assert lines == ["done"]
