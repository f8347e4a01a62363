"""What one host would run of one image (pure).

A verdict is one of

* ``native P``: the image has an entry the host runs without emulation; P is the entry a pull would pick
  (containerd's order: an arm64 host prefers arm64, then arm/v8…v5; an amd64 host amd64 then 386);
* ``emulated P``: nothing native, but a Linux entry exists; P is what it would run under QEMU user emulation
  (preferring amd64, then arm64, arm/v7, arm/v6, 386, then index order). For a multi-platform index Docker
  pulls it only when told the platform (``--platform P`` or compose's ``platform:``); a single-platform image
  it pulls and runs with a warning;
* ``missing``: the image does not exist, or has no Linux entry at all;
* ``unknown``: the host's platform could not be learnt (ssh failed).

A compose service that pins ``platform:`` gets that platform: native when the host runs it, else emulated.
"""

from __future__ import annotations

from collections.abc import Sequence

from polyarch import platform as plat
from polyarch.audit.model import Verdict
from polyarch.platform import Platform

__all__ = ["EMULATION_ORDER", "decide"]

EMULATION_ORDER = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386")


def _key(p: Platform) -> tuple[str, str, str]:
    n = p.normalized()
    return n.os, n.architecture, n.variant


def decide(available: Sequence[Platform] | None, host: Platform | None, pinned: Platform | None = None) -> Verdict:
    """What ``host`` would run of an image offering ``available`` (None: the image does not exist)."""
    if host is None:
        return Verdict("unknown")
    if available is None:
        return Verdict("missing", note="image not found")
    linux = [p.normalized() for p in available if p.os == host.os and p.architecture != "unknown"]
    if pinned is not None:
        match = next((p for p in linux if _key(p) == _key(pinned)), None)
        if match is None:
            return Verdict("missing", note=f"pinned to {pinned.normalized()}, which the image does not have")
        if plat.rank(match, host) is not None:
            return Verdict("native", match, note="pinned by the service")
        return Verdict("emulated", match, note="pinned by the service")
    best = plat.best_match(linux, host)
    if best is not None:
        return Verdict("native", best, note=_compat_note(best, host))
    if not linux:
        have = ", ".join(str(p) for p in available) or "no platform"
        return Verdict("missing", note=f"no {host.os} entry (has {have})")
    order = {k: i for i, k in enumerate(EMULATION_ORDER)}
    chosen = min(enumerate(linux), key=lambda ip: (order.get(str(ip[1]), len(order)), ip[0]))[1]
    return Verdict("emulated", chosen, note=f"no entry runs natively on {host.normalized()}")


def _compat_note(chosen: Platform, host: Platform) -> str:
    h = host.normalized()
    if chosen.architecture == "arm" and h.architecture == "arm64":
        return "32-bit ARM on a 64-bit host: needs a CPU with AArch32 (Pi 3/4/5 yes; some ARM servers no)"
    if chosen.architecture == "386" and h.architecture == "amd64":
        return "32-bit x86 userland on a 64-bit host"
    return ""
