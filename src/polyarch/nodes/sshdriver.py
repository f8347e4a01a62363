"""The ssh node driver (``driver.NodeDriver``): a node reached over OpenSSH, asked through the node protocol.

``status`` makes no connection (``inactive``: polyarch runs no daemon; a node is started per build);
``bootstrap`` connects, exchanges ``hello`` (version checked) and reports the node's platforms — the declared
ones first, as native — or ``error`` with the one-line reason; ``stop`` ends the shared ssh master connection a
build left for the node (``sshmux.SshMux``: kept ``ControlPersist`` seconds), if any.
"""

from __future__ import annotations

from collections.abc import Sequence

from polyarch.errors import PolyarchError

from .client import DEFAULT_SSH, NodeClient
from .model import Node, NodeStatus
from .sshmux import SshMux

__all__ = ["SshDriver"]


class SshDriver:
    def __init__(self, ssh: Sequence[str] = DEFAULT_SSH, mux: SshMux | None = None) -> None:
        self.ssh = tuple(ssh)
        self.mux = mux or SshMux(None)

    def status(self, node: Node) -> NodeStatus:
        return NodeStatus("inactive", native=node.platforms)

    def bootstrap(self, node: Node) -> NodeStatus:
        client = NodeClient(node, self.mux.argv(self.ssh, node))
        try:
            hello = client.connect()
        except PolyarchError as exc:
            client.abort()
            client.close()
            return NodeStatus("error", native=node.platforms, message=exc.message)
        client.close()
        native = tuple(dict.fromkeys((*node.platforms, *hello.native)))
        return NodeStatus("running", native, tuple(p for p in hello.emulated if p not in native),
                          version=hello.version)

    def stop(self, node: Node) -> None:
        self.mux.close(self.ssh, node)
