"""``polyarch node serve --stdio`` (what a builder's ssh node runs) and the composition of a build over nodes.

``node serve --stdio`` serves one client session of the node protocol (docs/node-protocol.md) on stdin/stdout
with this host's store (``--root``/``POLYARCH_ROOT``), cache and runtime; stdout and stdin are taken over for the
protocol at once (fd 1 then points to stderr, fd 0 to ``/dev/null``), so nothing a build step prints can corrupt
the stream. The node's registry clients for a build's cache and pushes take the credentials the client forwarded
for that build (``ForwardedCredentials``: in memory, before the node's own docker config), and its pushes go by
digest (``push_by_digest``). ``build_over_nodes`` is what ``build`` calls when the chosen builder has ssh nodes:
the ssh command (``POLYARCH_SSH``), the local node's platforms, the local pipeline and the ``RegistryAccess`` the
nodes get (the client's credentials of the push and cache registries) are made here and handed to
``nodes.distribute.build_on_nodes``; ``node_push`` says when ``--push`` is left to the nodes (every output a
registry push the client can finish with the manifests alone).
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
    from polyarch.cli.environment import Environment
    from polyarch.exporters.assemble import BuildResult
    from polyarch.exporters.spec import OutputSpec
    from polyarch.frontend.convert.plan import BuildPlan
    from polyarch.nodes.distribute import NodeConnections
    from polyarch.nodes.model import Builder
    from polyarch.nodes.sshmux import SshMux
    from polyarch.nodes.wire import RegistryAccess
    from polyarch.pipeline.run import BuildRequest
    from polyarch.progress import Progress
    from polyarch.registry.credentials import CredentialStore

__all__ = ["build_over_nodes", "connect_nodes", "node", "node_push", "push_by_digest", "ssh_command", "ssh_mux"]

#: output attributes a push by the nodes honours (anything else, ``registry.insecure`` too, leaves it to this host)
_NODE_PUSH_ATTRS = frozenset({"name", "push", "push-by-digest", "name-canonical"})


def ssh_command(app: AppContext) -> tuple[str, ...]:
    """``POLYARCH_SSH`` split as a shell would, else the default ssh command line."""
    from polyarch.nodes.client import DEFAULT_SSH

    try:
        words = shlex.split(app.env.ssh)
    except ValueError as exc:
        raise UsageError(f"POLYARCH_SSH: {exc}") from None
    return tuple(words) or DEFAULT_SSH


def ssh_mux(app: AppContext) -> SshMux:
    """OpenSSH connection sharing for node connections, its master sockets under ``Environment.ssh_control_dir``."""
    from polyarch.nodes.sshmux import SshMux

    return SshMux(app.env.ssh_control_dir())


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

    def forwarded(access: RegistryAccess) -> Any:
        from dataclasses import replace

        from polyarch.cli.registry_cmds import RegistryFactory

        return replace(RegistryFactory(app.env, access.insecure), credentials=_forwarded(app.env, access))

    def build(req: BuildRequest, progress: Progress, cancel: Cancel, access: RegistryAccess) -> BuildResult:
        from dataclasses import replace

        return build_image(replace(deps, registry=forwarded(access)), req, progress=progress, cancel=cancel)[1]

    def push(result: BuildResult, repositories: tuple[str, ...], access: RegistryAccess,
             progress: Progress) -> None:
        push_by_digest(app, result, repositories, forwarded(access), progress)

    channel = Channel(proto_in, proto_out)  # type: ignore[arg-type]
    NodeServer(channel, store=app.store, build=build, push=push,
               platforms=NodePlatforms(status.native, status.emulated), version=__version__).serve()
    channel.close()


def _forwarded(env: Environment, access: RegistryAccess) -> CredentialStore:
    """The node's credentials for one build: those the client forwarded (in memory), else the node's own."""
    from polyarch.registry.credentials import Credential, CredentialStore, config_path, server_key

    class ForwardedCredentials(CredentialStore):
        def get(self, registry: str) -> Credential | None:
            pair = access.auths.get(server_key(registry))
            return Credential(*pair) if pair else super().get(registry)

    return ForwardedCredentials(config_path(env.docker_config))


def push_by_digest(app: AppContext, result: BuildResult, repositories: tuple[str, ...], factory: Any,
                   progress: Progress) -> None:
    """Every platform image of ``result`` pushed to each repository by digest (no tag: the client writes the
    index)."""
    from polyarch.oci import reference
    from polyarch.sources.transfer import push_image

    with factory() as client:
        for repo in repositories:
            ref = reference.parse(repo)
            dest = reference.Reference(ref.domain, ref.path)
            for img in result.images:
                with progress.vertex(f"pushing {img.platform} to {ref.domain}/{ref.path} by digest") as handle:
                    push_image(app.images, img.descriptor, dest, client=client)
                    handle.log(f"pushed {img.descriptor.digest}")


def node_push(specs: Sequence[OutputSpec], tags: Sequence[str], *, layers_needed: bool) -> tuple[str, ...]:
    """The repositories ssh nodes push their platforms to by digest themselves: those of the outputs when every
    output is a registry push the client can finish with the manifests alone (no ``--load``, ``-o`` file
    output, conversion, attestation or ``--verify``: ``layers_needed``); else ``()`` (the layers come here)."""
    from polyarch.exporters.spec import output_names
    from polyarch.oci import reference

    if layers_needed or not specs or any(s.type != "registry" or set(s.attrs) - _NODE_PUSH_ATTRS for s in specs):
        return ()
    repos = []
    for spec in specs:
        for name in output_names(spec, tags):
            ref = reference.parse(name)
            repos.append(f"{ref.domain}/{ref.path}")
    return tuple(dict.fromkeys(repos))


def _access(app: AppContext, reqs: Sequence[BuildRequest], pushes: Sequence[tuple[str, ...]],
            registry: Any) -> RegistryAccess:
    """The client's credentials of every registry the nodes push to or exchange cache with."""
    from polyarch.nodes.wire import RegistryAccess, registry_hosts
    from polyarch.oci import reference
    from polyarch.registry.credentials import server_key

    hosts = {h for req in reqs for h in registry_hosts(req)}
    hosts |= {reference.parse(r).domain for repos in pushes for r in repos}
    store = app.env.credentials()
    auths: dict[str, tuple[str, str]] = {}
    for host in sorted(hosts):
        cred = store.get(host)
        if cred is not None:
            auths[server_key(host)] = (cred.username, cred.secret)
    return RegistryAccess(auths, tuple(getattr(registry, "insecure", ())))


