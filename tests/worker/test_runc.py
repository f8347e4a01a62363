"""RUN steps in runc on base/busybox:1, natively and under QEMU: layers, whiteouts, mounts, secrets, errors."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from polyarch import platform as plat
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.errors import BuildError, PolyarchError
from polyarch.worker import binfmt
from polyarch.worker.diff import LayerOptions
from polyarch.worker.mounts import BindMount, CacheMount, SecretMount, TmpfsMount
from polyarch.worker.network import StepNetwork
from polyarch.worker.runc import Runner, StepContext, StepSpec
from polyarch.worker.snapshot import LayerRef, SnapshotStore
from tests.conftest import BASE_NAME
from tests.worker.conftest import have_runc, is_root, tree

pytestmark = [pytest.mark.root, pytest.mark.skipif(not is_root() or not have_runc(), reason="needs root and runc")]

PLATFORMS = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
EPOCH = LayerOptions(epoch=1_700_000_000)


@pytest.fixture(scope="session")
def emulators() -> None:
    """Register QEMU (what CI's `polyarch binfmt --install all` does); skip only when that is impossible."""
    try:
        binfmt.install(binfmt.parse_arches("all"))
    except PolyarchError as exc:  # a missing facility, reported as a skip reason
        pytest.skip(f"cannot register QEMU in binfmt_misc: {exc}")


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.content = ContentStore(root)
        self.images = ImageStore(self.content)
        self.snaps = SnapshotStore(root, self.content)
        self.runner = Runner(root)

    def base(self, platform: str) -> list[LayerRef]:
        img = self.images.images(self.images.lookup(BASE_NAME), [plat.parse(platform)])[0]
        return [LayerRef(d, blob) for d, blob in zip(img.config.diff_ids, img.manifest.layers, strict=True)]

    def run(self, platform: str, script: str, layers: list[LayerRef] | None = None, *, commit: bool = True,
            **kw) -> tuple[list[str], object]:
        lines: list[str] = []
        secrets = kw.pop("secrets", None)
        spec = StepSpec(("/bin/sh", "-c", script), StepContext(plat.parse(platform), "build", f"RUN {script}"), **kw)
        with self.snaps.prepare(layers if layers is not None else self.base(platform)) as active:
            self.runner.run(active.rootfs, spec, lines.append, secrets=secrets)
            result = active.commit(EPOCH) if commit else None
        return lines, result

    def layer_files(self, committed) -> dict[str, bytes | None]:
        data = self.content.read(committed.layer.descriptor.digest, limit=1 << 26)
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            return {m.name: (tf.extractfile(m).read() if m.isfile() else None) for m in tf}  # type: ignore[union-attr]


@pytest.fixture
def env(store_root: Path) -> Env:
    return Env(store_root)


@pytest.mark.binfmt
@pytest.mark.parametrize("platform,machine", [("linux/amd64", b"x86_64"), ("linux/arm64", b"aarch64"),
                                              ("linux/arm/v7", b"armv7l")])
def test_uname_per_platform(env: Env, emulators: None, platform: str, machine: bytes) -> None:
    lines, committed = env.run(platform, "uname -m > /arch && cat /arch | sed s/^/arch=/ > /arch2 && echo done")
    assert lines == ["done"]
    files = env.layer_files(committed)
    assert files == {"arch": machine + b"\n", "arch2": b"arch=" + machine + b"\n"}  # no mount stubs in the layer


def test_whiteouts_restack_and_same_digest(env: Env) -> None:
    base = env.base("linux/amd64")
    _, prep = env.run("linux/amd64", "mkdir -p /data/sub && echo 1 > /data/sub/f && echo 2 > /data/g", base)
    layers = [*base, LayerRef(prep.layer.diff_id, prep.layer.descriptor)]
    script = "rm /bin/vi && rm -rf /data/* && echo kept > /keep"
    digests, seen = [], None
    for _ in range(2):
        with env.snaps.prepare(layers) as active:
            spec = StepSpec(("/bin/sh", "-c", script), StepContext(plat.parse("linux/amd64")))
            env.runner.run(active.rootfs, spec, lambda _l: None)
            seen = tree(active.rootfs)
            committed = active.commit(EPOCH)
        digests.append(committed.layer.descriptor.digest)
    assert digests[0] == digests[1]
    names = set(env.layer_files(committed))
    assert {"bin/.wh.vi", "data/.wh.sub", "data/.wh.g", "keep"} <= names
    with env.snaps.prepare([*layers, LayerRef(committed.layer.diff_id, committed.layer.descriptor)]) as active:
        assert tree(active.rootfs) == seen


def test_failing_step_names_everything(env: Env) -> None:
    lines: list[str] = []
    spec = StepSpec(("/bin/sh", "-c", "echo out; echo err >&2; exit 3"),
                    StepContext(plat.parse("linux/amd64"), "builder", "RUN make"))
    with env.snaps.prepare(env.base("linux/amd64")) as active, pytest.raises(BuildError) as info:
        env.runner.run(active.rootfs, spec, lines.append)
    assert str(info.value) == ("[linux/amd64 builder] RUN make: process did not complete successfully: "
                               "exit code: 3")
    assert sorted(lines) == ["err", "out"]  # stdout and stderr are separate pipes inside runc
    assert not list((env.root / "bundles").iterdir())


def test_user_workdir_env_network_none(env: Env) -> None:
    base = env.base("linux/amd64")
    _, setup = env.run("linux/amd64", "echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && "
                       "echo 'app:x:1000:' >> /etc/group && echo 'extra:x:2000:app' >> /etc/group", base)
    layers = [*base, LayerRef(setup.layer.diff_id, setup.layer.descriptor)]
    lines, committed = env.run("linux/amd64", "id; pwd; echo $HOME $FOO; hostname; ls /sys/class/net | sort | "
                               "tr '\\n' ' '", layers, user="app", workdir="/work/dir", env=("FOO=bar",),
                               network="none")
    assert lines[0].startswith("uid=1000(app) gid=1000(app) groups=") and "2000(extra)" in lines[0]
    assert lines[1:4] == ["/work/dir", "/home/app bar", "buildkitsandbox"]
    assert lines[4].split() == ["lo"]
    assert set(env.layer_files(committed)) == {"work", "work/dir"}


def test_unknown_user(env: Env) -> None:
    with pytest.raises(BuildError, match="unable to find user nobody2"):
        env.run("linux/amd64", "true", user="nobody2")


def test_cache_mount_shared_per_platform(env: Env, emulators: None) -> None:
    cache = (CacheMount("/cache"),)
    env.run("linux/amd64", "echo amd64 >> /cache/log", mounts=cache, commit=False)
    lines, committed = env.run("linux/amd64", "cat /cache/log", mounts=cache)
    assert lines == ["amd64"]
    assert env.layer_files(committed) == {}
    lines, _ = env.run("linux/arm64", "cat /cache/log 2>/dev/null || echo empty", mounts=cache, commit=False)
    assert lines == ["empty"]  # the default id includes the platform
    shared = (CacheMount("/cache", id="shared-id"),)
    env.run("linux/amd64", "echo from-amd64 > /cache/x", mounts=shared, commit=False)
    lines, _ = env.run("linux/arm64", "cat /cache/x", mounts=shared, commit=False)
    assert lines == ["from-amd64"]


def test_secret_never_in_layer(env: Env) -> None:
    value = b"s3cr3t-value-42"
    mounts = (SecretMount("token"), SecretMount("api", env="API_KEY"),
              SecretMount("deep", target="/opt/creds/deep"))
    script = ("cat /run/secrets/token; echo; echo $API_KEY; stat -c %a /run/secrets/token; "
              "cat /opt/creds/deep; echo; echo built > /out")
    lines, committed = env.run("linux/amd64", script, mounts=mounts,
                               secrets={"token": value, "api": b"k3y", "deep": b"d33p"})
    assert lines == [value.decode(), "k3y", "400", "d33p"]
    raw = env.content.read(committed.layer.descriptor.digest, limit=1 << 26)
    import gzip

    plain = gzip.decompress(raw)
    assert value not in plain and b"d33p" not in plain and b"secrets" not in plain and b"creds" not in plain
    assert set(env.layer_files(committed)) == {"out"}
    for path in env.root.rglob("*"):
        if path.is_file() and "blobs" not in path.parts:
            assert value not in path.read_bytes()
    with pytest.raises(BuildError, match="required"):
        env.run("linux/amd64", "true", mounts=(SecretMount("missing", required=True),), commit=False)


def test_bind_and_tmpfs(env: Env, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "in.txt").write_text("from context\n")
    lines, committed = env.run(
        "linux/amd64", "cat /src/in.txt; touch /src/x 2>/dev/null || echo ro; echo w > /rw/new; "
        "echo t > /scratch/t; ls /rw", mounts=(BindMount("/src", ctx), BindMount("/rw", ctx, readwrite=True),
                                                TmpfsMount("/scratch")))
    assert lines == ["from context", "ro", "in.txt", "new"]
    assert sorted(os.listdir(ctx)) == ["in.txt"]  # rw changes discarded
    assert env.layer_files(committed) == {}


def test_missing_emulator_is_a_clear_error(env: Env) -> None:
    with pytest.raises(BuildError, match=r"linux/sparc64 cannot run on this host"):
        env.run("linux/sparc64", "true", layers=[], commit=False)


def test_bundle_config(env: Env) -> None:
    spec = StepSpec(("true",), StepContext(plat.parse("linux/amd64")), network="none")
    from polyarch.worker.mounts import MountSetup

    with env.snaps.prepare(env.base("linux/amd64")) as active, \
            MountSetup(env.root, active.rootfs, env.root / "scratch", spec.platform, {}, {}) as setup, \
            StepNetwork("none", env.root) as net:
        config = env.runner._config(active.rootfs, spec, setup, env.root, net)
    json.dumps(config)
    assert {"type": "network"} in config["linux"]["namespaces"]
    assert config["process"]["terminal"] is False
    dests = [m["destination"] for m in config["mounts"]]
    assert dests[:6] == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    assert "/etc/hosts" in dests and "/etc/resolv.conf" in dests


# --- an image that plants files and symlinks where the container's mount points go ----------------------------


def _run_planted(env: Env, plant: Callable[[Path], None], args: tuple[str, ...]) -> tuple[list[str], set[str]]:
    """Plant in the rootfs of the base, run ``args``; the lines it printed and the names in its layer."""
    lines: list[str] = []
    spec = StepSpec(args, StepContext(plat.parse("linux/amd64"), "build", "RUN planted"))
    with env.snaps.prepare(env.base("linux/amd64")) as active:
        plant(Path(active.rootfs))
        env.runner.run(active.rootfs, spec, lines.append)
        committed = active.commit(EPOCH)
    return lines, set(env.layer_files(committed))


def _replace(path: Path, target: str | None) -> None:
    """``path`` (a directory of the base) becomes a symlink to ``target``, or a file when ``target`` is None."""
    import shutil

    shutil.rmtree(path)
    if target is None:
        path.write_text("not a directory\n")
    else:
        os.symlink(target, path)


def _no_container_left(env: Env) -> None:
    assert not list((env.root / "bundles").iterdir())
    assert not [p for p in (env.root / "runc-state").iterdir() if p.is_dir()]


def test_etc_symlinked_out_of_the_root_runs_with_generated_files(env: Env, tmp_path: Path) -> None:
    """/etc -> an absolute path (as if to the host's): resolved inside the rootfs, as runc does; the step sees
    the generated hosts and resolv.conf there, and the mount points made for them are not in the layer."""
    host = tmp_path / "host-etc"
    host.mkdir()
    (host / "hosts").write_text("host file\n")
    lines, names = _run_planted(env, lambda r: _replace(r / "etc", os.fspath(host)),
                                ("/bin/sh", "-c", f"cat /etc/hosts | head -1; test -e {host}/hosts && echo seen"))
    assert lines == ["127.0.0.1\tlocalhost buildkitsandbox", "seen"]
    assert names == {"etc"}  # the planted symlink only
    assert sorted(os.listdir(host)) == ["hosts"] and (host / "hosts").read_text() == "host file\n"


def test_dangling_hosts_and_resolv_conf_symlinks_leave_nothing_in_the_layer(env: Env) -> None:
    """/etc/hosts -> /nowhere/hosts, /etc/resolv.conf -> ../tmp/resolv.conf (as some images ship it): the
    generated files are mounted where they lead inside the rootfs; runc no longer creates them in the layer."""
    def plant(rootfs: Path) -> None:
        for name, dest in (("hosts", "/nowhere/hosts"), ("resolv.conf", "../tmp/resolv.conf")):
            (rootfs / "etc" / name).unlink(missing_ok=True)
            os.symlink(dest, rootfs / "etc" / name)

    lines, names = _run_planted(env, plant, ("/bin/sh", "-c", "head -1 /etc/hosts; test -f /etc/resolv.conf && echo ok"))
    assert lines == ["127.0.0.1\tlocalhost buildkitsandbox", "ok"]
    assert names == {"etc", "etc/hosts", "etc/resolv.conf"}  # the planted symlinks only


@pytest.mark.parametrize("path,target,message", [
    ("etc", None, "cannot mount on /etc/hosts: in the image, /etc is not a directory"),
    ("proc", "/", "cannot mount on /proc: in the image, /proc is a symbolic link"),
    ("proc", "@H@", "cannot mount on /proc: in the image, /proc is a symbolic link"),
    ("sys", "../../host-sys", "cannot mount on /sys: in the image, /sys is a symbolic link"),
    # runc 1.1.5 mounts the /dev tmpfs where the symlink leads inside the rootfs, but then makes /dev/ptmx,
    # /dev/fd, /dev/stdin... by the rootfs path as it is: through the symlink, in the host's directory
    ("dev", "@H@", "cannot mount on /dev: in the image, /dev is a symbolic link"),
])
def test_mount_point_the_image_does_not_allow(env: Env, tmp_path: Path, path: str, target: str | None,
                                              message: str) -> None:
    host = tmp_path / "host-dir"  # plays a directory of the host; must stay empty
    host.mkdir()
    os.utime(host, ns=(1_000_000_000, 1_000_000_000))
    link = None if target is None else target.replace("@H@", os.fspath(host))
    with pytest.raises(BuildError) as info:
        _run_planted(env, lambda r: _replace(r / path, link), ("true",))
    assert str(info.value).startswith(message)
    assert getattr(info.value, "step_exit_code", None) is None
    assert os.listdir(host) == [] and os.stat(host).st_mtime_ns == 1_000_000_000
    _no_container_left(env)


@pytest.mark.parametrize("args,mounts,reason", [
    (("/nonexistent",), (), r'^runc run failed: .*exec: "/nonexistent": .*no such file or directory$'),
    (("true",), (TmpfsMount("/proc/x"),), r'^runc run failed: .*error mounting "tmpfs" to rootfs at "/proc/x"'),
])
def test_runtime_failure_is_an_error_with_the_runtime_reason(env: Env, args: tuple[str, ...],
                                                            mounts: tuple[TmpfsMount, ...], reason: str) -> None:
    """runc itself failing (not the step's process exiting non-zero) is a BuildError carrying runc's reason,
    not an exit code; runc's copy of it on stderr is not passed on as the step's output."""
    lines: list[str] = []
    spec = StepSpec(args, StepContext(plat.parse("linux/amd64"), "build", "RUN x"), mounts=mounts)
    with env.snaps.prepare(env.base("linux/amd64")) as active, pytest.raises(BuildError) as info:
        env.runner.run(active.rootfs, spec, lines.append)
    assert re.search(reason, str(info.value)), str(info.value)
    assert getattr(info.value, "step_exit_code", None) is None
    assert lines == []
    _no_container_left(env)
