"""Rootless mode for real: a normal user made for these tests (``useradd`` with a home and subordinate ranges,
removed afterwards) runs ``python3 -m polyarch`` through ``runuser``: a native RUN, an emulated (arm64) RUN, a
COPY-only build, a RUN reaching a test host over the network, ``doctor``, and the failure of a user without a
subordinate range. Root's own side: under ``sudo`` doctor and builds name the store and credentials used.

The user runs this interpreter: where it lives under a directory the user cannot enter (a pyenv under /root),
its prefix is bind-mounted read-only on a directory the user can read, for the module's duration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.worker.conftest import have_runc, is_root
from tests.worker.test_sandbox import listener, test_host  # noqa: F401  (fixture)

pytestmark = [pytest.mark.root, pytest.mark.skipif(not is_root() or not have_runc(), reason="needs root and runc")]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class User:
    name: str
    home: Path
    python: str
    env: tuple[str, ...]

    def polyarch(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", self.name, "--", "env", "-i", f"HOME={self.home}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
               f"PYTHONPATH={REPO / 'src'}", *self.env, self.python, "-m", "polyarch", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.home, timeout=600)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def write(self, rel: str, text: str) -> Path:
        path = self.home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        subprocess.run(["chown", "-R", f"{self.name}:", str(self.home / rel.split("/")[0])], check=True)
        return path


def _can_run(name: str, python: str, env: list[str]) -> bool:
    return subprocess.run(["runuser", "-u", name, "--", "env", *env, python, "-c", "import click"],
                          capture_output=True, cwd="/").returncode == 0


def _make_user(name: str, ranges: bool) -> Path:
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    if ranges and "\n" + name + ":" not in "\n" + Path("/etc/subuid").read_text():
        subprocess.run(["usermod", "--add-subuids", "300000-365535", "--add-subgids", "300000-365535", name],
                       check=True)
    if not ranges:
        for path in ("/etc/subuid", "/etc/subgid"):
            text = Path(path).read_text()
            Path(path).write_text("".join(line for line in text.splitlines(True)
                                          if not line.startswith(name + ":")))
    return Path("/home") / name


def _remove_user(name: str) -> None:
    subprocess.run(["userdel", "-r", "-f", name], capture_output=True)  # its home too (subordinate-owned files)


@pytest.fixture(scope="module")
def interpreter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """(python, extra env): this interpreter, bind-mounted somewhere readable when its prefix is not."""
    probe = f"pa-rlp{os.getpid() % 100000}"
    _make_user(probe, ranges=False)
    try:
        if _can_run(probe, sys.executable, []):
            yield sys.executable, []
            return
        mnt = Path("/tmp") / f"pa-rl-py-{os.getpid()}"
        mnt.mkdir(mode=0o755)
        subprocess.run(["mount", "--bind", "-o", "ro", sys.base_prefix, str(mnt)], check=True)
        try:
            python = str(mnt / "bin" / Path(sys.executable).name)
            env = [f"LD_LIBRARY_PATH={mnt / 'lib'}"]
            assert _can_run(probe, python, env), "the test user cannot run this interpreter"
            yield python, env
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
            mnt.rmdir()
    finally:
        _remove_user(probe)


@pytest.fixture(scope="module")
def tun_usable() -> Iterator[None]:
    """/dev/net/tun usable by users, as Debian's udev rules make it (slirp4netns and pasta open it)."""
    mode = os.stat("/dev/net/tun").st_mode & 0o777
    os.chmod("/dev/net/tun", 0o666)
    try:
        yield
    finally:
        os.chmod("/dev/net/tun", mode)


@pytest.fixture(scope="module")
def fuse_usable() -> Iterator[None]:
    """/dev/fuse open to users, as Debian's udev rules make it (fuse-overlayfs opens it)."""
    mode = os.stat("/dev/fuse").st_mode & 0o777
    os.chmod("/dev/fuse", 0o666)
    try:
        yield
    finally:
        os.chmod("/dev/fuse", mode)


