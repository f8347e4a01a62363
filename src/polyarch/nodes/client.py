"""The client side of the node protocol: one OpenSSH connection to a node running ``polyarch node serve --stdio``.

``ssh_argv`` is the command line: the caller's ssh command (default ``ssh -o BatchMode=yes -o
ConnectTimeout=10``; the user's ssh config, keys, agent and known_hosts checking apply), ``-T``, ``-p PORT`` when
the endpoint has one, ``--``, ``[user@]host`` and the remote command ``polyarch [FLAGS] node serve --stdio``
(each word quoted for the remote shell). ``NodeClient`` owns the ssh process: ``connect`` exchanges ``hello``
(a node of another protocol version is refused with both versions named), ``build`` sends one request for some
platforms, the context files the node lacks, relays the node's progress (every step named ``[NODE …]``), then
streams the result's blobs the local store lacks into it (digests verified; listed in ``received_blobs``) and
returns the images. With ``push`` repositories the node pushes its images there by digest itself and only the
manifests and configs come back (the client writes the index; no layer reaches its store). The client's
``RegistryAccess`` (credentials of the push and cache registries) goes with every build; the node's ``--ssh``
agent connections are relayed to the request's local agent sockets (``agentrelay.ClientAgents``). A
``docker-image://NAME`` context whose NAME is one of ``local_images`` (a bake's ``target:`` context built in an
earlier round) goes over by content too: the blobs of its manifests for the node's platforms (those it builds and
its native ones), only those the node lacks; the node names the image for that build alone. Any failure
is one ``BuildError`` naming the node and, when the node was running one, the step.
"""

from __future__ import annotations

import collections
import shlex
import subprocess
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import BuildError, PolyarchError
from polyarch.exporters.assemble import PlatformImage
from polyarch.frontend.dockerignore import matcher, parse_dockerignore
from polyarch.oci.spec import Descriptor, Index, Manifest, is_manifest
from polyarch.pipeline.run import BuildRequest
from polyarch.platform import Platform, parse, rank
from polyarch.progress import Progress, VertexHandle
from polyarch.solver.state import Layer

from . import filesync, wire
from .agentrelay import SSH_MESSAGES, ClientAgents
from .model import Node
from .protocol import PROTOCOL_VERSION, Channel, ConnectionLost, ProtocolError, check_version

__all__ = ["DEFAULT_SSH", "NodeClient", "NodeHello", "NodeLost", "ssh_argv"]

DEFAULT_SSH = ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")


def ssh_argv(node: Node, ssh: Sequence[str] = DEFAULT_SSH) -> list[str]:
    ep = node.endpoint
    remote = ["polyarch", *node.flags, "node", "serve", "--stdio"]
    return [*ssh, "-T", *(["-p", str(ep.port)] if ep.port else []), "--", ep.ssh_target,
            " ".join(shlex.quote(w) for w in remote)]


class NodeLost(BuildError):
    """The node cannot go on with a build: its connection ended (ssh or the node process killed, the host gone),
    or it ran out of disk (its error says ``"fault": "disk"``)."""


@dataclass(frozen=True, slots=True)
class NodeHello:
    version: str
    native: tuple[Platform, ...]
    emulated: tuple[Platform, ...]


