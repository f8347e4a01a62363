"""Builder instances as pure frozen values (buildx's model): a ``Builder`` is a named list of ``Node``s, each an
``Endpoint`` (``local`` or ``ssh://[user@]host[:port]``) with the platforms the user declared it runs natively.

API::

    parse_endpoint("ssh://pi@pi5:2222") -> Endpoint("ssh", "pi", "pi5", 2222)     # UsageError when not one
    valid_name(text, "builder") -> text                                             # UsageError when not one
    Node(name, endpoint, platforms=(), flags=())      # platforms: declared native ones; flags: node polyarch options
    Builder(name, nodes, driver="polyarch")           # .is_local, .remote_nodes, .node(name)
    DEFAULT_BUILDER                                   # "default": one local node; never stored, never removed
    BuilderState(current, builders)                   # .get(name), .with_builder(b), .without(name), .using(name)
    NodeStatus(status, native, emulated, version="", message="")   # what a driver reports of a node

Pure: no files, no environment, no processes (``nodes/store.py`` keeps the state, ``nodes/driver.py`` asks nodes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from polyarch.errors import NotFound, UsageError
from polyarch.platform import Platform

__all__ = ["DEFAULT_BUILDER", "DEFAULT_NAME", "STATUSES", "Builder", "BuilderState", "Endpoint", "Node",
           "NodeStatus", "parse_endpoint", "valid_name"]

DEFAULT_NAME = "default"
STATUSES = ("running", "inactive", "unknown", "error", "stopped")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*\.?")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_SSH = re.compile(r"ssh://(?:(?P<user>[^@/?#\[\]]*)@)?(?P<host>\[[^\]/]*\]|[^:/?#@\[\]]*)(?::(?P<port>[^/?#]*))?")


def valid_name(text: str, what: str = "builder") -> str:
    """``text`` when it is a valid builder or node name (``[A-Za-z0-9][A-Za-z0-9_.-]``, at most 63 characters).

    :raises UsageError: it is not.
    """
    if not _NAME.fullmatch(text):
        raise UsageError(f"invalid {what} name {text!r}: use letters, digits, '_', '.' and '-' (at most 63, "
                         f"starting with a letter or digit)")
    return text


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a node runs: this host (``local``) or a host polyarch reaches over OpenSSH."""

    kind: Literal["local", "ssh"]
    user: str = ""
    host: str = ""  # a hostname, an IPv4 address, or an IPv6 address without brackets
    port: int | None = None

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    @property
    def ssh_target(self) -> str:
        """``[user@]host`` as ssh takes it after ``--`` (the port goes to ``-p``)."""
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        if self.kind == "local":
            return "local"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return "ssh://" + (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")


LOCAL = Endpoint("local")


def parse_endpoint(text: str) -> Endpoint:
    """``local`` or ``ssh://[user@]host[:port]`` → ``Endpoint``.

    :raises UsageError: anything else (other schemes, a password, a path, a query, a bad host, user or port).
    """
    if text == "local":
        return LOCAL
    bad = f"invalid endpoint {text!r}: expected 'local' or ssh://[user@]host[:port]"
    m = _SSH.fullmatch(text)
    if m is None:
        raise UsageError(bad)
    user, host, port_text = m.group("user"), m.group("host"), m.group("port")
    if user is not None and not _USER.fullmatch(user):
        raise UsageError(f"{bad} (bad user name {user!r})")
    if host.startswith("["):
        host = host[1:-1]
        if ":" not in host or not _IPV6.fullmatch(host):
            raise UsageError(f"{bad} (bad IPv6 address {host!r})")
    elif not _HOSTNAME.fullmatch(host):
        raise UsageError(f"{bad} (bad host {host!r})")
    port: int | None = None
    if port_text is not None:
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 0 < int(port_text) < 65536:
            raise UsageError(f"{bad} (bad port {port_text!r})")
        port = int(port_text)
    return Endpoint("ssh", user or "", host, port)


@dataclass(frozen=True, slots=True)
class Node:
    """One machine of a builder. ``platforms``: what the user declared it runs natively (``--platform``),
    normalized; ``flags``: extra global options for the node's ``polyarch`` (e.g. ``--root DIR``)."""

    name: str
    endpoint: Endpoint
    platforms: tuple[Platform, ...] = ()
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Builder:
    """A named list of nodes; a build through it runs each platform on one of them."""

    name: str
    nodes: tuple[Node, ...]
    driver: str = "polyarch"

    @property
    def is_local(self) -> bool:
        """Every node is this host: a build runs here, as without a builder."""
        return all(n.endpoint.is_local for n in self.nodes)

    @property
    def remote_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if not n.endpoint.is_local)

    def node(self, name: str) -> Node:
        """:raises NotFound: the builder has no node ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise NotFound(f"builder {self.name} has no node {name!r}",
                       hint="its nodes: " + ", ".join(n.name for n in self.nodes))

    def with_node(self, node: Node) -> Builder:
        """A node added, or the node of that name replaced (``create --append --node NAME``, as buildx).

        :raises UsageError: another node has the same endpoint and flags.
        """
        for n in self.nodes:
            if n.name != node.name and n.endpoint == node.endpoint and n.flags == node.flags:
                raise UsageError(f"endpoint {node.endpoint} is already node {n.name} of builder {self.name}")
        if any(n.name == node.name for n in self.nodes):
            return replace(self, nodes=tuple(node if n.name == node.name else n for n in self.nodes))
        return replace(self, nodes=(*self.nodes, node))

    def without_node(self, name: str) -> Builder:
        """:raises NotFound: no such node. :raises UsageError: it is the last node."""
        self.node(name)
        if len(self.nodes) == 1:
            raise UsageError(f"node {name} is the last node of builder {self.name}",
                             hint=f"remove the builder: polyarch builder rm {self.name}")
        return replace(self, nodes=tuple(n for n in self.nodes if n.name != name))

    def next_node_name(self) -> str:
        """buildx's default node name: the builder's name and the first free index (``homelab0``, …)."""
        taken = {n.name for n in self.nodes}
        i = 0
        while f"{self.name}{i}" in taken:
            i += 1
        return f"{self.name}{i}"


DEFAULT_BUILDER = Builder(DEFAULT_NAME, (Node(DEFAULT_NAME, LOCAL),))


@dataclass(frozen=True, slots=True)
class BuilderState:
    """Every builder the user made and the one in use (``default`` when none is chosen)."""

    current: str = DEFAULT_NAME
    builders: tuple[Builder, ...] = ()

    def all(self) -> tuple[Builder, ...]:
        """The stored builders, then the implicit ``default``."""
        return (*self.builders, DEFAULT_BUILDER)

    def find(self, name: str) -> Builder | None:
        if name == DEFAULT_NAME:
            return DEFAULT_BUILDER
        return next((b for b in self.builders if b.name == name), None)

    def get(self, name: str) -> Builder:
        """:raises NotFound: no builder ``name``."""
        found = self.find(name)
        if found is None:
            raise NotFound(f"no builder {name!r}", hint="list them with: polyarch builder ls")
        return found

    def with_builder(self, builder: Builder) -> BuilderState:
        """``builder`` added, or the stored one of that name replaced.

        :raises UsageError: it is the implicit ``default``.
        """
        if builder.name == DEFAULT_NAME:
            raise UsageError(f"builder {DEFAULT_NAME!r} is polyarch's own and cannot be changed")
        if any(b.name == builder.name for b in self.builders):
            return replace(self, builders=tuple(builder if b.name == builder.name else b for b in self.builders))
        return replace(self, builders=(*self.builders, builder))

    def without(self, name: str) -> BuilderState:
        """The builder ``name`` removed; when it was in use, ``default`` is.

        :raises UsageError: ``default``. :raises NotFound: no such builder.
        """
        if name == DEFAULT_NAME:
            raise UsageError(f"builder {DEFAULT_NAME!r} is polyarch's own and cannot be removed")
        self.get(name)
        current = DEFAULT_NAME if self.current == name else self.current
        return BuilderState(current, tuple(b for b in self.builders if b.name != name))

    def using(self, name: str) -> BuilderState:
        """:raises NotFound: no builder ``name``."""
        self.get(name)
        return replace(self, current=name)

    def next_name(self) -> str:
        """A free name for ``create`` without ``--name``: ``builder0``, ``builder1``, …"""
        i = 0
        while self.find(f"builder{i}") is not None:
            i += 1
        return f"builder{i}"


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What a driver knows of a node: ``status`` (one of ``STATUSES``), the platforms it runs natively and through
    emulation, the node's polyarch version when it was asked, and a message when it could not be reached."""

    status: str
    native: tuple[Platform, ...] = ()
    emulated: tuple[Platform, ...] = ()
    version: str = ""
    message: str = ""