@pytest.fixture(scope="module")
def user(interpreter: tuple[str, list[str]], base_root: Path, tun_usable: None) -> Iterator[User]:
    name = f"pa-rl{os.getpid() % 100000}"
    home = _make_user(name, ranges=True)
    try:
        store = home / ".local" / "share" / "polyarch"
        shutil.copytree(base_root, store, ignore=shutil.ignore_patterns(".complete", "ingest"))
        (store / "ingest").mkdir()
        subprocess.run(["chown", "-R", f"{name}:", str(home)], check=True)
        yield User(name, home, interpreter[0], tuple(interpreter[1]))
    finally:
        _remove_user(name)


def test_native_run_in_the_users_namespace(user: User) -> None:
    user.write("native/Dockerfile", "FROM base/busybox:1\nRUN cat /proc/self/uid_map && id -u && "
                                    "touch /f && chown 1234:1234 /f && stat -c 'owner %u' /f\n")
    proc = user.polyarch("build", "--progress", "plain", "-t", "rl/native", "--load", str(user.home / "native"))
    uid = int(subprocess.run(["id", "-u", user.name], capture_output=True, text=True).stdout)
    out = proc.stderr
    assert f" 0 {uid} 1" in " ".join(out.split()), out  # uid 0 inside is the user
    assert "owner 1234" in out  # a subordinate uid: chown works
    assert "rl/native" in user.polyarch("images").stdout


def test_tty_progress_and_bake(user: User) -> None:
    """The tty renderer starts a thread: the namespace is entered before it (a threaded process cannot be)."""
    user.write("tty/Dockerfile", "FROM base/busybox:1\nRUN echo tty-ok\n")
    user.polyarch("build", "--progress", "tty", "--no-cache", str(user.home / "tty"))
    user.write("tty/docker-bake.hcl", 'target "default" {\n  context = "."\n}\n')
    proc = user.polyarch("bake", "--progress", "plain", "-f", str(user.home / "tty" / "docker-bake.hcl"),
                         "--set", f"default.context={user.home / 'tty'}", "--no-cache")
    assert "tty-ok" in proc.stderr, proc.stderr


def test_emulated_run(user: User) -> None:
    user.write("arm/Dockerfile", "FROM base/busybox:1\nRUN uname -m\n")
    proc = user.polyarch("build", "--progress", "plain", "--platform", "linux/arm64", str(user.home / "arm"))
    assert "aarch64" in proc.stderr


def test_copy_only_build(user: User) -> None:
    user.write("copy/Dockerfile", "FROM scratch\nCOPY hello.txt /greeting\n")
    user.write("copy/hello.txt", "hi\n")
    out = user.home / "copy-out"
    user.polyarch("build", "-o", f"type=local,dest={out}", str(user.home / "copy"))
    assert (out / "greeting").read_text() == "hi\n"


def test_run_reaches_a_test_host(user: User, test_host: tuple[str, int]) -> None:  # noqa: F811
    address, netns = test_host
    with listener(address, netns) as (port, received):
        user.write("net/Dockerfile", f"FROM base/busybox:1\nRUN echo ping-{user.name} | nc -w 3 {address} {port}\n")
        user.polyarch("build", "--progress", "plain", "--no-cache", str(user.home / "net"))
    assert any(f"ping-{user.name}".encode() in data for data in received), received


def test_doctor_says_rootless(user: User) -> None:
    out = user.polyarch("doctor").stdout
    assert "ok    mode: rootless: a user namespace per build" in out, out
    assert f"store {user.home}/.local/share/polyarch" in out
    assert "overlayfs can be mounted in the user namespace" in out


def test_no_subordinate_range_is_one_error_with_the_fix(interpreter: tuple[str, list[str]]) -> None:
    name = f"pa-rln{os.getpid() % 100000}"
    home = _make_user(name, ranges=False)
    try:
        bare = User(name, home, interpreter[0], tuple(interpreter[1]))
        bare.write("ctx/Dockerfile", "FROM base/busybox:1\nRUN true\n")
        proc = bare.polyarch("build", str(home / "ctx"), check=False)
        assert proc.returncode != 0
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert errors == [f"error: rootless mode: no subordinate range for {name} in /etc/subuid"], proc.stderr
        assert f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}" in proc.stderr
        assert "Traceback" not in proc.stderr
        doctor = bare.polyarch("doctor", check=False)
        assert doctor.returncode == 1 and "FAIL  mode: rootless: no subordinate range" in doctor.stdout
        assert "fix: sudo usermod --add-subuids" in doctor.stdout
    finally:
        _remove_user(name)


