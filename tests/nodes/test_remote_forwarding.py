# ruff: noqa: F811  (the fixtures env, sshd and auth_registry are imported, then named as arguments)
"""What a build forwards to its ssh nodes (node protocol 2), over a real OpenSSH server on loopback.

``--push``: each node pushes its platforms to the registry by digest itself with the client's credentials of that
registry (forwarded for the build, never on the node's disk) and the client writes the one index without
receiving a layer. ``--cache-to/--cache-from type=registry``: each node exports and imports the cache of its
platforms. ``--ssh default``: a RUN step on the node talks to the client's agent through the protocol channel.
``bake`` ``target:`` contexts when the targets run on nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from tests.cli.test_builder_ci import auth_registry  # noqa: F401  (polyarch registry serve --htpasswd)
from tests.conftest import BASE_NAME
from tests.nodes.test_remote import Env, _blobs, env, sshd  # noqa: F401  (the fixtures, reused)

PASSWORD = "s3cret"  # auth_registry's user ci


def _pair(env: Env, base_root: Path, tmp_path: Path, name: str = "pair") -> Path:
    """Builder ``name``: ssh nodes ``pi5`` (linux/arm64, store ``env.node``) and ``amd`` (linux/amd64, its own
    store), no local node; returns amd's store."""
    amd = tmp_path / "node-amd"
    shutil.copytree(base_root, amd, ignore=shutil.ignore_patterns(".complete", "ingest"))
    (amd / "ingest").mkdir(exist_ok=True)
    # amd first: both run amd64 natively here, and the first of equal nodes gets it
    env.ok("builder", "create", "--name", name, "--node", "amd", "--platform", "linux/amd64", "--node-flags",
           f"--root {amd}", "ssh://polynode")
    env.ok("builder", "create", "--append", "--name", name, "--node", "pi5", "--platform", "linux/arm64",
           "--node-flags", f"--root {env.node}", "ssh://polynode")
    return amd


def _login(env: Env, tmp_path: Path, registry: str) -> None:
    env.env["DOCKER_CONFIG"] = str(tmp_path / "docker")
    proc = subprocess.run(env.argv("login", registry, "-u", "ci", "--password-stdin"), input=PASSWORD, env=env.env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _skopeo(ref: str) -> dict[str, object]:
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", f"ci:{PASSWORD}",
                          f"docker://{ref}"], capture_output=True, text=True, check=True, timeout=60).stdout
    return json.loads(raw)  # type: ignore[no-any-return]


def _nowhere_on_disk(needle: bytes, *roots: Path) -> None:
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    assert needle not in path.read_bytes(), f"{needle!r} was written to {path}"


@pytest.mark.skopeo
def test_nodes_push_by_digest_and_the_client_writes_the_index(env: Env, base_root: Path, tmp_path: Path,
                                                              auth_registry: str) -> None:
    amd = _pair(env, base_root, tmp_path)
    ref = f"{auth_registry}/demo/app:1"
    # without the client's login the nodes have no credential for the registry: one error line naming the node
    env.env["DOCKER_CONFIG"] = str(tmp_path / "nobody")
    refused = env.run("build", "--builder", "pair", "--platform", "linux/arm64", "-t", ref, "--push", str(env.ctx))
    errors = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert refused.returncode == 1 and len(errors) == 1 and errors[0].startswith("error: node pi5: "), \
        refused.stderr
    assert "Traceback" not in refused.stderr
    _login(env, tmp_path, auth_registry)
    before = _blobs(env.client)
    out = env.ok("build", "--builder", "pair", "--platform", "linux/amd64,linux/arm64", "--progress", "plain",
                 "-t", ref, "--push", str(env.ctx)).stderr
    assert f"[pi5 linux/arm64] pushing linux/arm64 to {auth_registry}/demo/app by digest" in out, out
    assert f"[amd linux/amd64] pushing linux/amd64 to {auth_registry}/demo/app by digest" in out, out
    index = _skopeo(ref)
    manifests = index["manifests"]
    assert isinstance(manifests, list)
    assert [m["platform"]["architecture"] for m in manifests] == ["amd64", "arm64"]  # the order asked for
    layers: set[str] = set()
    for m in manifests:
        doc = _skopeo(f"{auth_registry}/demo/app@{m['digest']}")
        layers |= {str(x["digest"]).split(":")[1] for x in doc["layers"]}  # type: ignore[union-attr]
        assert str(m["digest"]).split(":")[1] in _blobs(env.client)  # the manifest came to the client
    new = _blobs(env.client) - before
    assert layers and not layers & new, "the client's store received layers"
    assert not layers - _blobs(env.node) - _blobs(amd)  # they were made on the nodes
    for args in (("du", "--verbose"), ("images",), ("prune", "--all")):  # a store of layerless manifests is fine
        assert "Traceback" not in env.ok(*args).stderr
    # the credential was forwarded for the build only: nowhere on the nodes' disks
    _nowhere_on_disk(PASSWORD.encode(), env.node, amd)
    arm = env.ok("run", "--platform", "linux/arm64", ref, "cat", "/arch", root=tmp_path / "puller").stdout
    assert arm == "aarch64\n"
    # bake --push leaves it to the nodes as well
    (env.ctx / "docker-bake.hcl").write_text(
        f'target "default" {{\n  platforms = ["linux/amd64", "linux/arm64"]\n  tags = ["{auth_registry}/demo/baked:1"]\n}}\n')
    baked = subprocess.run(env.argv("bake", "--builder", "pair", "--progress", "plain", "--push"), env=env.env,
                           capture_output=True, text=True, timeout=600, cwd=env.ctx)
    assert baked.returncode == 0, baked.stderr
    assert f"[pi5 linux/arm64] pushing linux/arm64 to {auth_registry}/demo/baked by digest" in baked.stderr
    assert len(_skopeo(f"{auth_registry}/demo/baked:1")["manifests"]) == 2  # type: ignore[arg-type]
    assert not layers & (_blobs(env.client) - before)


