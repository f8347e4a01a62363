"""The build cache's size policy and the two value syntaxes it shares with ``polyarch prune``.

API::

    GcPolicy(enabled=True, keep_storage=10 GiB, keep_duration=48 h)   # config [gc] / defaults
    parse_size("10GB") -> 10737418240        # docker's RAMInBytes: binary multipliers, b/k/kb/kib/m/…/p
    parse_duration("1h30m") -> 5400.0        # Go's time.ParseDuration (ns us µs ms s m h), no sign
    human_size(n) -> "10.7GB"                # decimal units, as docker prints sizes

BuildKit's gc policy, one rule: after a successful build, when the build cache holds more than ``keep_storage``
bytes, the records not in use and last used more than ``keep_duration`` ago are deleted, least recently used
first, until it holds at most ``keep_storage`` (``pipeline.prune.enforce_gc``). ``keep_storage = 0`` means no
size limit (the gc does nothing); ``keep_duration = 0`` protects nothing by age.

Bad values raise ``UsageError`` naming what was given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from polyarch.errors import UsageError

__all__ = ["DEFAULT_POLICY", "GcPolicy", "human_size", "parse_duration", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class GcPolicy:
    """When the build cache is cut back after a build (see the module doc)."""

    enabled: bool = True
    keep_storage: int = 10 << 30
    keep_duration: float = 48 * 3600.0


DEFAULT_POLICY = GcPolicy()


def parse_size(text: str, *, what: str = "size") -> int:
    """Bytes from ``10GB``, ``512m``, ``1.5GiB``, ``4096`` (k, m, g, t, p are powers of 1024, as docker)."""
    m = _SIZE.match(text)
    if m is None or (m.group(3) and m.group(3).lower() == "ib" and not m.group(2)):
        raise UsageError(f"invalid {what} {text!r}", hint="use a number of bytes with an optional unit: "
                                                          "512MB, 10GB, 1.5GiB")
    return int(float(m.group(1)) * _MULT[m.group(2).lower()])


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds from a Go duration: ``24h``, ``1h30m``, ``90s``, ``0`` (units ns, us, ms, s, m, h)."""
    raw = text.strip()
    if raw == "0":
        return 0.0
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not raw or pos != len(raw):
        raise UsageError(f"invalid {what} {text!r}", hint="use a Go duration such as 24h, 90m or 1h30m")
    return total


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return f"{n}B"  # pragma: no cover - the loop returns
