"""The node side of the node protocol: one session over stdio (``polyarch node serve --stdio``, run by ssh).

``NodeServer.serve`` answers ``hello`` (this node's protocol version and platforms), then serves ``build``
requests until ``bye`` or the end of its input: it asks for the context files its store lacks, lays the contexts
out in a private directory (``<root>/contexts/build-PID-…``, swept when a killed node left it), runs the build with
its own store and cache (the ``build`` function the CLI made, given the build's ``RegistryAccess``: the client's
credentials for its push and cache registries, in memory only), forwards every progress event, and sends the
result's blobs the client asks for. With ``push`` repositories, the node first pushes each platform's image to
each of them by digest itself (the ``push`` function the CLI made) and offers only the manifests and configs.
``--ssh`` ids get relay sockets in the private directory (``agentrelay.NodeAgents``). Images the client sends
by content (``images``: a bake's ``target:`` contexts) are named in this node's store for that build alone (a name
they replaced is restored after). One reader thread receives
everything; when the input ends mid-build (ssh killed, client gone) the build is cancelled, so running steps stop,
its blobs are rolled back and the temporary directory is removed. Secret values stay in memory (the RUN runner
mounts them on a tmpfs, as for a local build).
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyarch.cancel import Cancel
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import NotFound, PolyarchError
from polyarch.exporters.assemble import BuildResult
from polyarch.fsutil import private_dir
from polyarch.oci.spec import Descriptor
from polyarch.pipeline.run import BuildRequest
from polyarch.platform import Platform
from polyarch.progress import (
    Event,
    Message,
    Progress,
    VertexCached,
    VertexDone,
    VertexError,
    VertexLog,
    VertexStarted,
)

from . import filesync, wire
from .agentrelay import SSH_MESSAGES, NodeAgents
from .protocol import PROTOCOL_VERSION, Channel, ConnectionLost, ProtocolError

__all__ = ["BuildFunction", "ForwardingRenderer", "NodeServer", "PushFunction", "event_to_json"]

#: runs one build on this node's store: (request, progress, cancel, registry access) → result (no names)
BuildFunction = Callable[[BuildRequest, Progress, Cancel, wire.RegistryAccess], BuildResult]
#: pushes every platform image of a result to each repository (``host/path``) by digest
PushFunction = Callable[[BuildResult, tuple[str, ...], wire.RegistryAccess, Progress], None]

_EOF: dict[str, Any] = {"type": "eof"}


def event_to_json(event: Event) -> dict[str, Any]:
    if isinstance(event, VertexStarted):
        return {"type": "progress", "ev": "start", "id": event.id, "name": event.name}
    if isinstance(event, VertexLog):
        return {"type": "progress", "ev": "log", "id": event.id, "line": event.line, "stream": event.stream}
    if isinstance(event, VertexDone):
        return {"type": "progress", "ev": "done", "id": event.id}
    if isinstance(event, VertexCached):
        return {"type": "progress", "ev": "cached", "id": event.id, "name": event.name}
    if isinstance(event, VertexError):
        return {"type": "progress", "ev": "error", "id": event.id, "error": event.error, "canceled": event.canceled}
    assert isinstance(event, Message)
    return {"type": "progress", "ev": "message", "level": event.level, "text": event.text}


class ForwardingRenderer:
    """A progress renderer that sends every event to the client; a lost client cancels the build."""

    def __init__(self, channel: Channel, cancel: Cancel) -> None:
        self._channel = channel
        self._cancel = cancel

    def emit(self, event: Event) -> None:
        try:
            self._channel.send(event_to_json(event))
        except ConnectionLost:
            self._cancel.cancel()

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class NodePlatforms:
    native: tuple[Platform, ...]
    emulated: tuple[Platform, ...]


class NodeServer:
    """One client session; ``serve`` returns when the client says ``bye`` or its input ends."""

    def __init__(self, channel: Channel, *, store: ContentStore, build: BuildFunction, push: PushFunction,
                 platforms: NodePlatforms, version: str) -> None:
        self._channel = channel
        self._store = store
        self._build = build
        self._push = push
        self._agents: NodeAgents | None = None
        self._platforms = platforms
        self._version = version
        self._inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cancel: Cancel | None = None
        self._lock = threading.Lock()

    # --- receiving (one thread) -------------------------------------------------------------------------------

    def _reader(self) -> None:
        try:
            while True:
                message = self._channel.recv()
                if message["type"] == "blob":
                    self._channel.recv_blob(self._store, message)
                    message = {"type": "stored", "digest": message["digest"]}
                elif message["type"] in SSH_MESSAGES:
                    with self._lock:
                        agents = self._agents
                    if agents is not None:
                        agents.deliver(message)
                    continue
                self._inbox.put(message)
        except (PolyarchError, OSError) as exc:
            with self._lock:
                if self._cancel is not None:
                    self._cancel.cancel()  # the client is gone: stop the build
            self._inbox.put({**_EOF, "why": str(exc)})

    def _next(self, *types: str) -> dict[str, Any]:
        message = self._inbox.get()
        if message["type"] == "eof":
            raise ConnectionLost(message.get("why", "connection lost"))
        return self._channel.expect(message, *types)

    # --- the session ------------------------------------------------------------------------------------------

    def serve(self) -> None:
        threading.Thread(target=self._reader, name="node-reader", daemon=True).start()
        try:
            hello = self._next("hello")
            self._channel.send({"type": "hello", "version": PROTOCOL_VERSION, "polyarch": self._version,
                                "native": [str(p) for p in self._platforms.native],
                                "emulated": [str(p) for p in self._platforms.emulated]})
            if hello.get("version") != PROTOCOL_VERSION:
                return  # the client refuses us with both versions named
            while True:
                message = self._next("build", "bye")
                if message["type"] == "bye":
                    return
                self._serve_build(message)
        except ConnectionLost:
            return

    def _serve_build(self, message: dict[str, Any]) -> None:
        work = self._store.root / "contexts"
        private_dir(work)
        tmp = Path(tempfile.mkdtemp(prefix=f"build-{os.getpid()}-node-", dir=work))
        cancel = Cancel()
        with self._lock:
            self._cancel = cancel
        agents: NodeAgents | None = None
        named: list[tuple[str, Descriptor | None]] = []  # names given for this build, and what they named before
        try:
            contexts = self._receive_contexts(message, tmp, named)
            doc = message.get("request", {})
            access = wire.RegistryAccess.from_json(message.get("registry"))
            push = _repositories(message.get("push"))
            ids = wire.ssh_ids(doc)
            if ids:
                agents = NodeAgents(ids, tmp, self._channel.send)
                with self._lock:
                    self._agents = agents
            req = wire.request_from_json(doc, contexts, agents.sockets if agents else None)
            progress = Progress(ForwardingRenderer(self._channel, cancel))
            result = self._build(req, progress, cancel, access)
            if push:
                self._push(result, push, access, progress)
        except ConnectionLost:
            raise
        except PolyarchError as exc:
            error = {"type": "error", "message": exc.message, "hint": exc.hint or ""}
            if _out_of_disk(exc):
                error["fault"] = "disk"  # the node's fault, not the build's: the client may build elsewhere
            self._channel.send(error)
            return
        finally:
            with self._lock:
                self._cancel = None
                self._agents = None
            if agents is not None:
                agents.close()
            self._unname(named)
            shutil.rmtree(tmp, ignore_errors=True)
        self._send_result(result, pushed=bool(push))

    def _receive_contexts(self, message: dict[str, Any], tmp: Path,
                          named: list[tuple[str, Descriptor | None]]) -> dict[str, Path]:
        raw = message.get("contexts")
        if not isinstance(raw, dict) or "context" not in raw:
            raise ProtocolError("build request without a context")
        trees = {str(name): [filesync.Entry.from_json(e) for e in entries] for name, entries in raw.items()}
        images = _images(message.get("images"))
        need = filesync.missing(self._store, [e for entries in trees.values() for e in entries])
        need += [d for _, _, blobs in images for d, size in blobs.items()
                 if d not in need and self._store.stat(Digest.parse(d)) != size]
        self._channel.send({"type": "need", "digests": need})
        for _ in need:
            self._next("stored")
        self._next("sent")
        self._name(images, named)
        out: dict[str, Path] = {}
        for i, (name, entries) in enumerate(trees.items()):
            dest = tmp / f"c{i}"
            dest.mkdir()
            filesync.materialize(self._store, entries, dest)
            out[name] = dest
        return out

    def _name(self, images: list[tuple[str, Descriptor, dict[str, int]]],
              named: list[tuple[str, Descriptor | None]]) -> None:
        """The images the client sent, named for this build (each blob checked there first)."""
        store = ImageStore(self._store)
        for name, desc, blobs in images:
            for digest, size in blobs.items():
                if self._store.stat(Digest.parse(digest)) != size:
                    raise ProtocolError(f"image {name}: blob {digest} did not arrive")
            try:
                before: Descriptor | None = store.lookup(name)
            except NotFound:
                before = None
            store.set_name(name, desc)
            named.append((name, before))

    def _unname(self, named: list[tuple[str, Descriptor | None]]) -> None:
        store = ImageStore(self._store)
        for name, before in reversed(named):
            try:
                if before is None:
                    store.remove_name(name)
                else:
                    store.set_name(name, before)
            except PolyarchError:
                pass
        named.clear()

    def _send_result(self, result: BuildResult, *, pushed: bool) -> None:
        """The result's images; their blobs on demand (only manifests and configs when the node pushed them)."""
        images: list[dict[str, Any]] = []
        blobs: dict[str, int] = {}
        for img in result.images:
            images.append({"platform": str(img.platform), "manifest": img.descriptor.to_dict(),
                           "config": img.config_descriptor.to_dict(),
                           "layers": [x.to_json() for x in img.layers], "base_layers": img.base_layers})
            layers = () if pushed else tuple(x.descriptor for x in img.layers)
            for desc in (img.config_descriptor, img.descriptor, *layers):
                blobs[str(desc.digest)] = desc.size
        self._channel.send({"type": "result", "images": images, "pushed": pushed,
                            "blobs": [{"digest": d, "size": s} for d, s in blobs.items()]})
        want = self._next("need")
        digests = _digests(want.get("digests", []), blobs)
        self._channel.send_blobs(self._store, digests)
        self._channel.send({"type": "sent"})


