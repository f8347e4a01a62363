"""``polyarch builder create|ls|inspect|use|rm|stop``: builder instances, with buildx's command names and output.

A builder is a named list of nodes (``local``, or ``ssh://[user@]host[:port]`` running polyarch); the implicit
builder ``default`` (one ``local`` node) always exists and is used until ``builder use`` picks another. The
builders live in ``builders.json`` of the per-user state directory (``Environment.state_dir``; ``nodes/store.py``).

Top-level aliases, as ``docker buildx``: ``polyarch create``, ``ls``, ``use`` and ``stop``. ``polyarch inspect`` and
``polyarch rm`` stay the image commands (as ``docker inspect`` / ``docker rm`` next to ``docker buildx inspect`` /
``docker buildx rm``): builders are inspected and removed with ``polyarch builder inspect|rm``.

``selected_builder`` is what ``build`` and ``bake`` use: ``--builder``, else ``POLYARCH_BUILDER``, else the builder
in use. A builder whose nodes are all ``local`` builds here, as without one.
"""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, Any

import click

from polyarch.cli.context import AppContext, pass_app
from polyarch.errors import PolyarchError, UsageError

if TYPE_CHECKING:
    from polyarch.nodes.driver import Drivers
    from polyarch.nodes.model import Builder, BuilderState, NodeStatus
    from polyarch.nodes.store import BuilderStore

__all__ = ["builder", "create", "inspect", "ls", "rm", "selected_builder", "stop",
           "use"]


def builder_store(app: AppContext) -> BuilderStore:
    """The builders file of this user (``POLYARCH_CONFIG_DIR`` or the XDG config directory)."""
    from polyarch.nodes.store import BuilderStore

    return BuilderStore.in_dir(app.env.state_dir())


def drivers(app: AppContext) -> Drivers:
    """The node drivers: this host through its binfmt_misc directory; ssh nodes through OpenSSH
    (``POLYARCH_SSH``, see ``cli/node.ssh_command``; connection sharing: ``cli/node.ssh_mux``)."""
    from polyarch.cli.node import ssh_command, ssh_mux
    from polyarch.nodes.driver import Drivers
    from polyarch.nodes.local import LocalDriver
    from polyarch.nodes.sshdriver import SshDriver

    return Drivers(local=LocalDriver(app.env.binfmt_dir), ssh=SshDriver(ssh_command(app), ssh_mux(app)))


def selected_builder(app: AppContext, name: str | None) -> Builder:
    """The builder a build uses: ``name`` (``--builder``), else ``POLYARCH_BUILDER``, else the one in use.

    :raises NotFound: no builder of that name. :raises StoreError: the builders file is not valid.
    """
    state = builder_store(app).load()
    return state.get(name or app.env.builder or state.current)


def _platforms(status: NodeStatus) -> list[str]:
    return [f"{p}*" for p in status.native] + [str(p) for p in status.emulated]


@click.group("builder")
def builder() -> None:
    """Manage builder instances: named sets of nodes that build their platforms natively."""


@click.command("create")
@click.argument("endpoint", required=False, default="local")
@click.option("--name", default=None, help="Builder name (default: a free builderN).")
@click.option("--node", "node_name", default=None, help="Node name (default: the builder's name and an index).")
@click.option("--platform", "platforms", multiple=True,
              help="Platforms the node runs natively (comma-separated or repeated).")
@click.option("--node-flags", default=None, metavar="FLAGS",
              help="Global options for the node's polyarch, e.g. '--root /srv/polyarch' (shell words).")
@click.option("--append", is_flag=True, help="Add (or replace) a node of an existing builder.")
@click.option("--use", "use_it", is_flag=True, help="Use the builder from now on.")
@pass_app
def create(app: AppContext, endpoint: str, name: str | None, node_name: str | None, platforms: tuple[str, ...],
           node_flags: str | None, append: bool, use_it: bool) -> None:
    """Create a builder, or add a node to one (--append). ENDPOINT: 'local' (default) or ssh://[user@]host[:port]."""
    from polyarch.nodes.model import DEFAULT_NAME, Builder, Node, parse_endpoint, valid_name
    from polyarch.platform import parse_list

    point = parse_endpoint(endpoint)
    declared = tuple(dict.fromkeys(p.normalized() for p in parse_list(platforms)))
    try:
        flags = tuple(shlex.split(node_flags)) if node_flags else ()
    except ValueError as exc:
        raise UsageError(f"invalid --node-flags {node_flags!r}: {exc}") from None
    if flags and point.is_local:
        raise UsageError("--node-flags is for ssh nodes: a local node is this polyarch")
    if name is not None:
        valid_name(name)
        if name == DEFAULT_NAME:
            raise UsageError(f"the builder name {DEFAULT_NAME!r} is reserved for polyarch's own builder")
    elif append:
        raise UsageError("--append needs --name: the builder to add the node to")
    if node_name is not None:
        valid_name(node_name, "node")
    made: list[str] = []

    def change(state: BuilderState) -> BuilderState:
        bname = name or state.next_name()
        existing = state.find(bname)
        if append and existing is None:
            raise UsageError(f"no builder {bname!r} to append a node to",
                             hint=f"create it first: polyarch builder create --name {bname} ENDPOINT")
        if not append and existing is not None:
            raise UsageError(f"builder {bname} already exists", hint="add a node to it with --append")
        base = existing or Builder(bname, ())
        node = Node(node_name or base.next_node_name(), point, declared, flags)
        new = state.with_builder(base.with_node(node))
        made.append(bname)
        return new.using(bname) if use_it else new

    builder_store(app).update(change)
    click.echo(made[-1])


