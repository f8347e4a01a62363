"""``polyarch node serve --stdio`` (what a builder's ssh node runs) and the composition of a build over nodes.

``node serve --stdio`` serves one client session of the node protocol (docs/node-protocol.md) on stdin/stdout
with this host's store (``--root``/``POLYARCH_ROOT``), cache and runtime; stdout and stdin are taken over for the
protocol at once (fd 1 then points to stderr, fd 0 to ``/dev/null``), so nothing a build step prints can corrupt
the stream. ``build_over_nodes`` is what ``build`` calls when the chosen builder has ssh nodes: the ssh command
(``POLYARCH_SSH``), the local node's platforms and the local pipeline are made here and handed to
``nodes.distribute.build_on_nodes``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from polyarch.cli.context import AppContext, pass_app
from polyarch.errors import UsageError

if TYPE_CHECKING:
    from polyarch.cancel import Cancel
    from polyarch.exporters.assemble import BuildResult
    from polyarch.frontend.convert.plan import BuildPlan
    from polyarch.nodes.model import Builder
    from polyarch.pipeline.run import BuildRequest
    from polyarch.progress import Progress

__all__ = ["build_over_nodes", "node", "ssh_command"]


def ssh_command(app: AppContext) -> tuple[str, ...]:
    """``POLYARCH_SSH`` split as a shell would, else the default ssh command line."""
    from polyarch.nodes.client import DEFAULT_SSH

    try:
        words = shlex.split(app.env.ssh)
    except ValueError as exc:
        raise UsageError(f"POLYARCH_SSH: {exc}") from None
    return tuple(words) or DEFAULT_SSH


@click.group("node")
def node() -> None:
    """Serve builds for a builder (run by ssh on a builder's node)."""


@node.command("serve")
@click.option("--stdio", is_flag=True, required=True, help="Speak the node protocol on stdin/stdout.")
@pass_app
def serve(app: AppContext, stdio: bool) -> None:
    """One session of the node protocol on stdin/stdout (run by a client's ssh)."""
    import sys

    from polyarch import __version__
    from polyarch.cli.registry_cmds import registry_factory
    from polyarch.cli.wiring import build_deps
    from polyarch.nodes.local import LocalDriver
    from polyarch.nodes.model import LOCAL, Node
    from polyarch.nodes.protocol import Channel
    from polyarch.nodes.server import NodePlatforms, NodeServer
    from polyarch.pipeline.remotectx import RemoteContexts
    from polyarch.pipeline.run import build_image
    from polyarch.worker.reap import reap_crashed

    sys.stdout.flush()
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever else writes to stdout goes to stderr, never into the protocol stream
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)

    reap_crashed(app.store.root, runtime=app.env.runtime)
    RemoteContexts(app.store.root, app.images).sweep()  # context copies a killed node left
    status = LocalDriver(app.env.binfmt_dir).status(Node("self", LOCAL))
    deps = build_deps(app, registry_factory(app.env))

    def build(req: BuildRequest, progress: Progress, cancel: Cancel) -> BuildResult:
        return build_image(deps, req, progress=progress, cancel=cancel)[1]

    channel = Channel(proto_in, proto_out)  # type: ignore[arg-type]
    NodeServer(channel, store=app.store, build=build, platforms=NodePlatforms(status.native, status.emulated),
               version=__version__).serve()
    channel.close()


def build_over_nodes(app: AppContext, builder: Builder, reqs: Sequence[BuildRequest], *, progress: Progress,
                     cancel: Cancel, registry: Any) -> list[tuple[BuildPlan, BuildResult]]:
    """``reqs`` (one build, or a bake round's targets) built over ``builder``'s nodes, the local node's share
    through the usual pipeline. Each plan is made here from the local store alone (``--check`` findings, unused
    build args; a bad Dockerfile fails before any node is contacted)."""
    from polyarch.cli.wiring import build_deps
    from polyarch.nodes.client import NodeClient
    from polyarch.nodes.distribute import build_on_nodes
    from polyarch.nodes.local import LocalDriver
    from polyarch.nodes.model import LOCAL, Node
    from polyarch.pipeline.bases import local_resolver
    from polyarch.pipeline.run import build_many, plan_request
    from polyarch.platform import host

    plans = [plan_request(req, local_resolver(app.images)) for req in reqs]
    ssh = ssh_command(app)
    local_nodes = [n for n in builder.nodes if n.endpoint.is_local]
    status = LocalDriver(app.env.binfmt_dir).status(local_nodes[0] if local_nodes else Node("local", LOCAL))
    deps = build_deps(app, registry)

    def local_build(subs: list[BuildRequest], cancel: Cancel) -> list[BuildResult]:
        return [result for _, result in build_many(deps, subs, progress=progress, cancel=cancel)]

    results, _ = build_on_nodes(builder, reqs, local=status, local_build=local_build,
                                connect=lambda n: NodeClient(n, ssh), store=app.store, progress=progress,
                                cancel=cancel, default_platform=host())
    return list(zip(plans, results, strict=True))