class _Relay:
    """The node's progress events as steps of the local progress, each name prefixed with the node's."""

    def __init__(self, progress: Progress, node: str, platforms: tuple[Platform, ...]) -> None:
        self._progress = progress
        # a node building one platform names its steps without it: the prefix carries it then
        self._node = node if len(platforms) != 1 else f"{node} {platforms[0]}"
        self._open: dict[int, tuple[AbstractContextManager[VertexHandle], VertexHandle, str]] = {}

    def _name(self, name: str) -> str:
        return f"[{self._node} {name[1:]}" if name.startswith("[") else f"[{self._node}] {name}"

    @property
    def step(self) -> str:
        """The step the node was running last (its name as the node showed it), or ""."""
        return next(reversed(self._open.values()))[2] if self._open else ""

    def event(self, ev: Mapping[str, Any]) -> None:
        kind = ev.get("ev")
        vid = int(ev.get("id", 0))
        if kind == "start":
            name = str(ev.get("name", ""))
            cm = self._progress.vertex(self._name(name))
            self._open[vid] = (cm, cm.__enter__(), name)
        elif kind == "log" and vid in self._open:
            self._open[vid][1].log(str(ev.get("line", "")), str(ev.get("stream", "stdout")))
        elif kind == "done" and vid in self._open:
            self._open.pop(vid)[0].__exit__(None, None, None)
        elif kind == "error" and vid in self._open:
            self._fail(vid, str(ev.get("error", "failed")))
        elif kind == "cached":
            self._progress.cached(self._name(str(ev.get("name", ""))))
        elif kind == "message":
            level = "info" if ev.get("level") == "info" else "warning"
            self._progress.message(f"node {self._node}: {ev.get('text', '')}", level=level)

    def _fail(self, vid: int, error: str) -> None:
        cm, _, _ = self._open.pop(vid)
        exc = BuildError(error)
        cm.__exit__(BuildError, exc, None)  # the progress shows the step failed; the exception is not re-raised

    def close(self, error: str) -> None:
        for vid in list(self._open):
            self._fail(vid, error)