def _images(raw: Any) -> list[tuple[str, Descriptor, dict[str, int]]]:
    """The ``images`` of a build message: (name, index descriptor, blob digest → size); the index among them."""
    from polyarch.oci import reference

    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise ProtocolError("bad images: not an object")
    out = []
    try:
        for name, doc in raw.items():
            reference.parse(str(name))
            desc = Descriptor.from_dict(doc["index"])
            blobs = {str(Digest.parse(str(b["digest"]))): int(b["size"]) for b in doc["blobs"]}
            if blobs.get(str(desc.digest)) != desc.size:
                raise ValueError("the image's own descriptor is not among its blobs")
            out.append((str(name), desc, blobs))
    except (KeyError, TypeError, ValueError, PolyarchError) as exc:
        raise ProtocolError(f"bad images: {exc!r}") from None
    return out


def _repositories(raw: Any) -> tuple[str, ...]:
    """The ``push`` part of a build message: the repositories (``host/path``) to push to by digest."""
    if raw is None:
        return ()
    repos = raw.get("repositories") if isinstance(raw, dict) else None
    if not isinstance(repos, list) or not all(isinstance(r, str) and r for r in repos):
        raise ProtocolError("bad push: repositories must be a list of names")
    from polyarch.oci import reference

    try:
        return tuple(str(reference.parse(r)) for r in repos)
    except PolyarchError as exc:
        raise ProtocolError(f"bad push repository: {exc.message}") from None


def _out_of_disk(exc: BaseException) -> bool:
    """Whether ``exc`` comes from this node's disk being full (ENOSPC, EDQUOT anywhere in its chain)."""
    import errno

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _digests(asked: Sequence[Any], offered: dict[str, int]) -> list[Any]:
    out = []
    for d in asked:
        if str(d) not in offered:
            raise ProtocolError(f"client asked for blob {d}, which is not part of the result")
        out.append(Digest.parse(str(d)))
    return out