def test_cache_goes_to_the_registry_and_a_fresh_node_reuses_it(env: Env, base_root: Path, tmp_path: Path,
                                                               auth_registry: str) -> None:
    _login(env, tmp_path, auth_registry)
    env.homelab(name="armonly", local=False)
    cache = f"{auth_registry}/demo/cache:arm"
    first = env.ok("build", "--builder", "armonly", "--platform", "linux/arm64", "--progress", "plain",
                   "--cache-to", f"type=registry,ref={cache},mode=max", str(env.ctx)).stderr
    assert "CACHED" not in first.split("RUN uname")[1].split("\n#")[0]
    assert _skopeo(cache)["artifactType"] == "application/vnd.polyarch.buildcache.v1"
    # a fresh node store (the base image only): the RUN step comes from the registry's cache
    shutil.rmtree(env.node)
    shutil.copytree(base_root, env.node, ignore=shutil.ignore_patterns(".complete", "ingest"))
    (env.node / "ingest").mkdir(exist_ok=True)
    again = env.ok("build", "--builder", "armonly", "--platform", "linux/arm64", "--progress", "plain",
                   "--cache-from", f"type=registry,ref={cache}", "-t", "c:1", "--load", str(env.ctx)).stderr
    run = again.split("[pi5 linux/arm64 stage-0 3/3] RUN uname -m > /arch && cat /a.txt\n")[1].split("\n")[0]
    assert run.endswith("CACHED"), again
    assert env.ok("run", "--platform", "linux/arm64", "c:1", "cat", "/arch").stdout == "aarch64\n"
    _nowhere_on_disk(PASSWORD.encode(), env.node)
    # platforms of one build on two nodes, one --cache-to reference: said, since the last export wins
    env.homelab()
    spread = env.ok("build", "--builder", "homelab", "--platform", "linux/amd64,linux/arm64", "--cache-to",
                    f"type=registry,ref={cache}", str(env.ctx)).stderr
    assert f"--cache-to type=registry:{cache}: nodes here, pi5 each exported the cache of their own platforms" \
        in spread, spread


def test_a_local_cache_directory_is_refused_before_any_work(env: Env, tmp_path: Path) -> None:
    env.homelab()
    before = _blobs(env.node)
    proc = env.run("build", "--builder", "homelab", "--platform", "linux/arm64", "--cache-to",
                   f"type=local,dest={tmp_path / 'c'}", str(env.ctx))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0].startswith(f"error: --cache-from/--cache-to type=local:{tmp_path / 'c'} is "
                                                  "a directory of this machine, which builder node pi5"), proc.stderr
    assert _blobs(env.node) == before