class NodeClient:
    """One node's ssh connection; ``close`` (or ``abort`` from another thread) ends it."""

    def __init__(self, node: Node, ssh: Sequence[str] = DEFAULT_SSH,
                 access: wire.RegistryAccess | None = None, local_images: Mapping[str, Descriptor] | None = None
                 ) -> None:
        self.node = node
        self.access = access or wire.RegistryAccess()  # may be set until the first build (early connections)
        self._local_images = dict(local_images or {})  # name → index of the client's store the node receives
        self._argv = ssh_argv(node, ssh)
        self._proc: subprocess.Popen[bytes] | None = None
        self._drainer: threading.Thread | None = None  # reads ssh's stderr
        self._channel: Channel | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=5)
        self.hello: NodeHello | None = None
        self._phase = ""  # what the current build was doing (for messages)
        self.received_blobs: list[Digest] = []  # result blobs written into the local store (deleted on failure)

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def bytes_sent(self) -> int:
        return self._channel.sent if self._channel else 0

    @property
    def bytes_received(self) -> int:
        return self._channel.received if self._channel else 0

    def _drain(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self._stderr.append(line)

    def _why(self) -> str:
        """What ssh or the node said last on stderr, or the exit status."""
        proc = self._proc
        status = None
        if proc is not None:
            try:
                status = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                status = None
        if self._drainer is not None:  # the last lines ssh wrote before it exited
            self._drainer.join(timeout=1)
        if self._stderr:
            return self._stderr[-1]
        return f"exit status {status}" if status is not None else "connection lost"

    def connect(self) -> NodeHello:
        """Start ssh and exchange ``hello``. :raises BuildError: unreachable, or of another protocol version."""
        try:
            self._proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise BuildError(f"node {self.name} ({self.node.endpoint}): cannot run ssh: {exc.strerror or exc}") \
                from None
        assert self._proc.stdin and self._proc.stdout and self._proc.stderr
        self._drainer = threading.Thread(target=self._drain, args=(self._proc.stderr,), daemon=True)
        self._drainer.start()
        self._channel = Channel(self._proc.stdout, self._proc.stdin)  # type: ignore[arg-type]
        try:
            self._channel.send({"type": "hello", "version": PROTOCOL_VERSION})
            reply = self._channel.expect(self._channel.recv(), "hello")
            check_version(reply.get("version"), peer=f"node {self.name}")
            self.hello = NodeHello(str(reply.get("polyarch", "")),
                                   tuple(parse(str(p)) for p in reply.get("native", [])),
                                   tuple(parse(str(p)) for p in reply.get("emulated", [])))
        except ConnectionLost:
            raise BuildError(f"node {self.name} ({self.node.endpoint}) is unreachable: {self._why()}") from None
        except PolyarchError as exc:
            raise BuildError(f"node {self.name} ({self.node.endpoint}): {exc.message}", hint=exc.hint) from None
        return self.hello

    def build(self, req: BuildRequest, platforms: tuple[Platform, ...], *, store: ContentStore,
              progress: Progress, memo: filesync.DigestMemo | None = None,
              push: tuple[str, ...] = ()) -> list[PlatformImage]:
        """Build ``platforms`` of ``req`` on the node; their blobs end up in ``store`` (with ``push``
        repositories: pushed there by the node, only manifests and configs in ``store``).

        :raises BuildError: the build failed on the node, or the connection was lost (node and step named)."""
        assert self._channel is not None, "connect first"
        channel = self._channel
        relay = _Relay(progress, self.name, platforms)
        agents = ClientAgents(req.ssh, channel.send)
        try:
            return self._build(channel, req, platforms, store, relay, agents, memo, push)
        except ConnectionLost:
            step = relay.step
            relay.close("connection to the node lost")
            where = f" at step {step}" if step else f" while {self._phase}"
            raise NodeLost(f"node {self.name} ({self.node.endpoint}): connection lost{where}: {self._why()}") \
                from None
        except OSError as exc:
            relay.close("failed")
            raise BuildError(f"node {self.name}: {self._phase}: {exc.strerror or exc}") from None
        except BuildError:
            relay.close("failed")
            raise
        except PolyarchError as exc:
            relay.close("failed")
            raise BuildError(f"node {self.name} ({self.node.endpoint}): {self._phase}: {exc.message}",
                             hint=exc.hint) from None
        finally:
            agents.close()

    def _build(self, channel: Channel, req: BuildRequest, platforms: tuple[Platform, ...], store: ContentStore,
               relay: _Relay, agents: ClientAgents, memo: filesync.DigestMemo | None,
               push: tuple[str, ...]) -> list[PlatformImage]:
        self._phase = "sending the build context"
        excluded = matcher(parse_dockerignore("\n".join(req.excludes))) if req.excludes else None
        trees: dict[str, list[filesync.Entry]] = {}
        paths: dict[str, tuple[Path, int]] = {}
        for name, root in wire.local_contexts(req).items():
            entries = filesync.scan(root, excluded if name == "context" else None, memo)
            trees[name] = entries
            for e in entries:
                if e.kind == "file":
                    paths.setdefault(e.digest, (root / e.path, e.size))
        native = self.hello.native if self.hello else ()
        images, image_blobs = self._images(req, ImageStore(store), (*platforms, *native))
        build: dict[str, Any] = {"type": "build", "request": wire.request_to_json(req, platforms),
                                 "contexts": {n: [e.to_json() for e in es] for n, es in trees.items()},
                                 "registry": self.access.to_json()}
        if images:
            build["images"] = images
        if push:
            build["push"] = {"repositories": list(push)}
        channel.send(build)
        while True:  # the node may refuse the request before asking for files
            message = channel.expect(channel.recv(), "need", "error")
            if message["type"] == "error":
                raise self._failed(message, relay)
            break
        for digest in message.get("digests", []):
            if str(digest) in paths:
                path, size = paths[str(digest)]
                with open(path, "rb") as src:
                    channel.send_blob(str(digest), size, src)
            elif str(digest) in image_blobs:
                channel.send_blobs(store, [Digest.parse(str(digest))])
            else:
                raise ProtocolError(f"node asked for {digest}, which is not in the context")
        channel.send({"type": "sent"})
        self._phase = "building"
        while True:
            message = channel.expect(channel.recv(), "progress", "error", "result", *SSH_MESSAGES)
            if message["type"] == "progress":
                relay.event(message)
            elif message["type"] in SSH_MESSAGES:
                agents.handle(message)
            elif message["type"] == "error":
                raise self._failed(message, relay)
            else:
                break
        self._phase = "receiving the result"
        if bool(message.get("pushed")) != bool(push):
            raise ProtocolError("the node's result does not say whether it pushed as asked")
        want = [str(b["digest"]) for b in message.get("blobs", [])
                if store.stat(Digest.parse(str(b["digest"]))) != int(b["size"])]
        channel.send({"type": "need", "digests": want})
        for _ in want:
            header = channel.expect(_recv_late(channel), "blob")
            if str(header.get("digest")) not in want:
                raise ProtocolError(f"node sent blob {header.get('digest')}, which was not asked for")
            self.received_blobs.append(channel.recv_blob(store, header))
        channel.expect(_recv_late(channel), "sent")
        return [_image(doc, ImageStore(store)) for doc in message.get("images", [])]

    def _images(self, req: BuildRequest, images: ImageStore, platforms: Sequence[Platform]
                ) -> tuple[dict[str, Any], set[str]]:
        """The ``images`` of a build message (the request's contexts that are ``local_images``) and their
        blob digests."""
        out: dict[str, Any] = {}
        digests: set[str] = set()
        for value in req.build_contexts.values():
            name = value.removeprefix("docker-image://")
            if not value.startswith("docker-image://") or name not in self._local_images or name in out:
                continue
            desc = self._local_images[name]
            blobs = _image_blobs(images, desc, platforms)
            out[name] = {"index": desc.to_dict(), "blobs": [{"digest": str(b.digest), "size": b.size} for b in blobs]}
            digests |= {str(b.digest) for b in blobs}
        return out, digests

    def _failed(self, message: Mapping[str, Any], relay: _Relay) -> BuildError:
        relay.close("failed")
        kind = NodeLost if message.get("fault") == "disk" else BuildError  # out of disk: the node's fault
        return kind(f"node {self.name}: {message.get('message', 'build failed')}",
                    hint=str(message.get("hint") or "") or None)

    def abort(self) -> None:
        """Kill the ssh process (the node sees its input end and cancels): from any thread."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()

    def close(self) -> None:
        """Say ``bye`` and end the connection: returns when the node has ended its session (its temporary state
        removed; its output ends then), without waiting for its interpreter to exit (the ssh process is reaped in
        the background); a node that does not end its session within 10 s is cut off."""
        timer = threading.Timer(10, self.abort)
        timer.daemon = True
        timer.start()
        try:
            if self._channel is not None:
                try:
                    self._channel.send({"type": "bye"})
                    while True:
                        self._channel.recv()  # (nothing more is expected) until the node's output ends
                except PolyarchError:
                    pass
                self._channel.close()
        finally:
            timer.cancel()
        if self._proc is not None:
            threading.Thread(target=self._proc.wait, name=f"reap-{self.name}", daemon=True).start()


def _image_blobs(images: ImageStore, desc: Descriptor, platforms: Sequence[Platform]) -> list[Descriptor]:
    """``desc`` (an index or a manifest) and, of each manifest for one of ``platforms``, itself, its config and
    its layers."""
    doc = images.read_document(desc).document
    if isinstance(doc, Index):
        manifests = [m for m in doc.manifests if is_manifest(m.media_type) and m.platform is not None
                     and any(rank(m.platform, p) is not None for p in platforms)]
    else:
        manifests = [desc]
    out = {str(desc.digest): desc}
    for m in manifests:
        manifest = images.read_document(m).document
        assert isinstance(manifest, Manifest)
        for blob in (m, manifest.config, *manifest.layers):
            out.setdefault(str(blob.digest), blob)
    return list(out.values())


def _recv_late(channel: Channel) -> dict[str, Any]:
    """The next message after the result, past agent relay messages still in flight from the finished build."""
    while (message := channel.recv())["type"] in SSH_MESSAGES:
        pass
    return message


def _image(doc: Mapping[str, Any], images: ImageStore) -> PlatformImage:
    """One result image, read back from the local store (its blobs arrived, digests verified)."""
    try:
        manifest = Descriptor.from_dict(doc["manifest"])
        layers = tuple(Layer.from_json(x) for x in doc.get("layers", []))
        base_layers = int(doc.get("base_layers", 0))
        platform = parse(str(doc["platform"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"bad result image: {exc!r}") from None
    image = images.image(manifest)
    if [x.descriptor.digest for x in layers] != [d.digest for d in image.manifest.layers]:
        raise ProtocolError(f"result image {manifest.digest}: its layers differ from the manifest's")
    return PlatformImage(platform, manifest, image.config, image.manifest.config, layers, base_layers)