def test_sudo_names_store_and_credentials(store_root: Path, tmp_path: Path) -> None:
    env = {"SUDO_USER": "someone", "DOCKER_CONFIG": str(tmp_path / "dc")}
    doctor = run_cli("doctor", root=store_root, env=env, check=False)
    assert f"mode: root under sudo: store {store_root}, credentials {tmp_path / 'dc' / 'config.json'} " \
           "(not someone's)" in doctor.stdout
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM base/busybox:1\n")
    build = run_cli("build", str(tmp_path / "ctx"), root=store_root, env=env)
    assert f"note: running as root under sudo: store {store_root}, credentials" in build.stderr


def test_missing_emulator_names_the_root_step(user: User, tmp_path: Path) -> None:
    empty = user.home / "no-binfmt"
    empty.mkdir(exist_ok=True)
    user.write("arm/Dockerfile", "FROM base/busybox:1\nRUN uname -m\n")
    env = User(user.name, user.home, user.python, (*user.env, f"POLYARCH_BINFMT_DIR={empty}"))
    proc = env.polyarch("build", "--platform", "linux/arm64", str(user.home / "arm"), check=False)
    assert proc.returncode != 0
    assert "linux/arm64 needs QEMU: run 'sudo polyarch binfmt --install arm64'" in proc.stderr, proc.stderr
    doctor = env.polyarch("doctor", "--platform", "linux/arm64", check=False).stdout
    assert "fix: sudo polyarch binfmt --install arm64" in doctor


def test_run_and_prune_in_the_namespace(user: User) -> None:
    user.write("own/Dockerfile", "FROM base/busybox:1\nRUN mkdir /d && echo x > /d/f && chown -R 4321 /d\n")
    user.polyarch("build", "-t", "rl/own", "--load", str(user.home / "own"))
    assert user.polyarch("run", "rl/own", "stat", "-c", "%u", "/d/f").stdout.strip() == "4321"
    snapshots = user.home / ".local/share/polyarch/snapshots"
    owners = {p.stat().st_uid for p in snapshots.rglob("*") if not p.is_symlink()}
    assert any(uid >= 100000 for uid in owners)  # subordinate uids on disk
    user.polyarch("rm", "rl/own", "rl/native", check=False)
    user.polyarch("prune", "-a", "-f", "--grace", "0")
    left = [p for p in snapshots.rglob("*") if p.stat(follow_symlinks=False).st_uid >= 100000]
    assert left == [], left[:5]


def test_store_on_overlayfs_falls_back_to_fuse_overlayfs(user: User, base_root: Path, fuse_usable: None) -> None:
    """A store whose filesystem is itself overlayfs (a container's root): the kernel refuses it as upper in the
    user namespace, fuse-overlayfs mounts it; the layers are the ones the kernel's overlay gives (opaque dir,
    whiteout, no marks of fuse-overlayfs), and a read-write bind mount works."""
    base, merged = user.home / "ovl-base", user.home / "ovl"
    for d in ("l", "u", "w"):
        (base / d).mkdir(parents=True)
    merged.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base / 'l'},upperdir={base / 'u'},workdir={base / 'w'}", str(merged)], check=True)
    try:
        store = merged / "store"
        shutil.copytree(base_root, store, ignore=shutil.ignore_patterns(".complete", "ingest"))
        (store / "ingest").mkdir()
        subprocess.run(["chown", "-R", f"{user.name}:", str(merged)], check=True)
        user.write("fuse/Dockerfile", "FROM base/busybox:1\nRUN mkdir -p /o/a && echo 1 > /o/a/f\n"
                                      "RUN rm -rf /o && mkdir /o && echo new > /o/x && rm /bin/ls\n"
                                      "RUN --mount=type=bind,target=/c,rw touch /c/zz && ls /c /o\n")
        proc = user.polyarch("--root", str(store), "build", "--progress", "plain", "-t", "rl/fuse", "--load",
                             str(user.home / "fuse"))
        assert "zz" in proc.stderr and "x" in proc.stderr
        assert not (user.home / "fuse" / "zz").exists()
        names = _layer_names(store, "rl/fuse")
        assert names[1:] == [["o", "o/a", "o/a/f"], ["bin", "bin/.wh.ls", "o", "o/.wh..wh..opq", "o/x"]], names[1:]
        doctor = user.polyarch("--root", str(store), "doctor").stdout
        assert "overlayfs can be mounted in the user namespace through fuse-overlayfs" in doctor, doctor
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)