AGENT_QUERY = """package main

import (
\t"encoding/binary"
\t"fmt"
\t"io"
\t"net"
\t"os"
)

// asks the agent at $SSH_AUTH_SOCK for its identities (REQUEST_IDENTITIES = 11) and prints the answer
func main() {
\tc, err := net.Dial("unix", os.Getenv("SSH_AUTH_SOCK"))
\tif err != nil {
\t\tfmt.Println("dial:", err)
\t\tos.Exit(1)
\t}
\tc.Write([]byte{0, 0, 0, 1, 11})
\tvar n uint32
\tif err := binary.Read(c, binary.BigEndian, &n); err != nil || n == 0 || n > 1<<20 {
\t\tfmt.Println("no answer:", err)
\t\tos.Exit(1)
\t}
\tbody := make([]byte, n)
\tio.ReadFull(c, body)
\tfmt.Printf("type %d %q\\n", body[0], body)
}
"""


def _agent_query(ctx: Path) -> None:
    """A static arm64 agent client (busybox has no ssh-add and cannot open a unix socket) into ``ctx``."""
    go = shutil.which("go")
    assert go is not None, "the ssh relay test needs the Go toolchain on the host (apt-get install golang)"
    src = ctx.parent / "agentq.go"
    src.write_text(AGENT_QUERY)
    subprocess.run([go, "build", "-o", str(ctx / "agentq"), str(src)], check=True, capture_output=True,
                   timeout=600, cwd=ctx.parent, env={**os.environ, "CGO_ENABLED": "0", "GOARCH": "arm64",
                                                     "GO111MODULE": "off"})


def test_ssh_agent_is_relayed_to_the_node(env: Env, tmp_path: Path) -> None:
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    sock = agent_dir / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        key = tmp_path / "relaykey"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "relay-test-key", "-f", str(key)],
                       check=True)
        _agent_query(env.ctx)
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.05)
        subprocess.run(["ssh-add", "-q", str(key)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)}, check=True,
                       capture_output=True)
        (env.ctx / "Dockerfile").write_text(f"FROM {BASE_NAME}\nCOPY agentq /agentq\n"
                                            "RUN --mount=type=ssh /agentq > /answer\n")
        env.homelab(name="armonly", local=False)
        env.env["SSH_AUTH_SOCK"] = str(sock)
        env.ok("build", "--builder", "armonly", "--platform", "linux/arm64", "--ssh", "default", "-t", "ssh:1",
               "--load", str(env.ctx))
        answer = env.ok("run", "--platform", "linux/arm64", "ssh:1", "cat", "/answer").stdout
        assert answer.startswith("type 12 ") and "relay-test-key" in answer, answer  # IDENTITIES_ANSWER
        assert list(env.node.rglob("*.sock")) == []  # the relay socket went with the build
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_bake_target_contexts_on_nodes(env: Env) -> None:
    """``app`` builds FROM the ``target:base`` context; its arm64 part runs on pi5, which receives base's arm64
    image by content (never from a registry) and names it for that build alone."""
    env.homelab()
    (env.ctx / "docker-bake.hcl").write_text(
        'group "default" {\n  targets = ["app"]\n}\n'
        'target "base" {\n  platforms = ["linux/amd64", "linux/arm64"]\n'
        f'  dockerfile-inline = "FROM {BASE_NAME}\\nRUN echo base-$(uname -m) > /base\\n"\n}}\n'
        'target "app" {\n  platforms = ["linux/amd64", "linux/arm64"]\n  contexts = { base = "target:base" }\n'
        '  dockerfile-inline = "FROM base\\nRUN cat /base > /seen\\n"\n  tags = ["app:1"]\n}\n')
    proc = subprocess.run(env.argv("bake", "--builder", "homelab", "--progress", "plain", "--load"),
                          env=env.env, capture_output=True, text=True, timeout=600, cwd=env.ctx)
    assert proc.returncode == 0, proc.stderr
    steps = [x for x in proc.stderr.splitlines() if x.startswith("#") and "RUN cat /base" in x]
    assert any("[pi5 linux/arm64" in x for x in steps) and any("[pi5" not in x for x in steps), proc.stderr
    assert env.ok("run", "--platform", "linux/arm64", "app:1", "cat", "/seen").stdout == "base-aarch64\n"
    assert env.ok("run", "--platform", "linux/amd64", "app:1", "cat", "/seen").stdout == "base-x86_64\n"
    names = [m.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
             for m in json.loads((env.node / "index.json").read_text())["manifests"]]
    assert not [n for n in names if "polyarch.bake" in n], names  # named on the node for the build alone
