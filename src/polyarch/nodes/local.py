"""This host as a node (endpoint ``local``): it runs natively what ``platform.host_compatible()`` names (and what
the user declared), and through QEMU every linux platform with a usable binfmt_misc handler
(``worker.emulation.check``, reading the binfmt_misc directory the CLI passes).

API::

    LocalDriver(binfmt_dir).status(node) -> NodeStatus("running", native, emulated)   # = bootstrap; stop: no-op
"""

from __future__ import annotations

from pathlib import Path

from polyarch import __version__
from polyarch import platform as plat
from polyarch.platform import Platform
from polyarch.worker import binfmt, emulation

from .model import Node, NodeStatus

__all__ = ["LocalDriver"]


def _unique(items: list[Platform]) -> tuple[Platform, ...]:
    out: list[Platform] = []
    for p in items:
        if p not in out:
            out.append(p)
    return tuple(out)


class LocalDriver:
    """The local node's driver: nothing to start or stop (polyarch is daemonless)."""

    def __init__(self, binfmt_dir: Path = binfmt.BINFMT_DIR) -> None:
        self.binfmt_dir = binfmt_dir

    def status(self, node: Node) -> NodeStatus:
        native = _unique([*node.platforms, *plat.host_compatible()])
        emulated: list[Platform] = []
        for arch in binfmt.ARCHES.values():
            p = arch.platform
            if plat.runs_natively(p) or not emulation.check(p, binfmt_dir=self.binfmt_dir).ok:
                continue
            emulated.append(p)
            if arch.arch == "arm":
                emulated.append(Platform("linux", "arm", "v6"))
        return NodeStatus("running", native, tuple(p for p in _unique(emulated) if p not in native),
                          version=__version__)

    def bootstrap(self, node: Node) -> NodeStatus:
        return self.status(node)

    def stop(self, node: Node) -> None:
        return None
