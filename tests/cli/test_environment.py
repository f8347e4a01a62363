"""The environment is read once by the CLI (``polyarch.cli.environment``) and every variable still does what it
did when modules read it themselves: through the CLI where a command shows it, else through ``Environment``."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from tests.conftest import run_cli

from polyarch import platform as plat
from polyarch.cli.environment import Environment
from polyarch.content import compression
from polyarch.worker import binfmt


def test_read_keeps_every_variable() -> None:
    env = Environment.read({"POLYARCH_DEBUG": "1", "XDG_DATA_HOME": "/x", "SOURCE_DATE_EPOCH": " 12 ",
                            "POLYARCH_GZIP": "zlib", "POLYARCH_ARM_VARIANT": "v6", "POLYARCH_SNAPSHOTTER": "copy",
                            "POLYARCH_RUNTIME": "crun", "POLYARCH_NET_HELPER": "pasta",
                            "POLYARCH_BINFMT_DIR": "/b", "DOCKER_CONFIG": "/d",
                            "POLYARCH_INSECURE_REGISTRIES": "A.lan b.lan,c.lan", "POLYARCH_DOCKERHUB_MIRROR": "m",
                            "POLYARCH_REGISTRY_BACKOFF": "0.5", "POLYARCH_ALLOW_NONDISTRIBUTABLE_ARTIFACTS": "on"})
    assert env.debug and env.build_epoch() == 12 and env.import_epoch() == 12
    assert env.runtime_options().runtime == "crun" and env.runtime_options().net_helper == "pasta"
    assert not env.runtime_options().overlay_binds and env.runtime_options().binfmt_dir == Path("/b")
    assert env.snapshotter_driver() == "copy" and env.credentials().path == Path("/d/config.json")
    opts = env.client_options(insecure=("D.lan",))
    assert opts.insecure == {"a.lan", "b.lan", "c.lan", "d.lan"} and opts.mirror == "m" and opts.backoff == 0.5
    assert opts.allow_nondistributable
    empty = Environment.read({"POLYARCH_DEBUG": "0", "POLYARCH_RUNTIME": " "})
    assert empty == Environment() and not empty.debug and empty.build_epoch() is None
    assert empty.runtime_options().runtime == "runc" and empty.runtime_options().overlay_binds
    assert empty.snapshotter_driver() is None and empty.credentials().path == Path.home() / ".docker/config.json"


def test_default_root_follows_xdg_data_home_for_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert Environment.read({"XDG_DATA_HOME": "/data"}).default_root() == Path("/data/polyarch")
    assert Environment.read({}).default_root() == Path.home() / ".local/share/polyarch"
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert Environment.read({"XDG_DATA_HOME": "/data"}).default_root() == Path("/var/lib/polyarch")


def test_arm_variant_fallback_is_applied_to_the_host_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plat._pyplatform, "machine", lambda: "armv7l")
    monkeypatch.setattr(plat, "_cpuinfo", lambda: "")  # a CPU that names no architecture version
    try:
        plat.host.cache_clear()
        assert plat.host().variant == "v7"  # what the machine name says
        Environment.read({"POLYARCH_ARM_VARIANT": "v6"}).apply_process_settings()
        assert str(plat.host()) == "linux/arm/v6"
    finally:
        plat.set_arm_variant_fallback("")


def test_gzip_zlib_is_applied_to_layer_compression() -> None:
    data = b"polyarch " * 5000
    try:
        Environment.read({"POLYARCH_GZIP": "zlib"}).apply_process_settings()
        c = compression.compressor("gzip")
        blob = c.compress(data) + c.flush()
        z = zlib.compressobj(6, zlib.DEFLATED, 31)
        assert blob == z.compress(data) + z.flush()  # exactly stdlib zlib's bytes
    finally:
        compression.select_gzip("isal")
    Environment.read({"POLYARCH_GZIP": "other"}).apply_process_settings()  # anything else: the default
    assert compression._gzip_backend == "isal"


def test_import_epoch_errors_through_the_cli(tmp_path: Path) -> None:
    for value, message in (("soon", "is not a whole number of seconds"), ("-5", "is negative")):
        proc = run_cli("import", "--platform", "linux/amd64=/dev/null", "-t", "x:1", root=tmp_path / "root",
                       env={"SOURCE_DATE_EPOCH": value}, check=False)
        assert proc.returncode == 1 and proc.stderr == f"error: SOURCE_DATE_EPOCH={value!r} {message}\n"


def test_runtime_net_helper_and_binfmt_dir_reach_doctor(tmp_path: Path) -> None:
    proc = run_cli("doctor", "--format", "json", root=tmp_path / "root", check=False,
                   env={"POLYARCH_RUNTIME": "no-such-runtime", "POLYARCH_NET_HELPER": "no-such-helper",
                        "POLYARCH_BINFMT_DIR": str(tmp_path / "binfmt")})
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert proc.returncode == 1
    assert checks["runtime"]["status"] == "fail" and "'no-such-runtime' not found" in checks["runtime"]["detail"]
    assert checks["run network"]["status"] == "warn"  # the forced helper is not installed
    assert checks["binfmt_misc"]["detail"] == f"not mounted at {tmp_path / 'binfmt'}"


def test_binfmt_dir_reaches_the_binfmt_command(tmp_path: Path) -> None:
    foreign = next(a for a in binfmt.ARCHES.values() if not plat.runs_natively(a.platform))
    interp = tmp_path / "qemu"
    interp.write_text("")
    (tmp_path / "register").write_text("")
    (tmp_path / "qemu-test").write_text(f"enabled\ninterpreter {interp}\nflags: POCF\noffset 0\n"
                                        f"magic {foreign.magic.hex()}\nmask {foreign.mask.hex()}\n")
    status = json.loads(run_cli("binfmt", root=tmp_path / "root",
                                env={"POLYARCH_BINFMT_DIR": str(tmp_path)}).stdout)
    assert status["emulators"] == ["qemu-test"] and str(foreign.platform) in status["supported"]


def test_snapshotter_reaches_run(store_root: Path) -> None:
    proc = run_cli("run", "base/busybox:1", "true", root=store_root, env={"POLYARCH_SNAPSHOTTER": "zfs"},
                   check=False)
    assert proc.returncode == 2 and proc.stderr.splitlines()[0] == "error: unknown snapshotter 'zfs'"
