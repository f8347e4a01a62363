"""buildx's RUN-environment flags through the real CLI and real runc: ``--add-host`` (/etc/hosts written by
polyarch), ``--shm-size`` (/dev/shm), ``--ulimit`` (rlimits), ``--cgroup-parent`` (the container's cgroup), each
part of the RUN's cache key; ``--no-cache-filter`` (one stage's steps run again); ``-D/--debug`` on the command;
bake's ``extra-hosts``, ``ulimits``, ``shm-size``, ``no-cache-filter``; bad values are one ``error:`` line."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyarch import ops
from polyarch.platform import parse
from tests.conftest import run_cli

from .conftest import build, by_name, images_of, layer_file, needs_run, write_tree

PROBE = ("RUN cat /etc/hosts > /hosts; grep ' /dev/shm ' /proc/mounts > /shm; ulimit -n > /nofile; "
         "ulimit -Hn > /nofile_hard; ulimit -u > /nproc; cat /proc/self/cgroup > /cgroup\n")


def _files(root: Path, name: str, *names: str) -> dict[str, str]:
    img = images_of(root, name)[0]
    return {n: layer_file(root, img, len(img.manifest.layers) - 1, n.lstrip("/")).decode() for n in names}


@pytest.fixture
def cgroup_parent() -> Iterator[str]:
    """A parent cgroup name of this test's own; its directories (one per v1 hierarchy, or the v2 one) removed
    after the test (runc deletes the container's cgroup, not the parent it created)."""
    name = f"polyarch-test-{os.getpid()}"
    yield name
    for top in Path("/sys/fs/cgroup").iterdir():
        for d in (top / name, Path("/sys/fs/cgroup") / name):
            with contextlib.suppress(OSError):
                d.rmdir()


@pytest.mark.root
@needs_run("linux/amd64")
def test_run_flags_reach_the_step_and_change_its_cache_key(store_root: Path, tmp_path: Path,
                                                           cgroup_parent: str) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\n" + PROBE})
    plain = build(store_root, ctx, "--platform", "linux/amd64", "-t", "flags:plain", "--load")
    assert by_name(plain.stderr, "RUN cat /etc/hosts") == ["DONE"]
    before = _files(store_root, "flags:plain", "/hosts", "/shm", "/nofile")
    assert "db.internal" not in before["/hosts"] and "size=65536k" in before["/shm"]

    flags = ("--add-host", "db.internal:10.1.2.3", "--add-host", "v6.internal=[fd00::1]", "--shm-size", "96m",
             "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=512", "--cgroup-parent", cgroup_parent)
    first = build(store_root, ctx, "--platform", "linux/amd64", "-t", "flags:set", "--load", *flags)
    assert by_name(first.stderr, "RUN cat /etc/hosts") == ["DONE"]  # the flags are part of the step's key
    got = _files(store_root, "flags:set", "/hosts", "/shm", "/nofile", "/nofile_hard", "/nproc", "/cgroup")
    assert "10.1.2.3\tdb.internal" in got["/hosts"].splitlines()
    assert "fd00::1\tv6.internal" in got["/hosts"].splitlines()
    assert "localhost" in got["/hosts"]  # polyarch's own lines stay
    assert "size=98304k" in got["/shm"]  # 96 MiB
    assert (got["/nofile"].strip(), got["/nofile_hard"].strip(), got["/nproc"].strip()) == ("1024", "2048", "512")
    assert f"/{cgroup_parent}/polyarch-" in got["/cgroup"]

    again = build(store_root, ctx, "--platform", "linux/amd64", "-t", "flags:set", "--load", *flags)
    assert by_name(again.stderr, "RUN cat /etc/hosts") == ["CACHED"]
    changed = build(store_root, ctx, "--platform", "linux/amd64", "-t", "flags:other", "--load",
                    *flags[:-4], "--ulimit", "nofile=1000:2048", "--cgroup-parent", cgroup_parent)
    assert by_name(changed.stderr, "RUN cat /etc/hosts") == ["DONE"]
    assert _files(store_root, "flags:other", "/nofile")["/nofile"].strip() == "1000"
    back = build(store_root, ctx, "--platform", "linux/amd64", "-t", "flags:plain", "--load")
    assert by_name(back.stderr, "RUN cat /etc/hosts") == ["CACHED"]  # without the flags: the first key again


@pytest.mark.root
@needs_run("linux/amd64")
def test_no_cache_filter_reruns_exactly_that_stages_steps(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": (
        "FROM base/busybox:1 AS first\nRUN echo one > /one\n"
        "FROM base/busybox:1 AS second\nRUN echo two > /two\nCOPY --from=first /one /copied\n"
        "RUN cat /copied /two > /both\n")})
    args = ("--platform", "linux/amd64", "-t", "ncf:1", "--load")
    build(store_root, ctx, *args)
    proc = build(store_root, ctx, *args, "--no-cache-filter", "SECOND")  # stage names match in any case
    assert by_name(proc.stderr, "RUN echo one") == ["CACHED"]
    assert by_name(proc.stderr, "RUN echo two") == ["DONE"]
    assert by_name(proc.stderr, "RUN cat /copied") == ["DONE"]
    proc = build(store_root, ctx, *args, "--no-cache-filter", "first,nosuch")
    assert by_name(proc.stderr, "RUN echo one") == ["DONE"]
    assert by_name(proc.stderr, "RUN echo two") == ["CACHED"]
    assert "--no-cache-filter nosuch: the Dockerfile has no stage of that name" in proc.stderr
    proc = build(store_root, ctx, *args)
    assert set(by_name(proc.stderr, "RUN")) == {"CACHED"}


