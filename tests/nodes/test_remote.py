"""Remote builder nodes over a real OpenSSH server on loopback (tests/nodes/sshnode.py).

A builder ``homelab`` has the local node and ``pi5``, an ssh node declared ``linux/arm64`` whose store is a
separate root (``--node-flags "--root DIR"``). It runs arm64 through QEMU on this machine, but the client must
treat it as that node's platform: every arm64 step is shown with the node's name, the arm64 layers are made in the
node's store, and the client runs nothing for arm64. Faults: a dead node, a node of another protocol version, the
node process killed and the ssh connection killed mid-build.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import BASE_NAME
from tests.nodes.sshnode import SshNode

from polyarch.nodes.protocol import PROTOCOL_VERSION

DOCKERFILE = f"""FROM {BASE_NAME}
COPY a.txt /a.txt
RUN uname -m > /arch && cat /a.txt
"""
SLOW = f"""FROM {BASE_NAME}
ARG PAUSE=60
COPY a.txt /a.txt
RUN echo started && sleep $PAUSE
"""


RUNNING: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_build_left() -> Iterator[None]:
    """A client build a failed test left running is interrupted (it cancels and cleans up as on ^C)."""
    yield
    while RUNNING:
        proc = RUNNING.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshNode]:
    node = SshNode.start(tmp_path_factory.mktemp("sshd"))
    yield node
    node.stop()


class Env:
    def __init__(self, tmp: Path, base_root: Path, sshd: SshNode) -> None:
        self.client = tmp / "client"
        self.node = tmp / "node"
        for root in (self.client, self.node):
            shutil.copytree(base_root, root, ignore=shutil.ignore_patterns(".complete", "ingest"))
            (root / "ingest").mkdir(exist_ok=True)
        self.ctx = tmp / "ctx"
        self.ctx.mkdir()
        (self.ctx / "a.txt").write_text("hello from the context\n")
        (self.ctx / "Dockerfile").write_text(DOCKERFILE)
        self.env = {**os.environ, **sshd.ssh_env(), "POLYARCH_CONFIG_DIR": str(tmp / "config"),
                    "POLYARCH_ROOT": str(self.client)}
        self.env.pop("POLYARCH_BUILDER", None)
        self.env.pop("SSH_AUTH_SOCK", None)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "polyarch", *args]

    def run(self, *args: str, root: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "POLYARCH_ROOT": str(root or self.client)}
        return subprocess.run(self.argv(*args), env=env, capture_output=True, text=True, timeout=timeout)

    def ok(self, *args: str, root: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = self.run(*args, root=root)
        assert proc.returncode == 0, f"polyarch {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
        return proc

    def homelab(self, endpoint: str = "ssh://polynode", *, name: str = "homelab", local: bool = True) -> None:
        if local:
            self.ok("builder", "create", "--name", name, "--node", "here", "local")
        self.ok("builder", "create", *(["--append"] if local else []), "--name", name, "--node", "pi5",
                "--platform", "linux/arm64", "--node-flags", f"--root {self.node}", endpoint)


@pytest.fixture
def env(tmp_path: Path, base_root: Path, sshd: SshNode) -> Env:
    return Env(tmp_path, base_root, sshd)


def _blobs(root: Path) -> set[str]:
    return {p.name for p in (root / "blobs" / "sha256").iterdir()}


def _index(root: Path, ref: str) -> dict[str, dict[str, object]]:
    """platform → manifest document of the image ``ref`` in the store at ``root``."""
    index_doc = json.loads((root / "index.json").read_text())
    desc = next(m for m in index_doc["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name")
                == ref or m.get("annotations", {}).get("io.containerd.image.name", "").endswith(ref))
    idx = json.loads((root / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_text())
    out = {}
    for m in idx["manifests"]:
        p = m["platform"]
        out[f"{p['os']}/{p['architecture']}"] = json.loads(
            (root / "blobs" / "sha256" / m["digest"].split(":")[1]).read_text())
    return out


def test_two_nodes_build_each_platform_where_it_is_native(env: Env) -> None:
    env.homelab()
    first = env.ok("build", "--builder", "homelab", "--platform", "linux/amd64,linux/arm64", "--progress", "plain",
                   "-t", "demo:1", "--load", str(env.ctx))
    lines = first.stderr.splitlines()
    steps = [x for x in lines if x.startswith("#") and "] " in x and "[" in x]
    # every step the node ran is named with the node and its platform; the local steps carry neither
    assert any(x.endswith("[pi5 linux/arm64 stage-0 3/3] RUN uname -m > /arch && cat /a.txt") for x in steps), lines
    assert any(x.endswith("[stage-0 3/3] RUN uname -m > /arch && cat /a.txt") for x in steps), lines
    assert sum("RUN uname" in x for x in steps) == 2
    assert not any("arm64" in x and "pi5" not in x for x in steps), lines
    # the arm64 layers were made in the node's store and sent over; the amd64 ones never left this host
    images = _index(env.client, "demo:1")
    assert set(images) == {"linux/amd64", "linux/arm64"}
    arm_top = images["linux/arm64"]["layers"][-1]["digest"].split(":")[1]
    amd_top = images["linux/amd64"]["layers"][-1]["digest"].split(":")[1]
    node_blobs = _blobs(env.node)
    assert arm_top in node_blobs and arm_top in _blobs(env.client)
    assert amd_top not in node_blobs
    run_arm = env.ok("run", "--platform", "linux/arm64", "demo:1", "cat", "/arch", "/a.txt")
    assert run_arm.stdout == "aarch64\nhello from the context\n"
    assert env.ok("run", "--platform", "linux/amd64", "demo:1", "cat", "/arch").stdout == "x86_64\n"

    # a repeated build: every step cached on its node, no context file sent again, the same index
    again = env.ok("build", "--builder", "homelab", "--platform", "linux/amd64,linux/arm64", "--progress", "plain",
                   "-t", "demo:1", "--load", str(env.ctx))
    cached = again.stderr.split("[pi5 linux/arm64 stage-0 3/3] RUN uname -m > /arch && cat /a.txt\n")[1]
    assert cached.split("\n")[0].endswith("CACHED"), again.stderr
    sent = [x for x in again.stderr.splitlines() if "node pi5:" in x and "bytes sent" in x]
    assert sent, again.stderr
    assert int(sent[0].split("node pi5: ")[1].split()[0]) < 4096  # request + file list, no file content
    assert {p: m["layers"] for p, m in _index(env.client, "demo:1").items()} == \
        {p: m["layers"] for p, m in images.items()}  # the same layers (configs differ by their creation time)


def test_node_only_builder_and_schedule_errors(env: Env) -> None:
    env.homelab(name="armonly", local=False)
    # a platform no node runs (natively or emulated) fails before any work, naming the nodes
    before = _blobs(env.node)
    proc = env.run("build", "--builder", "armonly", "--platform", "linux/arm64,windows/amd64", str(env.ctx))
    assert proc.returncode != 0
    err = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "no node of builder armonly can run windows/amd64 (pi5: linux/arm64" in err[0], \
        proc.stderr
    assert "Traceback" not in proc.stderr and "#" not in proc.stderr  # no step ran
    assert _blobs(env.node) == before
    # a node-only builder: no step runs on this host (the node's store is the only one that gains layers)
    ok = env.ok("build", "--builder", "armonly", "--platform", "linux/arm64", "--progress", "plain", "-t", "a:1",
                "--load", str(env.ctx))
    steps = [x for x in ok.stderr.splitlines() if x.startswith("#") and "[" in x]
    assert steps and all("[pi5 linux/arm64" in x or "exporting" in x for x in steps), ok.stderr


def test_unreachable_node(env: Env) -> None:
    env.homelab("ssh://deadnode", name="dead", local=False)
    proc = env.run("build", "--builder", "dead", "--platform", "linux/arm64", "-t", "dead:1", "--load", str(env.ctx))
    assert proc.returncode == 1
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "node pi5 (ssh://deadnode) is unreachable" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    # a local node that emulates arm64: by default a native platform does not fall back to emulation (the
    # hint says what --node-failover does); with --node-failover the build goes on there, with a warning
    env.ok("builder", "create", "--append", "--name", "dead", "--node", "here", "local")
    proc = env.run("build", "--builder", "dead", "--platform", "linux/arm64", "-t", "dead:1", "--load", str(env.ctx))
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and lines[0].startswith("error: node pi5 (ssh://deadnode) is unreachable"), lines
    assert lines[1] == "hint: with --node-failover the build goes on: linux/arm64 on node here (emulated)", lines
    ok = env.ok("build", "--builder", "dead", "--platform", "linux/arm64", "--node-failover", "--progress", "plain",
                "-t", "dead:1", "--load", str(env.ctx))
    assert "building without node pi5" in ok.stderr and "through emulation" in ok.stderr
    # --no-node-failover: the unreachable node fails the build even so
    proc = env.run("build", "--builder", "dead", "--platform", "linux/arm64", "--no-node-failover", str(env.ctx))
    assert proc.returncode == 1 and proc.stderr.startswith("error: node pi5 (ssh://deadnode) is unreachable")


def test_node_of_another_protocol_version_is_refused(env: Env, sshd: SshNode, tmp_path: Path) -> None:
    fake = tmp_path / "fake_node.py"
    fake.write_text(
        "import json, struct, sys\n"
        "r, w = sys.stdin.buffer, sys.stdout.buffer\n"
        "kind, n = struct.unpack('>cI', r.read(5)); r.read(n)\n"
        "msg = json.dumps({'type': 'hello', 'version': 99, 'native': ['linux/arm64']}).encode()\n"
        "w.write(struct.pack('>cI', b'J', len(msg)) + msg); w.flush()\n")
    key = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    sshd.add_key(key.with_suffix(".pub"), command=f"{sys.executable} {fake}")
    env.env.update(sshd.ssh_env(identity=key))
    env.env["POLYARCH_SSH"] = env.env["POLYARCH_SSH"].replace("ssh -F", "ssh -o IdentitiesOnly=yes -F")
    env.homelab(name="old", local=False)
    # the forced command of that key answers; the client's own key entry comes first in IdentityFile order
    cfg = Path(env.env["POLYARCH_SSH"].split("-F ")[1].split()[0])
    proc = env.run("build", "--builder", "old", "--platform", "linux/arm64", str(env.ctx),
                   )
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert f"speaks node protocol 99, this polyarch speaks {PROTOCOL_VERSION}" in errors[0] and "pi5" in errors[0], cfg


def _pids(match: list[str], parent: int | None = None) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        text = [a.decode(errors="replace") for a in argv]
        if "python" in match and "python" not in text[0]:
            continue
        if all(any(m in a for a in text) for m in match) and (parent is None or ppid == parent):
            out.append(int(entry.name))
    return out


def _start_slow_build(env: Env, builder: str = "armonly", platforms: str = "linux/arm64",
                      *extra: str) -> subprocess.Popen[str]:
    (env.ctx / "Dockerfile").write_text(SLOW)
    if builder == "armonly":
        env.homelab(name="armonly", local=False)
    else:
        env.homelab()
    proc = subprocess.Popen(env.argv("build", "--builder", builder, "--platform", platforms, *extra,
                                     "--progress", "plain", "-t", "slow:1", "--load", str(env.ctx)),
                            env=env.env, stderr=subprocess.PIPE, text=True)
    RUNNING.append(proc)
    assert proc.stderr is not None
    seen: list[str] = []
    node_step = ""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until the node's RUN step printed its first line
        line = proc.stderr.readline()
        seen.append(line)
        if line.rstrip().endswith("[pi5 linux/arm64 stage-0 4/4] RUN echo started && sleep $PAUSE"):
            node_step = line.split()[0]
        if node_step and line.startswith(node_step + " ") and line.rstrip().endswith(" started"):
            break
        if not line and proc.poll() is not None:
            break
    assert proc.poll() is None, "".join(seen)
    proc.seen = seen  # type: ignore[attr-defined]
    return proc


def _finish(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    return "".join(proc.seen) + rest  # type: ignore[attr-defined]


def _node_contexts(env: Env) -> list[str]:
    d = env.node / "contexts"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_node_process_killed_mid_build(env: Env) -> None:
    proc = _start_slow_build(env)
    servers = _pids(["python", "node", "serve", str(env.node)])  # the interpreter, not a shell wrapping it
    assert len(servers) == 1
    os.kill(servers[0], signal.SIGKILL)
    out = _finish(proc)
    errors = [x for x in out.splitlines() if x.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, out
    assert "node pi5 (ssh://polynode): connection lost at step" in errors[0], errors
    assert "[stage-0 4/4] RUN echo started && sleep $PAUSE" in errors[0]
    assert "slow:1" not in env.ok("images").stdout  # nothing exported
    # the killed node left its context copy; the next session sweeps it (and reaps its container)
    assert _node_contexts(env)
    (env.ctx / "Dockerfile").write_text(DOCKERFILE)
    env.ok("build", "--builder", "armonly", "--platform", "linux/arm64", str(env.ctx))
    assert _node_contexts(env) == []


def test_ssh_killed_mid_build(env: Env) -> None:
    proc = _start_slow_build(env)
    ssh = _pids(["ssh", "polynode"], parent=proc.pid)
    assert len(ssh) == 1
    os.kill(ssh[0], signal.SIGKILL)
    out = _finish(proc)
    errors = [x for x in out.splitlines() if x.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, out
    assert "node pi5 (ssh://polynode): connection lost at step" in errors[0], errors
    assert "slow:1" not in env.ok("images").stdout
    # the node saw its input end: it cancelled the build and removed its temporary state
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (_node_contexts(env) or _pids(["node", "serve", str(env.node)])):
        time.sleep(0.2)
    assert _node_contexts(env) == []
    assert _pids(["node", "serve", str(env.node)]) == []


def test_secret_reaches_the_node_build_but_never_its_disk(env: Env, tmp_path: Path) -> None:
    value = "s3cr3t-" + os.urandom(8).hex()
    (tmp_path / "tok").write_text(value)
    (env.ctx / "Dockerfile").write_text(f"FROM {BASE_NAME}\nRUN --mount=type=secret,id=tok "
                                        "sha256sum /run/secrets/tok | cut -c1-64 > /sum\n")
    env.homelab(name="armonly", local=False)
    env.ok("build", "--builder", "armonly", "--platform", "linux/arm64", "--secret", f"id=tok,src={tmp_path / 'tok'}",
           "-t", "sec:1", "--load", str(env.ctx))
    import hashlib

    got = env.ok("run", "--platform", "linux/arm64", "sec:1", "cat", "/sum").stdout.strip()
    assert got == hashlib.sha256(value.encode()).hexdigest()
    needle = value.encode()
    for dirpath, _dirs, files in os.walk(env.node):
        for name in files:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                assert needle not in path.read_bytes(), f"the secret was written to {path}"


def test_push_from_two_nodes_gives_one_index(env: Env, tmp_path: Path) -> None:
    from tests.registry.refregistry import start_registry

    reg = start_registry(tmp_path / "registry")
    try:
        env.homelab()
        ref = f"{reg.host}/demo/app:1"
        env.ok("build", "--builder", "homelab", "--platform", "linux/amd64,linux/arm64", "-t", ref, "--push",
               str(env.ctx))
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                             capture_output=True, text=True, check=True).stdout
        index = json.loads(raw)
        assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
        for arch, want in (("arm64", "aarch64"), ("amd64", "x86_64")):  # each pulled into a store of its own
            out = env.ok("run", "--platform", f"linux/{arch}", ref, "cat", "/arch", root=tmp_path / arch).stdout
            assert out == f"{want}\n"
    finally:
        reg.stop()


def test_failover_when_a_node_dies_mid_build(env: Env) -> None:
    """The local node emulates arm64: when pi5 dies, with --node-failover its platform is built here instead (with
    a warning)."""
    proc = _start_slow_build(env, "homelab", "linux/amd64,linux/arm64", "--build-arg", "PAUSE=3", "--node-failover")
    servers = _pids(["python", "node", "serve", str(env.node)])
    assert len(servers) == 1
    os.kill(servers[0], signal.SIGKILL)
    out = _finish(proc)
    assert proc.returncode == 0, out
    assert "node pi5 (ssh://polynode): connection lost at step" in out
    assert "building linux/arm64 on node here instead (through emulation)" in out
    assert env.ok("run", "--platform", "linux/arm64", "slow:1", "uname", "-m").stdout == "aarch64\n"
    assert env.ok("run", "--platform", "linux/amd64", "slow:1", "uname", "-m").stdout == "x86_64\n"


def test_bake_spreads_every_target_over_the_nodes(env: Env) -> None:
    env.homelab()
    (env.ctx / "docker-bake.hcl").write_text(
        'group "default" {\n  targets = ["app", "tool"]\n}\n'
        'target "app" {\n  platforms = ["linux/amd64", "linux/arm64"]\n  tags = ["app:1"]\n}\n'
        'target "tool" {\n  platforms = ["linux/arm64"]\n  tags = ["tool:1"]\n  args = { X = "1" }\n}\n')
    proc = subprocess.run(env.argv("bake", "--builder", "homelab", "--progress", "plain", "--load"),
                          env=env.env, capture_output=True, text=True, timeout=600, cwd=env.ctx)
    assert proc.returncode == 0, proc.stderr
    steps = [x for x in proc.stderr.splitlines() if x.startswith("#") and "RUN uname" in x]
    # app's amd64 here; app's and tool's arm64 on pi5 (the second time from the node's cache)
    assert sum("[pi5 linux/arm64" in x for x in steps) == 2 and len(steps) == 3, proc.stderr
    assert env.ok("run", "--platform", "linux/arm64", "tool:1", "cat", "/arch").stdout == "aarch64\n"
    assert sorted(_index(env.client, "app:1")) == ["linux/amd64", "linux/arm64"]
    assert sorted(_index(env.client, "tool:1")) == ["linux/arm64"]


def test_bad_ssh_command_setting(env: Env) -> None:
    env.homelab()
    env.env["POLYARCH_SSH"] = "ssh -o 'unbalanced"
    proc = env.run("build", "--builder", "homelab", "--platform", "linux/arm64", str(env.ctx))
    assert proc.returncode == 2 and proc.stderr.startswith("error: POLYARCH_SSH: No closing quotation"), proc.stderr
