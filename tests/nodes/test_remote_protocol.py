"""The node protocol's pieces without ssh: framing and version check, blobs verified, the context by content
(only missing files asked for, entries that would leave the directory refused), the request round trip and the
scheduler's choices."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, UsageError
from polyarch.exporters.cache import parse_cache_spec
from polyarch.nodes import filesync, wire
from polyarch.nodes.agentrelay import ClientAgents, NodeAgents
from polyarch.nodes.protocol import PROTOCOL_VERSION, Channel, ConnectionLost, ProtocolError, check_version
from polyarch.nodes.schedule import Assignment, Candidate, schedule
from polyarch.pipeline.run import BuildRequest
from polyarch.platform import parse


def _pair() -> tuple[Channel, io.BytesIO]:
    out = io.BytesIO()
    return Channel(io.BytesIO(), out), out


def _reader(data: bytes) -> Channel:
    return Channel(io.BytesIO(data), io.BytesIO())


def test_messages_and_blobs_round_trip(tmp_path: Path) -> None:
    src = ContentStore(tmp_path / "a")
    dst = ContentStore(tmp_path / "b")
    big = os.urandom(3 * (1 << 20) + 5)  # several B frames
    digest, _ = src.write(big)
    sender, wire_bytes = _pair()
    sender.send({"type": "hello", "version": PROTOCOL_VERSION})
    sender.send_blobs(src, [digest])
    receiver = _reader(wire_bytes.getvalue())
    assert receiver.recv() == {"type": "hello", "version": PROTOCOL_VERSION}
    header = receiver.expect(receiver.recv(), "blob")
    assert receiver.recv_blob(dst, header) == digest
    assert dst.read(digest, limit=1 << 30) == big
    assert receiver.received == sender.sent
    with pytest.raises(ConnectionLost):
        receiver.recv()


def test_a_blob_that_does_not_match_its_digest_is_not_stored(tmp_path: Path) -> None:
    dst = ContentStore(tmp_path / "b")
    sender, wire_bytes = _pair()
    fake = Digest.of(b"something else")
    sender.send_blob(str(fake), 5, io.BytesIO(b"hello"))
    receiver = _reader(wire_bytes.getvalue())
    with pytest.raises(DigestMismatch, match="hashes to"):
        receiver.recv_blob(dst, receiver.recv())
    assert not dst.has(fake) and list(dst.list()) == []


@pytest.mark.parametrize("data", [
    struct.pack(">cI", b"X", 2) + b"{}",  # unknown frame type
    struct.pack(">cI", b"J", 2) + b"[]",  # not an object
    struct.pack(">cI", b"J", 4) + b"{\"a\"",  # not JSON
    struct.pack(">cI", b"B", 1) + b"x",  # blob bytes where a message is due
    struct.pack(">cI", b"J", 0xFFFFFFFF),  # absurd length
])
def test_bad_frames_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        _reader(data).recv()


def test_version_check_names_both() -> None:
    check_version(PROTOCOL_VERSION, peer="node x")
    with pytest.raises(ProtocolError, match=f"node pi5 speaks node protocol 7, this polyarch speaks {PROTOCOL_VERSION}"):
        check_version(7, peer="node pi5")


def test_context_goes_by_content(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "a.txt").write_text("same")
    (ctx / "sub" / "b.txt").write_text("same")
    (ctx / "big.bin").write_bytes(b"x" * 10000)
    (ctx / "skip.log").write_text("left out")
    os.chmod(ctx / "a.txt", 0o755)
    os.symlink("a.txt", ctx / "link")
    entries = filesync.scan(ctx, lambda p: p.endswith(".log"))
    assert [e.path for e in entries] == ["a.txt", "big.bin", "link", "sub", "sub/b.txt"]
    node = ContentStore(tmp_path / "node")
    # two files of the same content are asked for once; after they are stored nothing is missing
    need = filesync.missing(node, entries)
    assert len(need) == 2
    for e in entries:
        if e.kind == "file" and e.digest in need:
            node.write((ctx / e.path).read_bytes())
    assert filesync.missing(node, entries) == []
    out = tmp_path / "out"
    out.mkdir()
    filesync.materialize(node, [filesync.Entry.from_json(e.to_json()) for e in entries], out)
    assert (out / "sub" / "b.txt").read_text() == "same" and os.readlink(out / "link") == "a.txt"
    assert os.stat(out / "a.txt").st_mode & 0o777 == 0o755
    assert os.stat(out / "big.bin").st_mtime_ns == os.stat(ctx / "big.bin").st_mtime_ns
    assert not (out / "skip.log").exists()


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "", ".", "a/./b"])
def test_entries_that_leave_the_context_are_refused(path: str) -> None:
    with pytest.raises(ProtocolError):
        filesync.Entry.from_json({"path": path, "kind": "dir"})


def test_entries_under_a_symlink_are_refused(tmp_path: Path) -> None:
    node = ContentStore(tmp_path / "node")
    digest, _ = node.write(b"pwned")
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    entries = [filesync.Entry("d", "symlink", target=str(outside)),
               filesync.Entry("d/f", "file", size=5, digest=str(digest))]
    with pytest.raises(ProtocolError, match="leaves the context"):
        filesync.materialize(node, entries, out)
    assert list(outside.iterdir()) == []


def test_request_round_trip_keeps_secrets_and_replaces_contexts(tmp_path: Path) -> None:
    req = BuildRequest("FROM x\n", "Dockerfile", tmp_path, (parse("linux/amd64"),), "t", {"A": "1"}, {"l": "v"},
                       ("*.log",), {"img": "docker-image://alpine", "extra": str(tmp_path)}, True, 5,
                       {"tok": b"\x00secret"}, annotations=("index:a=b",))
    assert set(wire.local_contexts(req)) == {"context", "extra"}
    doc = wire.request_to_json(req, (parse("linux/arm64"),))
    back = wire.request_from_json(doc, {"context": Path("/n/c0"), "extra": Path("/n/c1")})
    assert back.platforms == (parse("linux/arm64"),) and back.secrets == {"tok": b"\x00secret"}
    assert back.build_contexts == {"img": "docker-image://alpine", "extra": "/n/c1"}
    assert (back.target, back.build_args, back.no_cache, back.epoch, back.excludes) == ("t", {"A": "1"}, True, 5,
                                                                                         ("*.log",))
    wire.check_forwardable(BuildRequest("", ssh={"default": "/s"}), "pi5")  # relayed (agentrelay)
    with pytest.raises(UsageError, match="type=local:/c is a directory of this machine, which builder node pi5"):
        wire.check_forwardable(BuildRequest("", cache_to=(parse_cache_spec("type=local,dest=/c", export=True),)),
                               "pi5")


def test_cache_ssh_and_registry_access_round_trip(tmp_path: Path) -> None:
    req = BuildRequest("FROM x\n", context=tmp_path, ssh={"default": "/client/agent.sock", "git": "/g.sock"},
                       cache_from=(parse_cache_spec("reg.example/c:1", export=False),),
                       cache_to=(parse_cache_spec("type=registry,ref=reg.example/c:1,mode=max", export=True),))
    doc = wire.request_to_json(req, (parse("linux/arm64"),))
    assert doc["ssh"] == ["default", "git"]  # the ids only: never a client path
    assert wire.ssh_ids(doc) == ("default", "git")
    back = wire.request_from_json(doc, {"context": tmp_path}, {"default": "/n/ssh-0.sock", "git": "/n/ssh-1.sock"})
    assert back.cache_from == req.cache_from and back.cache_to == req.cache_to
    assert back.ssh == {"default": "/n/ssh-0.sock", "git": "/n/ssh-1.sock"}
    assert wire.registry_hosts(req) == {"reg.example"}
    # a client may not make a node read or write its own directories
    bad = {**doc, "cache_to": [{"type": "local", "ref": "", "attrs": {"dest": "/etc"}}]}
    with pytest.raises(ProtocolError, match="not a registry reference"):
        wire.request_from_json(bad, {"context": tmp_path})
    with pytest.raises(ProtocolError, match="ssh ids"):
        wire.ssh_ids({"ssh": ["../x"]})
    access = wire.RegistryAccess({"reg.example": ("ci", "pw")}, ("reg.example",))
    assert "pw" not in repr(access)
    assert wire.RegistryAccess.from_json(access.to_json()) == access
    with pytest.raises(ProtocolError):
        wire.RegistryAccess.from_json({"auths": {"h": {"username": "u"}}})


def test_agent_relay_reaches_the_clients_agent(tmp_path: Path) -> None:
    """A real ssh-agent behind ClientAgents; ``ssh-add -l`` on the node's relay socket lists its key."""
    import subprocess
    import threading
    import time

    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "relay-key", "-f",
                        str(tmp_path / "k")], check=True)
        while not sock.exists():
            time.sleep(0.02)
        subprocess.run(["ssh-add", "-q", str(tmp_path / "k")], env={"SSH_AUTH_SOCK": str(sock)}, check=True,
                       capture_output=True)
        a_r, b_w = os.pipe()
        b_r, a_w = os.pipe()
        node_side = Channel(os.fdopen(a_r, "rb", buffering=0), os.fdopen(a_w, "wb"))
        client_side = Channel(os.fdopen(b_r, "rb", buffering=0), os.fdopen(b_w, "wb"))
        relay_dir = tmp_path / ("deep-" * 20) / "build"  # too long for a socket address: bound via /proc/self/fd
        relay_dir.mkdir(parents=True)
        node = NodeAgents(("default",), relay_dir, node_side.send)
        client = ClientAgents({"default": str(sock)}, client_side.send)

        def pump(channel: Channel, handle: Callable[[dict[str, object]], None]) -> None:
            try:
                while True:
                    handle(channel.recv())
            except ConnectionLost:
                pass

        threading.Thread(target=pump, args=(client_side, client.handle), daemon=True).start()
        threading.Thread(target=pump, args=(node_side, node.deliver), daemon=True).start()
        short = tmp_path / "s"  # what a RUN step sees is a bind mount at a short path; here a symlink
        short.symlink_to(node.sockets["default"])
        listed = subprocess.run(["ssh-add", "-l"], env={"SSH_AUTH_SOCK": str(short)},
                                capture_output=True, text=True, timeout=30)
        assert listed.returncode == 0 and "relay-key" in listed.stdout, listed
        assert Path(node.sockets["default"]).parent == relay_dir and Path(node.sockets["default"]).is_socket()
        assert os.stat(node.sockets["default"]).st_mode & 0o777 == 0o600
        with pytest.raises(ProtocolError, match="may not open"):
            node.deliver({"type": "ssh-open", "id": "default", "conn": 9})
        node.close()
        client.close()
        assert list(relay_dir.iterdir()) == []  # the socket went with the relay
        node_side.close()
        client_side.close()
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_schedule_native_then_emulated_then_error() -> None:
    amd, arm, v7, s390 = (parse(p) for p in ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x"))
    here = Candidate("here", (amd,), (arm, v7))
    pi = Candidate("pi5", (arm,))
    pi2 = Candidate("pi4", (arm,))
    assert schedule([amd, arm], [here, pi]) == [Assignment(amd, "here"), Assignment(arm, "pi5")]
    assert schedule([v7], [here, pi]) == [Assignment(v7, "here", emulated=True)]
    # equal native nodes share the work
    assert [a.node for a in schedule([arm, parse("linux/arm64/v8")], [pi, pi2])] == ["pi5", "pi4"]
    with pytest.raises(UsageError, match="no node of builder b can run linux/s390x"):
        schedule([amd, s390], [here, pi], builder="b")


@pytest.mark.parametrize(("field", "value", "match"), [
    ("push", {"repositories": "reg/app"}, "bad push"),
    ("push", {"repositories": ["UPPER/Case::"]}, "bad push repository"),
    ("images", {"polyarch.bake/x:1": {"index": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + "0" * 64, "size": 2},
                                      "blobs": []}}, "not among its blobs"),
    ("images", {"../x": {"index": {}, "blobs": []}}, "bad images"),
    ("images", ["a"], "bad images"),
])
def test_a_node_refuses_bad_build_parts(field: str, value: object, match: str) -> None:
    from polyarch.nodes import server

    parse = server._repositories if field == "push" else server._images
    with pytest.raises(ProtocolError, match=match):
        parse(value)