@pytest.mark.parametrize("flags,needle", [
    (("--add-host", "nohost"), "expected HOST:IP"),
    (("--add-host", "h:notanip"), "not an IP address"),
    (("--add-host", "bad host:10.0.0.1"), "not a host name"),
    (("--add-host", "h:host-gateway"), "host-gateway is not supported"),
    (("--ulimit", "nofile=abc"), "not a number"),
    (("--ulimit", "bogus=1"), "unknown limit 'bogus'"),
    (("--ulimit", "nofile=10:5"), "soft limit is above the hard limit"),
    (("--ulimit", "nofile=1:2:3"), "at most two values"),
    (("--ulimit", "nofile=-2"), "out of range"),
    (("--shm-size", "12q"), "invalid --shm-size"),
    (("--cgroup-parent", "../escape"), "is not a cgroup name"),
    (("--cgroup-parent", "system.slice:docker:x"), "slice:prefix:name"),
])
def test_bad_values_are_one_error_line(store_root: Path, tmp_path: Path, flags: tuple[str, ...],
                                       needle: str) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nRUN true\n"})
    proc = build(store_root, ctx, *flags, check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flag", ["-D", "--debug"])
def test_debug_on_the_command_shows_the_traceback(store_root: Path, tmp_path: Path, flag: str) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nRUN true\n"})
    proc = build(store_root, ctx, flag, "--ulimit", "bogus=1", check=False)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "error: invalid --ulimit 'bogus=1'" in proc.stderr
    baked = run_cli("bake", flag, "-f", str(tmp_path / "missing.hcl"), root=store_root, check=False)
    assert baked.returncode != 0 and "No such option" not in baked.stderr


@pytest.mark.root
@needs_run("linux/amd64")
def test_bake_attributes_reach_the_step(store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = write_tree(tmp_path / "ctx", {
        "Dockerfile": "FROM base/busybox:1 AS probe\n" + PROBE,
        "docker-bake.hcl": (
            'target "t" {\n  context = "."\n  platforms = ["linux/amd64"]\n  tags = ["bake:flags"]\n'
            '  extra-hosts = { "cache.internal" = "10.9.8.7" }\n  ulimits = ["nofile=900:1900"]\n'
            '  shm-size = "32m"\n  no-cache-filter = ["probe"]\n}\n')})
    monkeypatch.chdir(ctx)
    for _ in range(2):  # the second time too: no-cache-filter names the stage
        proc = run_cli("bake", "--progress", "plain", "--load", "t", root=store_root)
        assert by_name(proc.stderr, "RUN cat /etc/hosts") == ["DONE"]
    got = _files(store_root, "bake:flags", "/hosts", "/shm", "/nofile", "/nofile_hard")
    assert "10.9.8.7\tcache.internal" in got["/hosts"].splitlines()
    assert "size=32768k" in got["/shm"]
    assert (got["/nofile"].strip(), got["/nofile_hard"].strip()) == ("900", "1900")


@pytest.mark.parametrize("attr,needle", [
    ('ulimits = ["nofile=x"]', "target 't': attribute 'ulimits': invalid value 'nofile=x'"),
    ('shm-size = "lots"', "target 't': attribute 'shm-size': invalid value 'lots'"),
    ('extra-hosts = { "h" = "nope" }', "target 't': attribute 'extra-hosts': invalid value 'h=nope'"),
])
def test_bake_bad_attribute_is_one_error_line(store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              attr: str, needle: str) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nRUN true\n",
                                        "docker-bake.hcl": f'target "t" {{\n  {attr}\n}}\n'})
    monkeypatch.chdir(ctx)
    proc = run_cli("bake", "t", root=store_root, check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr


def test_run_options_enter_the_digest_only_when_set() -> None:
    root = ops.Scratch()
    plain = ops.Exec(root=root, args=("true",), platform=parse("linux/amd64"))
    assert set(plain.fields()) == {"args", "env", "cwd", "user", "network", "security", "mounts", "platform"}
    variants = [ops.RunOptions(extra_hosts=(("h", "10.0.0.1"),)), ops.RunOptions(ulimits=(("nofile", 1, 2),)),
                ops.RunOptions(shm_size=1 << 20), ops.RunOptions(cgroup_parent="/p")]
    digests = {ops.Exec(root=root, args=("true",), platform=parse("linux/amd64"), options=o).digest
               for o in variants}
    assert len(digests) == 4 and plain.digest not in digests


def test_node_wire_carries_the_options_and_checks_them() -> None:
    from polyarch.nodes.protocol import ProtocolError
    from polyarch.nodes.wire import request_from_json, request_to_json
    from polyarch.pipeline.run import BuildRequest

    opts = ops.RunOptions(extra_hosts=(("h", "10.0.0.1"),), ulimits=(("nofile", 10, -1),), shm_size=4096,
                          cgroup_parent="/a/b")
    req = BuildRequest("FROM scratch\n", run_options=opts, no_cache_filter=("x",))
    doc = request_to_json(req, (parse("linux/amd64"),))
    back = request_from_json(doc, {"context": Path(".")})
    assert back.run_options == opts and back.no_cache_filter == ("x",)
    doc["run_options"]["cgroup_parent"] = "../../escape"
    with pytest.raises(ProtocolError):
        request_from_json(doc, {"context": Path(".")})


def test_cgroup_parent_is_refused_in_rootless_mode() -> None:
    from polyarch.errors import UsageError
    from polyarch.pipeline.runflags import check_rootless

    opts = ops.RunOptions(cgroup_parent="/p")
    check_rootless(opts, rootless=False)
    check_rootless(ops.RunOptions(), rootless=True)
    with pytest.raises(UsageError, match="rootless build cannot create cgroups"):
        check_rootless(opts, rootless=True)
