"""RUN mounts against hostile names and hostile steps (issue 13 items 3 and 11).

- A rw bind source whose name holds ``:`` ``,`` ``\\`` ``=`` or a newline is one directory: the overlay that
  makes it writable never gains a host directory as a lower layer.
- Mount-point stubs are created and removed fd-relative inside the rootfs: a step that swaps a stub's parent for a
  symlink to a host directory does not make the cleanup delete or touch anything there.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyarch import platform as plat
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.errors import BuildError
from polyarch.worker import linux
from polyarch.worker.mounts import BindMount, CacheMount, MountSetup, SecretMount, SshMount, TmpfsMount
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


def _open_in_root(root_fd: int, path: str) -> int:
    """The kernel's own rooted resolution, as the oracle of the stubs' walk."""
    return linux.openat2(root_fd, path, os.O_PATH, linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS)


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


# --- mount points in an image that plants files and symlinks where they go ------------------------------------
#
# Each case: what the image has (made in the rootfs, ``@S@`` standing for the host sentinel's absolute path), the
# mount point set up (as runc._config or a RUN --mount sets it up), and either the path inside the rootfs where
# the mount point must then be (symlinks resolved with the rootfs as /, as runc resolves a destination) or the
# BuildError it must give. Nothing outside the rootfs may be touched, and the rootfs must be as it was afterwards.

Plant = tuple[tuple[str, str, str], ...]  # (path, kind: dir|file|link|fifo, symlink target)


@dataclass(frozen=True)
class PointCase:
    name: str
    plant: Plant
    mount: str  # "stub:/etc/hosts", "stub-dir:/x", "ordinary:/proc", "secret:/t", "ssh:/t", "cache:/t", "tmpfs:/t", "bind-file:/t"
    lands: str = ""  # the mount point's path in the rootfs, when it can be made
    error: str = ""  # a regex of the BuildError, when it cannot


POINT_CASES = [
    PointCase("etc-is-a-file", (("etc", "file", ""),), "stub:/etc/hosts",
              error=r"^cannot mount on /etc/hosts: in the image, /etc is not a directory$"),
    PointCase("etc-symlink-to-host", (("etc", "link", "@S@"),), "stub:/etc/resolv.conf", lands="@S@/resolv.conf"),
    PointCase("etc-symlink-dotdot", (("etc", "link", "../../../../../../../..@S@/x"),), "stub:/etc/hosts",
              lands="@S@/x/hosts"),
    PointCase("etc-symlink-relative", (("data/etc", "dir", ""), ("etc", "link", "data/etc")), "stub:/etc/hosts",
              lands="data/etc/hosts"),
    PointCase("hosts-dangling-symlink-to-host-file", (("etc", "dir", ""), ("etc/hosts", "link", "@S@/b/file")),
              "stub:/etc/hosts", lands="@S@/b/file"),
    PointCase("hosts-is-a-dir", (("etc/hosts", "dir", ""),), "stub:/etc/hosts",
              error=r"^cannot mount on /etc/hosts: in the image, /etc/hosts is a directory \(a file is mounted"),
    PointCase("etc-symlink-to-a-file", (("f", "file", ""), ("etc", "link", "/f")), "stub:/etc/hosts",
              error=r"^cannot mount on /etc/hosts: in the image, /f is not a directory$"),
    PointCase("etc-symlink-loop", (("etc", "link", "etc"),), "stub:/etc/hosts",
              error=r"^cannot mount on /etc/hosts: in the image, /etc is in a loop of symbolic links$"),
    PointCase("etc-symlink-pair-loop", (("etc", "link", "/a/x"), ("a", "link", "etc")), "stub:/etc/hosts",
              error=r"loop of symbolic links$"),
    PointCase("proc-symlink-to-host", (("proc", "link", "@S@"),), "ordinary:/proc",
              error=r"^cannot mount on /proc: in the image, /proc is a symbolic link \(it must be an ordinary dir"),
    PointCase("dev-symlink-in-root", (("data", "dir", ""), ("dev", "link", "data")), "ordinary:/dev",
              error=r"^cannot mount on /dev: in the image, /dev is a symbolic link"),
    PointCase("sys-is-a-file", (("sys", "file", ""),), "ordinary:/sys",
              error=r"^cannot mount on /sys: in the image, /sys is not a directory$"),
    PointCase("proc-is-a-dir", (("proc", "dir", ""),), "ordinary:/proc", lands="proc"),
    PointCase("run-is-a-file-secret", (("run", "file", ""),), "secret:/run/secrets/s",
              error=r"^cannot mount on /run/secrets/s: in the image, /run is not a directory$"),
    PointCase("run-symlink-to-host-secret", (("run", "link", "@S@"),), "secret:/run/secrets/s",
              lands="@S@/secrets/s"),
    PointCase("secret-target-is-a-dir", (("opt/s", "dir", ""),), "secret:/opt/s",
              error=r"^cannot mount on /opt/s: in the image, /opt/s is a directory"),
    PointCase("ssh-parent-symlink-to-slash", (("run/buildkit", "link", "/"),), "ssh:/run/buildkit/ssh_agent.0",
              lands="ssh_agent.0"),
    PointCase("ssh-parent-is-a-fifo", (("run", "fifo", ""),), "ssh:/run/buildkit/ssh_agent.0",
              error=r"^cannot mount on /run/buildkit/ssh_agent.0: in the image, /run is not a directory$"),
    PointCase("cache-parent-is-a-file", (("var", "file", ""),), "cache:/var/cache/apt",
              error=r"^cannot mount on /var/cache/apt: in the image, /var is not a directory$"),
    PointCase("cache-target-symlink-to-host-dir", (("var/cache", "dir", ""), ("var/cache/apt", "link", "@S@/x/y")),
              "cache:/var/cache/apt", lands="@S@/x/y"),
    PointCase("tmpfs-target-symlink-to-host-file", (("work", "link", "@S@/b/file"),), "tmpfs:/work",
              lands="@S@/b/file"),
    PointCase("tmpfs-target-is-a-file", (("scratch", "file", ""),), "tmpfs:/scratch",
              error=r"^cannot mount on /scratch: in the image, /scratch is not a directory$"),
    PointCase("bind-file-onto-a-dir", (("src/in.txt", "dir", ""),), "bind-file:/src/in.txt",
              error=r"^cannot mount on /src/in.txt: in the image, /src/in.txt is a directory"),
]


def plant(rootfs: Path, items: Plant, sentinel: Path) -> None:
    for path, kind, dest in items:
        full = rootfs / path
        full.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            full.mkdir()
        elif kind == "file":
            full.write_bytes(b"planted\n")
        elif kind == "fifo":
            os.mkfifo(full)
        else:
            os.symlink(dest.replace("@S@", os.fspath(sentinel)), full)


def set_up_point(setup: MountSetup, how: str, tmp_path: Path) -> None:
    kind, _, target = how.partition(":")
    if kind in ("stub", "ordinary"):
        setup.stub(target, is_dir=kind == "ordinary", ordinary=kind == "ordinary")
    elif kind == "secret":
        setup.add(SecretMount("s", target=target))
    elif kind == "ssh":
        setup.add(SshMount("default", target=target))
    elif kind == "cache":
        setup.add(CacheMount(target))
    elif kind == "tmpfs":
        setup.add(TmpfsMount(target))
    else:
        source = tmp_path / "ctx-file"
        source.write_text("context\n")
        setup.add(BindMount(target, source))


@pytest.mark.parametrize("case", POINT_CASES, ids=lambda c: c.name)
def test_mount_point_in_a_hostile_image(tmp_path: Path, sentinel: Path, case: PointCase) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    plant(rootfs, case.plant, sentinel)
    before = picture(rootfs)
    agent = tmp_path / "agent.sock"
    agent.write_text("")
    with MountSetup(tmp_path / "store", rootfs, tmp_path / "scratch", AMD64, {"s": b"v"},
                    {"default": os.fspath(agent)}) as setup:
        if case.error:
            with pytest.raises(BuildError, match=case.error):
                set_up_point(setup, case.mount, tmp_path)
        else:
            set_up_point(setup, case.mount, tmp_path)
            lands = rootfs / case.lands.replace("@S@", os.fspath(sentinel)).lstrip("/")
            wants_dir = not case.mount.startswith(("stub:", "secret:", "ssh:", "bind-file:"))
            assert os.path.lexists(lands) and not lands.is_symlink()
            assert lands.is_dir() == wants_dir
            if setup.oci_mounts:  # runc resolves the destination to the same place
                fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY)
                try:
                    os.close(_open_in_root(fd, setup.oci_mounts[-1]["destination"]))
                finally:
                    os.close(fd)
    assert picture(rootfs) == before, "the mount points were not all removed, or a parent's mtime changed"


_NAMES = ["a", "b", "etc"]
_LINKS = ["/", ".", "..", "../..", "a", "b/..", "/a/b", "etc/a", "@S@", "@S@/b", "@S@/b/file", "../../../@S@/x"]
_planted = st.lists(st.tuples(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3).map("/".join),
                              st.sampled_from(["dir", "file", "link", "fifo"]), st.sampled_from(_LINKS)),
                    max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=_planted, target=st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3).map("/".join),
       kind=st.sampled_from(["file", "dir", "ordinary"]))
def test_mount_points_property(tmp_path: Path, sentinel: Path, items: list[tuple[str, str, str]], target: str,
                               kind: str) -> None:
    """Any tree of dirs, files, fifos and symlinks (to /, .., siblings, loops, the host) and any mount point in
    it: the mount point is made where the kernel resolves it with the rootfs as / (what runc mounts on), or the
    setup fails with a BuildError; the host is untouched and the rootfs is as it was afterwards."""
    import shutil
    import uuid

    rootfs = tmp_path / uuid.uuid4().hex[:8]
    rootfs.mkdir()
    try:
        for path, what, dest in items:
            parent = (rootfs / path).parent
            # planted only where no component is a symlink: through one the test itself would write on the host
            inside = os.path.realpath(parent) == os.path.join(os.path.realpath(rootfs), os.path.relpath(parent, rootfs))
            if not os.path.lexists(rootfs / path) and parent.is_dir() and inside:
                plant(rootfs, ((path, what, dest),), sentinel)
        before, host = picture(rootfs), picture(sentinel)
        with MountSetup(tmp_path / "store", rootfs, tmp_path / "scratch", AMD64, {}, {}) as setup:
            try:
                setup.stub("/" + target, is_dir=kind != "file", ordinary=kind == "ordinary")
            except BuildError:
                pass
            else:
                fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY)
                try:
                    found = _open_in_root(fd, target)
                finally:
                    os.close(fd)
                try:
                    assert stat.S_ISDIR(os.fstat(found).st_mode) == (kind != "file")
                finally:
                    os.close(found)
            assert picture(sentinel) == host
        assert picture(rootfs) == before
    finally:
        shutil.rmtree(rootfs)


def test_stubs_hold_only_the_directories_they_need(tmp_path: Path) -> None:
    """A mount point deep in an existing tree keeps open only the root and the stub's parent until cleanup, not
    every directory walked through."""
    from polyarch.worker.mountpoints import MountPoints

    rootfs = tmp_path / "rootfs"
    (rootfs / "a/b/c/d/e/f").mkdir(parents=True)
    stubs = MountPoints(rootfs)
    before = len(os.listdir("/proc/self/fd"))
    stubs.ensure("/a/b/c/d/e/f/g", is_dir=True)
    assert len(os.listdir("/proc/self/fd")) - before <= 3  # the root, f (the parent), g (the stub itself)
    assert (rootfs / "a/b/c/d/e/f/g").is_dir()
    stubs.remove()
    assert len(os.listdir("/proc/self/fd")) == before
    assert not (rootfs / "a/b/c/d/e/f/g").exists()
