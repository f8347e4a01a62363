"""Builds spread over a builder's nodes: connect, schedule, run every node's platforms at once, one index each.

``build_on_nodes`` (one request, or every target of a bake in one go) connects to every ssh node first, in
parallel (``NodeConnections``, which the caller may have started earlier so that its own start-up overlaps the
nodes'; ``hello`` tells what each runs), schedules each platform (``schedule``: native, else emulated with a
warning, else an error before any work), then runs the local node's share here (``local_build``: the usual
pipeline, all of its requests in one solve) and each ssh node's share over its connection (request after
request on one connection; the node's cache makes steps it already ran cached; ``BUILDPLATFORM`` there is the
node's first declared platform, else the node's own host), the nodes in parallel threads.

A node fault — a node unreachable at the start (its declared platforms are scheduled to it, then moved), its
connection lost mid-build (ssh or the node killed), the node out of disk (``NodeLost``) — moves the node's
platforms to the nodes left as ``node_failover`` allows (``schedule.failover``: by default only where they run
as well as planned; ``any`` with ``--node-failover``; ``off`` with ``--no-node-failover``), with a warning; when
they cannot move, the node's error is the build's (its hint says what ``--node-failover`` would do). On that or
any other failure the rest is cancelled (a node sees its connection end and stops) and the failure is raised as
the one ``BuildError`` naming the node and step; the blobs received from nodes are deleted again and nothing is
exported (a local part that had finished leaves its images unnamed in the store, as cache for gc to take). On
success the per-platform images (local and remote) of each request are put into one index, in the order its
platforms were asked for.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from polyarch.cancel import Cancel, Cancelled
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.errors import BuildError, PolyarchError
from polyarch.exporters.assemble import Annotations, BuildResult, PlatformImage
from polyarch.pipeline.run import BuildRequest
from polyarch.platform import Platform
from polyarch.progress import Progress

from . import filesync, wire
from .client import NodeClient, NodeLost
from .model import Builder, Node, NodeStatus
from .schedule import Assignment, Candidate, Failover, failover, schedule

__all__ = ["NodeConnections", "NodeReport", "build_on_nodes"]

#: builds the local node's share: the requests (platforms replaced) in one solve, their images in the store
LocalBuild = Callable[[list[BuildRequest], Cancel], list[BuildResult]]
Item = tuple[int, tuple[Platform, ...]]  # (request index, platforms of it) given to one node


@dataclass(frozen=True, slots=True)
class NodeReport:
    """What ran where (per request), and the bytes each ssh connection carried (sent = context and request)."""

    assignments: tuple[tuple[Assignment, ...], ...]
    sent: dict[str, int]
    received: dict[str, int]


class NodeConnections:
    """Connections to ssh nodes, made in the background from the moment this is created (one thread per node runs
    ``NodeClient.connect``), so that what the caller does meanwhile overlaps the nodes' start-up. ``wait`` gives
    the nodes that answered and the errors of those that did not; ``close`` ends every connection (any thread)."""

    def __init__(self, nodes: Sequence[Node], connect: Callable[[Node], NodeClient]) -> None:
        self.clients = {n.name: connect(n) for n in nodes}
        self._errors: dict[str, BuildError] = {}
        self._closed = False
        self._threads = [threading.Thread(target=self._one, args=(c,), name=f"node-{c.name}", daemon=True)
                         for c in self.clients.values()]
        for t in self._threads:
            t.start()

    def _one(self, client: NodeClient) -> None:
        try:
            if self._closed:
                raise BuildError(f"node {client.name}: not reached (the command ended first)")
            client.connect()
        except BuildError as exc:
            client.abort()
            client.close()
            self._errors[client.name] = exc

    def wait(self) -> tuple[dict[str, NodeClient], dict[str, BuildError]]:
        for t in self._threads:
            t.join()
        return {n: c for n, c in self.clients.items() if n not in self._errors}, dict(self._errors)

    def close(self) -> None:
        """Say ``bye`` to every node that answered; those still being reached are cut off (an error before the
        build must not wait for a slow or unreachable node); once."""
        if self._closed:
            return
        self._closed = True
        for thread, client in zip(self._threads, self.clients.values(), strict=True):
            if thread.is_alive():
                client.abort()
        clients, _ = self.wait()
        closing = [threading.Thread(target=c.close, daemon=True) for c in clients.values()]  # all at once
        for t in closing:
            t.start()
        for t in closing:
            t.join()


def _candidates(builder: Builder, local: NodeStatus, clients: dict[str, NodeClient],
                down: Sequence[str] = ()) -> list[Candidate]:
    """Every reachable node with what it runs, and the ``down`` ones (unreachable) with their declared platforms."""
    out: list[Candidate] = []
    for node in builder.nodes:
        if node.endpoint.is_local:
            native, emulated = (*node.platforms, *local.native), local.emulated
        elif node.name in clients and clients[node.name].hello is not None:
            hello = clients[node.name].hello
            assert hello is not None
            native, emulated = (*node.platforms, *hello.native), hello.emulated
        elif node.name in down:
            native, emulated = node.platforms, ()
        else:
            continue
        out.append(Candidate(node.name, tuple(dict.fromkeys(native)), tuple(dict.fromkeys(emulated))))
    return out


def build_on_nodes(builder: Builder, reqs: Sequence[BuildRequest], *, local: NodeStatus, local_build: LocalBuild,
                   connect: Callable[[Node], NodeClient] | NodeConnections, store: ContentStore, progress: Progress,
                   cancel: Cancel, default_platform: Platform, pushes: Sequence[tuple[str, ...]] = (),
                   node_failover: Failover = "native") -> tuple[list[BuildResult], NodeReport]:
    """The builds of ``reqs`` (one, or a bake's targets) over ``builder``'s nodes; one result per request.

    ``pushes`` (per request, when given): the repositories ssh nodes push their platforms to by digest.

    :raises BuildError: naming the node (and step); :raises UsageError: a platform no node runs, or a request
    nodes cannot take (before any work); :raises Cancelled: ``cancel`` was triggered."""
    wanted = [req.platforms or (default_platform,) for req in reqs]
    for req in reqs:
        for node in builder.remote_nodes:
            wire.check_forwardable(req, node.name)
    conns = connect if isinstance(connect, NodeConnections) else NodeConnections(builder.remote_nodes, connect)
    clients, unreachable = conns.wait()
    try:
        candidates = _candidates(builder, local, clients)
        try:
            plans = [schedule(w, _candidates(builder, local, clients, tuple(unreachable)), builder=builder.name)
                     for w in wanted]
        except PolyarchError:
            if unreachable:
                raise next(iter(unreachable.values())) from None
            raise
        plans = [_without(plan, unreachable, candidates, node_failover, builder.name) for plan in plans]
        for name, exc in unreachable.items():
            progress.message(f"{exc.message}; building without node {name}")
        by_node: dict[str, list[Item]] = {}
        for i, plan in enumerate(plans):
            shares: dict[str, list[Platform]] = {}
            for a in plan:
                if a.emulated:
                    progress.message(f"node {a.node} builds {a.platform} through emulation (slower)")
                shares.setdefault(a.node, []).append(a.platform)
            for node_name, platforms in shares.items():
                by_node.setdefault(node_name, []).append((i, tuple(platforms)))
        emulated = {(a.node, str(a.platform)) for plan in plans for a in plan if a.emulated}
        images = _run(builder, list(reqs), by_node, clients, candidates, local_build, store, progress, cancel,
                      pushes, _Failover(node_failover, emulated))
    finally:
        conns.close()
    for name, client in clients.items():
        progress.message(f"node {name}: {client.bytes_sent} bytes sent, {client.bytes_received} received over ssh",
                         level="info")
    results: list[BuildResult] = []
    for i, req in enumerate(reqs):
        order = {str(p): n for n, p in enumerate(wanted[i])}
        ordered = sorted(images.get(i, []), key=lambda img: order.get(str(img.platform), len(order)))
        notes = Annotations.parse(req.annotations)
        index = ImageStore(store).put_index([img.descriptor for img in ordered],
                                            annotations=dict(notes.index) or None)
        results.append(BuildResult(index, tuple(ordered)))
    report = NodeReport(tuple(tuple(p) for p in plans), {n: c.bytes_sent for n, c in clients.items()},
                        {n: c.bytes_received for n, c in clients.items()})
    return results, report


@dataclass(slots=True)
class _Failover:
    """What a node fault mid-build does (``node_failover``), and which (node, platform) run emulated."""

    mode: Failover
    emulated: set[tuple[str, str]]


def _stuck(exc: BuildError, lost: list[Assignment], left: list[Candidate], mode: Failover, builder: str
           ) -> BuildError:
    """``exc`` (the node's fault) as the build's error; its hint says what ``--node-failover`` would do."""
    if mode == "any":
        return exc
    try:
        alt = failover(lost, left, "any", builder=builder)
    except PolyarchError:
        return exc
    where = "; ".join(f"{a.platform} on node {a.node}" + (" (emulated)" if a.emulated else "") for a in alt)
    return type(exc)(exc.message, hint=f"with --node-failover the build goes on: {where}")


def _without(plan: list[Assignment], unreachable: dict[str, BuildError], left: list[Candidate], mode: Failover,
             builder: str) -> list[Assignment]:
    """``plan`` with the platforms given to unreachable nodes moved to the nodes left (``schedule.failover``).

    :raises BuildError: the unreachable node's error, when they cannot move."""
    for name, exc in unreachable.items():
        mine = [a for a in plan if a.node == name]
        if not mine:
            continue
        try:
            moved = iter(failover(mine, left, mode, builder=builder))
        except PolyarchError:
            raise _stuck(exc, mine, left, mode, builder) from None
        plan = [next(moved) if a.node == name else a for a in plan]
    return plan


def _run(builder: Builder, reqs: list[BuildRequest], by_node: dict[str, list[Item]],
         clients: dict[str, NodeClient], candidates: list[Candidate], local_build: LocalBuild,
         store: ContentStore, progress: Progress, cancel: Cancel,
         pushes: Sequence[tuple[str, ...]], moves: _Failover) -> dict[int, list[PlatformImage]]:
    """Every node's items in parallel (a node's items one after another; the local ones in one solve)."""
    memo = filesync.DigestMemo()
    inner = Cancel()  # the first failure stops every other node
    locks = {name: threading.Lock() for name in clients}  # one build at a time per connection
    lost: set[str] = set()

    def job(name: str, items: list[Item]) -> list[tuple[int, PlatformImage]]:
        if builder.node(name).endpoint.is_local:
            subs = [dataclasses.replace(reqs[i], platforms=ps) for i, ps in items]
            return [(i, img) for (i, _), result in zip(items, local_build(subs, inner), strict=True)
                    for img in result.images]
        out: list[tuple[int, PlatformImage]] = []
        for i, platforms in items:
            out.extend(remote(name, i, platforms))
        return out

    def remote(name: str, i: int, platforms: tuple[Platform, ...]) -> list[tuple[int, PlatformImage]]:
        client = clients[name]
        try:
            if name in lost:
                raise NodeLost(f"node {name} ({client.node.endpoint}) was lost earlier in this build")
            with locks[name], inner.hook(client.abort):
                declared = builder.node(name).platforms  # BUILDPLATFORM: the node's own (else its host's)
                sub = dataclasses.replace(reqs[i], platforms=platforms,
                                          build_platform=declared[0] if declared else None)
                push = pushes[i] if pushes else ()  # ssh nodes push these platforms by digest themselves
                return [(i, img) for img in client.build(sub, platforms, store=store, progress=progress, memo=memo,
                                                         push=push)]
        except NodeLost as exc:
            if inner.cancelled:
                raise
            lost.add(name)
            mine = [Assignment(p, name, (name, str(p)) in moves.emulated) for p in platforms]
            left = [c for c in candidates if c.name not in lost]
            try:  # failover: the platforms go to the nodes left, as --node-failover allows
                again = failover(mine, left, moves.mode, builder=builder.name)
            except PolyarchError:
                raise _stuck(exc, mine, left, moves.mode, builder.name) from None
            targets: dict[str, list[Platform]] = {}
            for a in again:
                targets.setdefault(a.node, []).append(a.platform)
                if a.emulated:
                    moves.emulated.add((a.node, str(a.platform)))
            progress.message(f"{exc.message}; building " + "; ".join(
                f"{', '.join(str(p) for p in ps)} on node {n}" for n, ps in targets.items()) + " instead"
                + (" (through emulation)" if any(a.emulated for a in again) else ""))
            return [pair for n, ps in targets.items() for pair in job(n, [(i, tuple(ps))])]

    failure: BaseException | None = None
    out: dict[int, list[PlatformImage]] = {}
    with cancel.hook(inner.cancel), concurrent.futures.ThreadPoolExecutor(max_workers=len(by_node)) as pool:
        futures = {pool.submit(job, name, items): name for name, items in by_node.items()}
        for future in concurrent.futures.as_completed(futures):
            try:
                for i, img in future.result():
                    out.setdefault(i, []).append(img)
            except BaseException as exc:  # the first real failure wins over the cancellations it caused
                if failure is None or (isinstance(failure, Cancelled) and not isinstance(exc, Cancelled)):
                    failure = exc
                inner.cancel()
    if failure is not None:
        for client in clients.values():  # what nodes sent goes again (the local build rolled back its own)
            for digest in client.received_blobs:
                try:
                    store.delete(digest)
                except PolyarchError:
                    pass
        if cancel.cancelled:
            raise Cancelled() from failure
        raise failure
    return out
