"""Platforms (``os/arch[/variant]``) with containerd's normalization and ordered matching.

``normalize`` maps aliases to canonical names (aarch64→arm64, x86_64→amd64, armhf→arm/v7, arm64/v8→arm64);
``compatible(p)`` lists, best first, the platforms a machine of platform ``p`` runs natively (arm/v7 runs v6 and
v5; amd64/v3 runs v2 and v1 and 386). A matcher is a plain predicate plus a rank.
"""

from __future__ import annotations

import difflib
import platform as _pyplatform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from polyarch.errors import InvalidPlatform

__all__ = [
    "KNOWN_ARCHES",
    "KNOWN_OS",
    "Platform",
    "best_match",
    "compatible",
    "host",
    "host_amd64_level",
    "host_compatible",
    "normalize_arch",
    "parse",
    "parse_list",
    "rank",
    "runs_natively",
    "set_arm_variant_fallback",
]

KNOWN_OS = frozenset(
    "aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 solaris wasip1 "
    "windows zos".split()
)
KNOWN_ARCHES = frozenset(
    "386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le mips64p32 mips64p32le ppc "
    "ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm".split()
)
_ARCH_ALIASES = {
    "i386": "386", "i486": "386", "i586": "386", "i686": "386", "x86": "386",
    "x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm",
    "armv7l": "arm", "armv7": "arm", "armv6l": "arm", "armv6": "arm", "armv5l": "arm", "armv5tel": "arm",
    "loongarch64": "loong64", "riscv64gc": "riscv64", "powerpc64le": "ppc64le",
}
_ARCH_IMPLIED_VARIANT = {"armhf": "v7", "armel": "v6", "armv7l": "v7", "armv7": "v7", "armv6l": "v6",
                         "armv6": "v6", "armv5l": "v5", "armv5tel": "v5"}
_OS_ALIASES = {"macos": "darwin"}


@dataclass(frozen=True, slots=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=(), compare=True)

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    @property
    def slug(self) -> str:
        """``linux_arm_v7``: a folder name for ``type=local`` outputs."""
        return str(self).replace("/", "_")

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out

    @classmethod
    def from_oci(cls, data: Mapping[str, Any]) -> Platform:
        """Build from an OCI ``platform`` object, keeping its values as written (no normalization)."""
        try:
            os_name = data["os"]
            arch = data["architecture"]
        except (KeyError, TypeError) as exc:
            raise InvalidPlatform(f"platform object {dict(data) if isinstance(data, Mapping) else data!r} "
                                  "lacks os or architecture") from exc
        variant = data.get("variant") or ""
        features = data.get("os.features") or ()
        if not all(isinstance(v, str) for v in (os_name, arch, variant)) or not isinstance(features, list | tuple):
            raise InvalidPlatform(f"platform object has non-string fields: {data!r}")
        return cls(os_name, arch, variant, data.get("os.version") or "", tuple(features))

    def normalized(self) -> Platform:
        arch, variant = normalize_arch(self.architecture, self.variant)
        os_name = _OS_ALIASES.get(self.os.lower(), self.os.lower())
        return Platform(os_name, arch, variant, self.os_version, self.os_features)

    def same(self, other: Platform) -> bool:
        """Equal after normalization (arm64 == arm64/v8, aarch64 == arm64)."""
        a, b = self.normalized(), other.normalized()
        return (a.os, a.architecture, a.variant) == (b.os, b.architecture, b.variant)


def normalize_arch(arch: str, variant: str = "") -> tuple[str, str]:
    """containerd's normalizeArch: canonical architecture and variant."""
    raw = arch.lower()
    variant = variant.lower()
    if not variant and raw in _ARCH_IMPLIED_VARIANT:
        variant = _ARCH_IMPLIED_VARIANT[raw]
    arch = _ARCH_ALIASES.get(raw, raw)
    if arch == "386":
        variant = ""
    elif arch == "amd64":
        if variant == "v1":
            variant = ""
    elif arch == "arm64":
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant and not variant.startswith("v"):
            variant = "v" + variant
    elif arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return arch, variant


def parse(text: str) -> Platform:
    """Parse ``os/arch[/variant]``, a bare ``arch`` or ``os``, or ``local``; normalized.

    :raises InvalidPlatform: unknown os or architecture, empty parts, too many parts.
    """
    spec = text.strip()
    if spec == "local":
        return host()
    parts = spec.split("/")
    if not spec or len(parts) > 3 or any(not p for p in parts):
        raise InvalidPlatform(f"invalid platform {text!r}: expected os/arch[/variant]")
    if len(parts) == 1:
        word = parts[0].lower()
        if word in KNOWN_OS or word in _OS_ALIASES:
            parts = [word, host().architecture]
        else:
            parts = ["linux", word]
    os_name = _OS_ALIASES.get(parts[0].lower(), parts[0].lower())
    if os_name not in KNOWN_OS:
        raise InvalidPlatform(f"invalid platform {text!r}: unknown operating system {parts[0]!r}",
                              hint=_suggest(os_name, KNOWN_OS))
    arch, variant = normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
    if arch not in KNOWN_ARCHES:
        raise InvalidPlatform(f"invalid platform {text!r}: unknown architecture {parts[1]!r}",
                              hint=_suggest(arch, KNOWN_ARCHES, prefix=f"{os_name}/"))
    if variant and not variant.replace(".", "").isalnum():
        raise InvalidPlatform(f"invalid platform {text!r}: bad variant {variant!r}")
    return Platform(os_name, arch, variant)


