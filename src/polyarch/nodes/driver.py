"""The node driver seam: how the CLI learns a node's status and platforms, and stops it.

API::

    class NodeDriver(Protocol):
        status(node) -> NodeStatus      # cheap, never connects (``builder ls``, ``builder inspect``)
        bootstrap(node) -> NodeStatus   # reach the node, check it, learn its platforms (``inspect --bootstrap``)
        stop(node) -> None              # release what the driver holds for the node (``builder stop``)

    Drivers(local, ssh).for_node(node) -> NodeDriver

``nodes/local.py`` is the local driver, ``nodes/sshdriver.py`` the ssh one; the CLI (``cli/builder.py``) makes
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .model import Node, NodeStatus

__all__ = ["Drivers", "NodeDriver"]


class NodeDriver(Protocol):
    def status(self, node: Node) -> NodeStatus:
        """What is known of ``node`` without reaching it."""
        ...

    def bootstrap(self, node: Node) -> NodeStatus:
        """Reach ``node`` and report it (never raises for an unreachable node: status ``error`` + message)."""
        ...

    def stop(self, node: Node) -> None:
        """Release what this process keeps for ``node`` (connections); nothing runs on a node between builds."""
        ...


@dataclass(frozen=True, slots=True)
class Drivers:
    """One driver per endpoint kind."""

    local: NodeDriver
    ssh: NodeDriver

    def for_node(self, node: Node) -> NodeDriver:
        return self.local if node.endpoint.is_local else self.ssh
