# ruff: noqa: F811  (the fixtures env and sshd are imported, then named as arguments)
"""Builder nodes over a real OpenSSH server on loopback: shared ssh connections, ``--node-failover`` modes, a
node out of disk, and ``BUILDPLATFORM`` on a node (tests/nodes/test_remote.py has the fixtures and the others)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import BASE_NAME
from tests.nodes.sshnode import SshNode
from tests.nodes.test_remote import RUNNING, SLOW, Env, _blobs, _finish, _pids, env, sshd  # noqa: F401

INFO = f"""FROM --platform=$BUILDPLATFORM {BASE_NAME} AS tools
ARG BUILDPLATFORM BUILDOS BUILDARCH TARGETPLATFORM TARGETARCH
RUN echo "$BUILDPLATFORM $BUILDOS $BUILDARCH $TARGETPLATFORM $TARGETARCH $(uname -m)" > /info
FROM {BASE_NAME}
COPY --from=tools /info /info
"""


def _errors(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.startswith("error:")]


def _second_arm_node(env: Env, base_root: Path, tmp_path: Path, builder: str) -> Path:
    """``builder``: ssh nodes pi5 (store env.node) and pi5b (a store of its own), both declared linux/arm64."""
    other = tmp_path / "store-b"  # (not a prefix of env.node: processes are found by it)
    shutil.copytree(base_root, other, ignore=shutil.ignore_patterns(".complete", "ingest"))
    (other / "ingest").mkdir(exist_ok=True)
    env.homelab(name=builder, local=False)
    env.ok("builder", "create", "--append", "--name", builder, "--node", "pi5b", "--platform", "linux/arm64",
           "--node-flags", f"--root {other}", "ssh://polynode")
    return other


def _slow(env: Env, builder: str, pause: int, *extra: str) -> subprocess.Popen[str]:
    """A build of SLOW on ``builder`` for linux/arm64, returned once pi5's RUN step printed its first line."""
    (env.ctx / "Dockerfile").write_text(SLOW)
    proc = subprocess.Popen(env.argv("build", "--builder", builder, "--platform", "linux/arm64", "--build-arg",
                                     f"PAUSE={pause}", *extra, "--progress", "plain", "-t", "slow:1", "--load",
                                     str(env.ctx)), env=env.env, stderr=subprocess.PIPE, text=True)
    RUNNING.append(proc)
    assert proc.stderr is not None
    seen: list[str] = []
    step = ""
    while True:
        line = proc.stderr.readline()
        seen.append(line)
        if line.rstrip().endswith("[pi5 linux/arm64 stage-0 4/4] RUN echo started && sleep $PAUSE"):
            step = line.split()[0]
        if (step and line.startswith(step + " ") and line.rstrip().endswith(" started")) or not line:
            break
    assert proc.poll() is None, "".join(seen)
    proc.seen = seen  # type: ignore[attr-defined]
    return proc


def _kill_node(env: Env) -> None:
    servers = _pids(["python", "node", "serve", str(env.node)])
    assert len(servers) == 1
    os.kill(servers[0], signal.SIGKILL)


# --- --node-failover ---------------------------------------------------------------------------------------------


def test_default_failover_rebuilds_on_a_native_node(env: Env, base_root: Path, tmp_path: Path) -> None:
    other = _second_arm_node(env, base_root, tmp_path, "twins")
    proc = _slow(env, "twins", 4)
    _kill_node(env)
    out = _finish(proc)
    assert proc.returncode == 0, out
    assert "node pi5 (ssh://polynode): connection lost at step" in out
    assert "building linux/arm64 on node pi5b instead\n" in out  # natively: no emulation warning
    # the rebuilt platform's top layer was made in pi5b's store
    top = env.run("run", "--platform", "linux/arm64", "slow:1", "cat", "/a.txt")
    assert top.returncode == 0 and top.stdout == "hello from the context\n"
    assert _blobs(other) & _blobs(env.client) - _blobs(base_root)