def test_peers_of_the_previous_version_are_refused(tmp_path: Path) -> None:
    """A node of protocol 1 is refused by the client in one line naming both; a client of protocol 1 gets this
    node's hello and the session ends."""
    import sys

    from polyarch.errors import BuildError
    from polyarch.nodes.client import NodeClient
    from polyarch.nodes.model import Node, parse_endpoint
    from polyarch.nodes.server import NodePlatforms, NodeServer

    old = tmp_path / "old_node.py"  # stands for ssh + an old node: the client runs it as its ssh command
    old.write_text("import json, struct, sys\n"
                   "r, w = sys.stdin.buffer, sys.stdout.buffer\n"
                   "kind, n = struct.unpack('>cI', r.read(5)); r.read(n)\n"
                   "msg = json.dumps({'type': 'hello', 'version': 1, 'native': ['linux/arm64']}).encode()\n"
                   "w.write(struct.pack('>cI', b'J', len(msg)) + msg); w.flush()\n")
    client = NodeClient(Node("pi5", parse_endpoint("ssh://pi5")), (sys.executable, str(old)))
    with pytest.raises(BuildError, match=f"^node pi5 \\(ssh://pi5\\): node pi5 speaks node protocol 1, this "
                                         f"polyarch speaks {PROTOCOL_VERSION}$"):
        client.connect()
    client.abort()
    client.close()

    sender, hello_v1 = _pair()
    sender.send({"type": "hello", "version": 1})
    out = io.BytesIO()
    NodeServer(Channel(io.BytesIO(hello_v1.getvalue()), out), store=ContentStore(tmp_path / "node"),
               build=lambda *a: None, push=lambda *a: None,  # type: ignore[arg-type,return-value]
               platforms=NodePlatforms((parse("linux/arm64"),), ()), version="x").serve()
    answer = _reader(out.getvalue())
    assert answer.recv()["version"] == PROTOCOL_VERSION
    with pytest.raises(ConnectionLost):
        answer.recv()  # nothing else: the session ended


def test_when_the_nodes_push_themselves() -> None:
    from polyarch.cli.node import node_push
    from polyarch.exporters.spec import OutputSpec, parse_output

    push = OutputSpec("registry")
    tags = ["reg.example:5000/app:1", "other.example/team/app:2", "reg.example:5000/app:3"]
    assert node_push([push], tags, layers_needed=False) == ("reg.example:5000/app", "other.example/team/app")
    assert node_push([parse_output("type=registry,name=r.example/x:1,push-by-digest=true")], [],
                     layers_needed=False) == ("r.example/x",)
    # the layers are needed here: --load, a file output, a conversion, attestations or --verify, a TLS exception
    for specs in ([push, OutputSpec("image")], [push, parse_output("type=oci,dest=/tmp/x.tar")],
                  [parse_output("type=registry,compression=zstd")],
                  [parse_output("type=registry,registry.insecure=true")], []):
        assert node_push(specs, tags, layers_needed=False) == (), specs
    assert node_push([push], tags, layers_needed=True) == ()