def _rows(state: BuilderState, drv: Drivers) -> list[dict[str, Any]]:
    out = []
    for b in state.all():
        nodes = []
        for n in b.nodes:
            st = drv.for_node(n).status(n)
            nodes.append({"name": n.name, "endpoint": str(n.endpoint), "status": st.status, "version": st.version,
                          "platforms": _platforms(st), "flags": list(n.flags), "message": st.message})
        out.append({"name": b.name, "driver": b.driver, "current": b.name == state.current, "nodes": nodes})
    return out


@click.command("ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="Output format.")
@pass_app
def ls(app: AppContext, fmt: str) -> None:
    """List builders and their nodes: status, polyarch version, platforms (native ones marked *)."""
    rows = _rows(builder_store(app).load(), drivers(app))
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("NAME/NODE", "DRIVER/ENDPOINT", "STATUS", "POLYARCH", "PLATFORMS")]
    for b in rows:
        table.append((b["name"] + ("*" if b["current"] else ""), b["driver"], "", "", ""))
        for n in b["nodes"]:
            table.append((f" \\_ {n['name']}", f" \\_ {n['endpoint']}", n["status"], n["version"],
                          ", ".join(n["platforms"])))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "   " + r[4]
                   if r[4] else "   ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)).rstrip())


@click.command("inspect")
@click.argument("name", required=False)
@click.option("--bootstrap", is_flag=True, help="Reach every node first: check it and learn its platforms.")
@pass_app
def inspect(app: AppContext, name: str | None, bootstrap: bool) -> None:
    """Show a builder (default: the one in use) and its nodes."""
    state = builder_store(app).load()
    b = state.get(name or app.env.builder or state.current)
    drv = drivers(app)
    click.echo(f"Name:          {b.name}")
    click.echo(f"Driver:        {b.driver}")
    click.echo("")
    click.echo("Nodes:")
    failed: list[str] = []
    for i, n in enumerate(b.nodes):
        driver = drv.for_node(n)
        st = driver.bootstrap(n) if bootstrap else driver.status(n)
        if i:
            click.echo("")
        click.echo(f"Name:             {n.name}")
        click.echo(f"Endpoint:         {n.endpoint}")
        click.echo(f"Status:           {st.status}")
        if n.flags:
            click.echo(f"Flags:            {shlex.join(n.flags)}")
        if st.version:
            click.echo(f"Polyarch version: {st.version}")
        click.echo(f"Platforms:        {', '.join(_platforms(st))}")
        if st.message:
            click.echo(f"Error:            {st.message}")
        if st.status == "error":
            failed.append(st.message or f"node {n.name} ({n.endpoint}) is not reachable")
    if failed:
        raise PolyarchError(f"builder {b.name}: " + "; ".join(failed))


@click.command("use")
@click.argument("name")
@pass_app
def use(app: AppContext, name: str) -> None:
    """Use builder NAME for build and bake from now on ('default': polyarch's own)."""
    builder_store(app).update(lambda state: state.using(name))


@click.command("rm")
@click.argument("name")
@click.option("--node", "node_name", default=None, help="Remove only this node of the builder.")
@click.option("-f", "--force", is_flag=True, help="Remove the builder even when it is in use ('default' is then).")
@pass_app
def rm(app: AppContext, name: str, node_name: str | None, force: bool) -> None:
    """Remove builder NAME (or one of its nodes with --node)."""
    removed: list[Any] = []

    def change(state: BuilderState) -> BuilderState:
        b = state.get(name)
        if node_name is not None:
            removed.append(b.node(node_name))
            return state.with_builder(b.without_node(node_name))
        if state.current == name and not force:
            raise UsageError(f"builder {name} is in use",
                             hint="switch first (polyarch builder use default), or remove it with --force")
        removed.extend(b.nodes)
        return state.without(name)

    builder_store(app).update(change)
    drv = drivers(app)
    for n in removed:
        drv.for_node(n).stop(n)
    click.echo(f"{name} removed" if node_name is None else f"node {node_name} removed from {name}")


@click.command("stop")
@click.argument("name", required=False)
@pass_app
def stop(app: AppContext, name: str | None) -> None:
    """Stop a builder (default: the one in use): close what polyarch keeps open to its nodes."""
    state = builder_store(app).load()
    b = state.get(name or app.env.builder or state.current)
    drv = drivers(app)
    for n in b.nodes:
        drv.for_node(n).stop(n)


for _cmd in (create, ls, inspect, use, rm, stop):
    builder.add_command(_cmd)
