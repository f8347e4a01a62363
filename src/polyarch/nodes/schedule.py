"""Which node builds which platform (pure): a node that runs it natively, else one that emulates it, else an error
before any work.

Among the nodes that qualify, the one with the fewest platforms so far wins (ties: the builder's node order), so a
multi-platform build spreads over equal nodes. A node's native platforms are the ones its user declared
(``--platform`` on ``builder create``) followed by what the node reported; a declared platform is never counted as
emulated.

``failover`` moves the platforms of a node that failed (unreachable at the start, its connection lost, out of
disk) to the nodes left, as ``--node-failover`` says (``Failover``): ``native`` (the default) only where they run
as well as planned (a platform planned native goes to a node that runs it natively; one planned emulated to any
node), ``any`` (``--node-failover``) to any node that runs them, emulated if need be, ``off``
(``--no-node-failover``) nowhere: the fault fails the build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from polyarch.errors import UsageError
from polyarch.platform import Platform

__all__ = ["FAILOVER_MODES", "Assignment", "Candidate", "Failover", "failover", "schedule"]

#: what a node fault does to the node's platforms (see the module doc)
Failover = Literal["native", "any", "off"]
FAILOVER_MODES: tuple[Failover, ...] = ("native", "any", "off")


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    native: tuple[Platform, ...]
    emulated: tuple[Platform, ...] = ()


@dataclass(frozen=True, slots=True)
class Assignment:
    platform: Platform
    node: str
    emulated: bool = False


def _key(p: Platform) -> tuple[str, str, str]:
    n = p.normalized()
    return n.os, n.architecture, n.variant


def _runs(platforms: Sequence[Platform], p: Platform) -> bool:
    return _key(p) in {_key(q) for q in platforms}


def schedule(wanted: Sequence[Platform], nodes: Sequence[Candidate], *, builder: str = "") -> list[Assignment]:
    """One assignment per platform of ``wanted`` (in that order).

    :raises UsageError: a platform no node runs, natively or emulated (every node's platforms named)."""
    load = {c.name: 0 for c in nodes}
    out: list[Assignment] = []
    for p in wanted:
        choice: tuple[Candidate, bool] | None = None
        for emulated in (False, True):
            fit = [c for c in nodes if _runs(c.emulated if emulated else c.native, p)
                   and not (emulated and _runs(c.native, p))]
            if fit:
                choice = (min(fit, key=lambda c: load[c.name]), emulated)  # min keeps the first of equals
                break
        if choice is None:
            known = "; ".join(f"{c.name}: {', '.join(str(x) for x in c.native) or '-'}"
                              + (f" (emulated: {', '.join(str(x) for x in c.emulated)})" if c.emulated else "")
                              for c in nodes) or "no nodes"
            raise UsageError(f"no node of builder {builder or '?'} can run {p} ({known})",
                             hint="add a node for it: polyarch builder create --append --name BUILDER "
                                  f"--platform {p} ssh://HOST")
        node, emulated = choice
        load[node.name] += 1
        out.append(Assignment(p, node.name, emulated))
    return out


def failover(lost: Sequence[Assignment], nodes: Sequence[Candidate], mode: Failover, *, builder: str = ""
             ) -> list[Assignment]:
    """Where the platforms of ``lost`` (a failed node's assignments) go among ``nodes`` (the nodes left).

    :raises UsageError: ``mode`` is ``off``, or no node left runs one of them as ``mode`` allows."""
    if mode == "off":
        raise UsageError("node failover is off (--no-node-failover)")
    as_planned = [a for a in lost if mode == "native" and not a.emulated]
    anyhow = [a for a in lost if a not in as_planned]
    native_only = [Candidate(c.name, c.native) for c in nodes]
    moved = {id(a): b for group, cands in ((as_planned, native_only), (anyhow, nodes))
             for a, b in zip(group, schedule([a.platform for a in group], cands, builder=builder), strict=True)}
    return [moved[id(a)] for a in lost]