def parse_list(specs: Iterable[str]) -> tuple[Platform, ...]:
    """Parse comma-separated lists (``linux/amd64,linux/arm64``), dropping duplicates, keeping order."""
    out: list[Platform] = []
    for spec in specs:
        for part in spec.split(","):
            if not part.strip():
                continue
            p = parse(part)
            if p not in out:
                out.append(p)
    return tuple(out)


def _suggest(word: str, choices: Iterable[str], prefix: str = "") -> str | None:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean {prefix}{close[0]}?" if close else None


_AMD64_LEVELS = ("", "v2", "v3", "v4")


def compatible(p: Platform, *, amd64_level: int | None = None) -> tuple[Platform, ...]:
    """Platforms a machine of platform ``p`` runs natively, best first (containerd's platformVector)."""
    p = p.normalized()
    out: list[Platform] = []
    if p.architecture == "amd64":
        level = amd64_level if amd64_level is not None else (
            _AMD64_LEVELS.index(p.variant) + 1 if p.variant in _AMD64_LEVELS else 1)
        for lv in range(level, 0, -1):
            out.append(Platform(p.os, "amd64", _AMD64_LEVELS[lv - 1]))
        out.append(Platform(p.os, "386"))
    elif p.architecture == "arm64":
        out.append(Platform(p.os, "arm64", p.variant))
        if p.variant:
            out.append(Platform(p.os, "arm64"))
        out.extend(compatible(Platform(p.os, "arm", "v8")))
    elif p.architecture == "arm":
        try:
            n = int(p.variant.lstrip("v"))
        except ValueError:
            return (p,)
        out.extend(Platform(p.os, "arm", f"v{v}") for v in range(n, 4, -1))
    else:
        out.append(Platform(p.os, p.architecture, p.variant))
    return tuple(out)


def rank(candidate: Platform, wanted: Platform, *, amd64_level: int | None = None) -> int | None:
    """Position of ``candidate`` among what ``wanted`` runs (0 = exact); None when it cannot run it."""
    c = candidate.normalized()
    for i, q in enumerate(compatible(wanted, amd64_level=amd64_level)):
        if (c.os, c.architecture, c.variant) == (q.os, q.architecture, q.variant):
            return i
    return None


def best_match(candidates: Iterable[Platform], wanted: Platform) -> Platform | None:
    """The candidate ``wanted`` runs best, or None."""
    best: tuple[int, Platform] | None = None
    for c in candidates:
        r = rank(c, wanted)
        if r is not None and (best is None or r < best[0]):
            best = (r, c)
    return best[1] if best else None


@cache
def host() -> Platform:
    """The platform of this machine (amd64 without a level, as BuildKit reports BUILDPLATFORM)."""
    arch, variant = normalize_arch(_pyplatform.machine() or "amd64")
    if arch == "arm":
        variant = _arm_cpu_variant() or variant
    elif arch == "amd64":
        variant = ""
    return Platform("linux", arch, variant)


@cache
def host_amd64_level() -> int:
    """x86-64 micro-architecture level of this CPU (1..4), from /proc/cpuinfo flags."""
    flags = _cpu_flags()
    v2 = {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}
    v3 = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
    v4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
    level = 1
    for n, need in ((2, v2), (3, v3), (4, v4)):
        if need <= flags:
            level = n
        else:
            break
    return level


def host_compatible() -> tuple[Platform, ...]:
    """What this machine runs without emulation, best first."""
    h = host()
    return compatible(h, amd64_level=host_amd64_level() if h.architecture == "amd64" else None)


def runs_natively(p: Platform) -> bool:
    want = p.normalized()
    return any((want.os, want.architecture, want.variant) == (q.os, q.architecture, q.variant)
               for q in host_compatible())


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _cpu_flags() -> set[str]:
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


_arm_variant_fallback = ""  # process-wide, set once by the composition root through set_arm_variant_fallback


def set_arm_variant_fallback(variant: str) -> None:
    """The variant ``host()`` reports on an arm CPU whose /proc/cpuinfo names no architecture version (the CLI
    passes ``POLYARCH_ARM_VARIANT``); forgets the cached host platform."""
    global _arm_variant_fallback
    _arm_variant_fallback = variant
    host.cache_clear()


def _arm_cpu_variant() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("CPU architecture"):
            value = line.partition(":")[2].strip()
            if value in ("5", "6", "7", "8"):
                return "v" + value
    return _arm_variant_fallback