def test_no_node_failover_fails_with_one_line(env: Env, base_root: Path, tmp_path: Path) -> None:
    _second_arm_node(env, base_root, tmp_path, "twins")
    proc = _slow(env, "twins", 60, "--no-node-failover")
    _kill_node(env)
    out = _finish(proc)
    errors = _errors(out)
    assert proc.returncode == 1 and len(errors) == 1, out
    assert errors[0].startswith("error: node pi5 (ssh://polynode): connection lost at step "), errors
    assert "RUN echo started && sleep $PAUSE" in errors[0]
    assert "pi5b" not in out.split(errors[0])[0].split("connection lost")[-1]  # nothing moved to pi5b
    assert "slow:1" not in env.ok("images").stdout


def test_default_does_not_fall_back_to_emulation(env: Env) -> None:
    """The local node only emulates arm64: a fault of pi5 fails the build; the hint names --node-failover."""
    env.homelab()
    proc = _slow(env, "homelab", 60)
    _kill_node(env)
    out = _finish(proc)
    errors = _errors(out)
    assert proc.returncode == 1 and len(errors) == 1, out
    assert errors[0].startswith("error: node pi5 (ssh://polynode): connection lost at step "), errors
    assert "hint: with --node-failover the build goes on: linux/arm64 on node here (emulated)" in out
    assert "slow:1" not in env.ok("images").stdout


# --- out of disk -------------------------------------------------------------------------------------------------