def connect_nodes(app: AppContext, builder: Builder) -> NodeConnections:
    """Start reaching ``builder``'s ssh nodes now, in the background (``build`` calls it before its own start-up,
    which then overlaps the nodes'); the connections end when the command does (or when the build ends)."""
    from polyarch.nodes.client import NodeClient
    from polyarch.nodes.distribute import NodeConnections

    ssh, mux = ssh_command(app), ssh_mux(app)
    conns = NodeConnections(builder.remote_nodes, lambda n: NodeClient(n, mux.argv(ssh, n)))
    click.get_current_context().call_on_close(conns.close)
    return conns


def build_over_nodes(app: AppContext, builder: Builder, reqs: Sequence[BuildRequest], *, progress: Progress,
                     cancel: Cancel, registry: Any, pushes: Sequence[tuple[str, ...]] = (),
                     node_failover: bool | None = None, local_images: Sequence[str] = (),
                     connections: NodeConnections | None = None) -> list[tuple[BuildPlan, BuildResult]]:
    """``reqs`` (one build, or a bake round's targets) built over ``builder``'s nodes, the local node's share
    through the usual pipeline. Each plan is made here from the local store alone (``--check`` findings, unused
    build args; a bad Dockerfile fails before any node gets work). ``pushes`` (per request, ``node_push``):
    the repositories ssh nodes push their platforms to by digest. ``node_failover``: ``--node-failover`` (True:
    any node, emulated if need be), ``--no-node-failover`` (False: none), not given (None: native nodes only).
    ``local_images``: names of this store's images that ``docker-image://`` contexts name and ssh nodes receive
    by content (a bake's ``target:`` contexts), never pulled from a registry. ``connections``: the nodes'
    connections ``connect_nodes`` started (else they are made here, after the plans)."""
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
    mux = ssh_mux(app)
    local_nodes = [n for n in builder.nodes if n.endpoint.is_local]
    status = LocalDriver(app.env.binfmt_dir).status(local_nodes[0] if local_nodes else Node("local", LOCAL))
    deps = build_deps(app, registry)

    def local_build(subs: list[BuildRequest], cancel: Cancel) -> list[BuildResult]:
        return [result for _, result in build_many(deps, subs, progress=progress, cancel=cancel)]

    access = _access(app, reqs, pushes, registry)
    handed = {name: app.images.lookup(name) for name in local_images}
    connect: Any = lambda n: NodeClient(n, mux.argv(ssh, n), access, handed)  # noqa: E731
    if connections is not None and not handed:
        for client in connections.clients.values():
            client.access = access
        connect = connections
    results, report = build_on_nodes(builder, reqs, local=status, local_build=local_build,
                                     connect=connect,
                                     store=app.store, progress=progress, cancel=cancel, default_platform=host(),
                                     pushes=pushes, node_failover="native" if node_failover is None else
                                     "any" if node_failover else "off")
    for req, assigned in zip(reqs, report.assignments, strict=True):
        nodes = sorted({a.node for a in assigned})
        for spec in req.cache_to if len(nodes) > 1 else ():
            progress.message(f"--cache-to {spec.describe()}: nodes {', '.join(nodes)} each exported the cache of "
                             "their own platforms there, the last one replacing the others'; use one reference "
                             "per platform to keep them all")
    return list(zip(plans, results, strict=True))