def _layer_names(store: Path, name: str) -> list[list[str]]:
    """The entry names of each layer of the amd64 image ``name`` in ``store``."""
    import json
    import tarfile

    def blob(digest: str) -> Path:
        return store / "blobs" / "sha256" / digest.split(":", 1)[1]

    index = json.loads((store / "index.json").read_text())
    [entry] = [m for m in index["manifests"] if name in json.dumps(m.get("annotations", {}))]
    doc = json.loads(blob(entry["digest"]).read_text())
    if "manifests" in doc:
        doc = json.loads(blob(doc["manifests"][0]["digest"]).read_text())
    out = []
    for layer in doc["layers"]:
        with tarfile.open(blob(layer["digest"])) as tar:
            out.append(tar.getnames())
    return out


def test_closed_tun_is_one_error_with_the_fix(user: User) -> None:
    user.write("tun/Dockerfile", "FROM base/busybox:1\nRUN true\n")
    os.chmod("/dev/net/tun", 0o600)
    try:
        proc = user.polyarch("build", "--no-cache", str(user.home / "tun"), check=False)
    finally:
        os.chmod("/dev/net/tun", 0o666)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1, proc.stderr
    assert "hint: /dev/net/tun is not open to this user: sudo chmod 0666 /dev/net/tun" in proc.stderr
    ok = user.polyarch("build", "--no-cache", "--network", "none", str(user.home / "tun"), check=False)
    assert ok.returncode == 0, ok.stderr


def test_subordinate_ranges_are_read_by_name_or_uid(tmp_path: Path) -> None:
    from polyarch.worker.userns import IdRange, subordinate_range

    path = tmp_path / "subuid"
    path.write_text("alice:100000:65536\n# comment\nbob:x:1\n1001:200000:131072\nalice:500000:10\n\nbad line\n")
    assert subordinate_range(path, "alice", 1000) == IdRange(100000, 65536)  # the largest of alice's
    assert subordinate_range(path, "carol", 1001) == IdRange(200000, 131072)  # by number
    assert subordinate_range(path, "bob", 1002) is None
    assert subordinate_range(tmp_path / "missing", "alice", 1000) is None


def test_only_the_cli_enters_the_user_namespace() -> None:
    """The CLI decides when a process enters its user namespace (before any thread): no module below cli/ calls
    ``userns.enter``."""
    import ast

    src = REPO / "src" / "polyarch"
    callers = []
    for path in src.rglob("*.py"):
        rel = path.relative_to(src).as_posix()
        tree = ast.parse(path.read_text())
        imports_enter = any(isinstance(n, ast.ImportFrom) and (n.module or "").endswith("userns")
                            and any(a.name == "enter" for a in n.names) for n in ast.walk(tree))
        uses_attr = any(isinstance(n, ast.Attribute) and n.attr == "enter" and isinstance(n.value, ast.Name)
                        and n.value.id == "userns" for n in ast.walk(tree))
        if (imports_enter or uses_attr) and not rel.startswith("cli/"):
            callers.append(rel)
    assert callers == []


def test_host_network_binds_sys(user: User) -> None:
    """--network=host in a user namespace: the host's network namespace is not the user namespace's, so /sys is
    the host's, bound read-only (a new sysfs cannot be mounted there)."""
    user.write("hostnet/Dockerfile", "FROM base/busybox:1\nRUN --network=host ls /sys/class/net && "
                                     "(touch /sys/x 2>/dev/null && echo sys-writable || echo sys-read-only)\n")
    proc = user.polyarch("build", "--progress", "plain", "--no-cache", "--allow", "network.host",
                         str(user.home / "hostnet"))
    assert " lo\n" in proc.stderr and "sys-read-only" in proc.stderr, proc.stderr