@pytest.fixture
def small_node(env: Env, base_root: Path) -> Iterator[Path]:
    """pi5's store on a 12 MiB tmpfs (the base image takes ~3 MiB, its unpacked arm64 rootfs ~2 MiB)."""
    mnt = Path(tempfile.mkdtemp(prefix="pa-small-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        shutil.copytree(base_root, mnt, ignore=shutil.ignore_patterns(".complete", "ingest"), dirs_exist_ok=True)
        (mnt / "ingest").mkdir(exist_ok=True)
        env.node = mnt
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        os.rmdir(mnt)


def _leftovers(root: Path) -> list[str]:
    """Temporary state of a node's store: context copies, ingests, bundles, active snapshots, runc state."""
    out = []
    for sub in ("contexts", "ingest", "bundles", "runc-state", "snapshots/overlay/active", "snapshots/overlay/tmp"):
        d = root / sub
        if d.is_dir():
            out += [f"{sub}/{p.name}" for p in d.iterdir()]
    return out


def test_node_out_of_disk(env: Env, small_node: Path) -> None:
    # the RUN writes 4 MB of noise: it fits, its layer blob (as big: incompressible) does not
    (env.ctx / "Dockerfile").write_text(f"FROM {BASE_NAME}\nRUN head -c 4000000 /dev/urandom > /noise\n")
    env.homelab(name="armonly", local=False)
    proc = env.run("build", "--builder", "armonly", "--platform", "linux/arm64", "--progress", "plain", "-t",
                   "full:1", "--load", str(env.ctx))
    errors = _errors(proc.stderr)
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: node pi5: linux/arm64 [stage-0 2/2] RUN head -c 4000000"), errors
    assert "No space left on device" in errors[0] and "Traceback" not in proc.stderr
    assert "full:1" not in env.ok("images").stdout  # nothing exported
    assert _leftovers(small_node) == []  # the node removed its temporary state
    # a node out of disk is a node fault: with --node-failover the local node builds it (emulated) instead
    env.ok("builder", "create", "--append", "--name", "armonly", "--node", "here", "local")
    ok = env.ok("build", "--builder", "armonly", "--platform", "linux/arm64", "--node-failover", "--progress",
                "plain", "-t", "full:1", "--load", str(env.ctx))
    assert "No space left on device; building linux/arm64 on node here instead (through emulation)" in ok.stderr
    assert env.ok("run", "--platform", "linux/arm64", "full:1", "wc", "-c", "/noise").stdout.split()[0] == "4000000"
    assert _leftovers(small_node) == []


# --- BUILDPLATFORM -----------------------------------------------------------------------------------------------


def test_build_platform_is_the_nodes_own(env: Env) -> None:
    """pi5 is declared linux/arm64: its builds see BUILDPLATFORM linux/arm64 (here through QEMU), whatever this
    host is; a node declared nothing uses its own host (this VM: linux/amd64)."""
    (env.ctx / "Dockerfile").write_text(INFO)
    env.homelab(name="armonly", local=False)
    # pi5 also runs linux/amd64 (the VM's CPU): asked for it, its tools stage still runs on its arm64
    env.ok("build", "--builder", "armonly", "--platform", "linux/amd64", "-t", "info:1", "--load", str(env.ctx))
    got = env.ok("run", "--platform", "linux/amd64", "info:1", "cat", "/info").stdout
    assert got == "linux/arm64 linux arm64 linux/amd64 amd64 aarch64\n"
    env.ok("builder", "create", "--name", "plain", "--node", "vm", "--node-flags", f"--root {env.node}",
           "ssh://polynode")
    env.ok("build", "--builder", "plain", "--platform", "linux/arm64", "-t", "info:2", "--load", str(env.ctx))
    got = env.ok("run", "--platform", "linux/arm64", "info:2", "cat", "/info").stdout
    assert got == "linux/amd64 linux amd64 linux/arm64 arm64 x86_64\n"


# --- shared ssh connections --------------------------------------------------------------------------------------


def test_builds_share_one_ssh_connection(env: Env, tmp_path: Path) -> None:
    """A build leaves one ssh master (private socket directory); the next build goes through it (even with the
    server no longer accepting connections); another ssh command never uses it; ``builder stop`` ends it."""
    own = SshNode.start(tmp_path / "sshd2")  # its listener is stopped below
    try:
        env.env.update(own.ssh_env())
        env.homelab(name="armonly", local=False)
        env.ok("build", "--builder", "armonly", "--platform", "linux/arm64", str(env.ctx))
        [sock] = own.masters()
        assert (os.lstat(sock.parent).st_mode & 0o777) == 0o700
        # another ssh command line (here: known hosts that do not know the server) makes its own connection,
        # with its own host-key checking: refused
        bad = {**env.env, "POLYARCH_SSH": env.env["POLYARCH_SSH"] + f" -o UserKnownHostsFile={tmp_path / 'none'}"}
        proc = subprocess.run(env.argv("build", "--builder", "armonly", "--platform", "linux/arm64", str(env.ctx)),
                              env=bad, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "node pi5 (ssh://polynode) is unreachable: Host key verification failed" \
            in proc.stderr, proc.stderr
        own.proc.terminate()  # no new connection is accepted from now on; the master's session lives on
        own.proc.wait(timeout=10)
        again = env.run("build", "--builder", "armonly", "--platform", "linux/arm64", "--progress", "plain",
                        str(env.ctx))
        assert again.returncode == 0 and "CACHED" in again.stderr, again.stderr
        env.ok("builder", "stop", "armonly")
        assert own.masters() == []
        assert _pids(["ssh", str(sock)]) == []
    finally:
        own.stop()


def test_an_error_before_the_build_does_not_wait_for_the_nodes(env: Env, tmp_path: Path) -> None:
    """build reaches its nodes while it checks its flags; a flag error is reported at once, the node still
    being reached is cut off (here an "ssh" that never answers)."""
    env.homelab("ssh://slowhost", name="slow", local=False)
    env.env["POLYARCH_SSH"] = f"{tmp_path / 'hang'}"
    (tmp_path / "hang").write_text("#!/bin/sh\necho $$ > \"$(dirname \"$0\")/pid\"\nexec sleep 60\n")
    (tmp_path / "hang").chmod(0o755)
    t0 = time.monotonic()
    proc = env.run("build", "--builder", "slow", "--platform", "linux/arm64", "--load", str(env.ctx), timeout=30)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --load and --push need a name"), proc.stderr
    assert time.monotonic() - t0 < 10
    if (tmp_path / "pid").exists():  # (else it was stopped before it even wrote it)
        status = Path(f"/proc/{(tmp_path / 'pid').read_text().strip()}/status")
        assert not status.exists() or "zombie" in status.read_text(), "the hanging ssh was left running"
