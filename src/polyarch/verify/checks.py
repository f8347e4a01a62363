"""The verify rules, as pure functions: which ELF a platform runs, and what is wrong with an index.

An ELF file fits ``linux/ARCH[/VARIANT]`` when its machine, class and byte order are ARCH's; for ``arm/vN`` its
``Tag_CPU_arch`` (when the file records one) must need at most ARMvN, so an ARMv7 (armhf) binary in a
``linux/arm/v6`` image, which a Raspberry Pi Zero or 1 cannot run, is caught. Arch-neutral ELF files (eBPF
objects, ``EM_NONE``) fit any platform. Windows platforms carry PE files and get no ELF expectation.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from polyarch.oci.spec import Descriptor
from polyarch.platform import Platform

from .elf import EM, ElfInfo, arm_arch_level
from .fs import ElfFile
from .report import Issue

__all__ = [
    "DEFAULT_IGNORE",
    "ElfExpectation",
    "check_config",
    "check_elf",
    "check_index_entries",
    "expectation",
    "ignored",
    "platform_key",
]

# Device firmware is built for other processors (GPUs, Wi-Fi chips), not for the image's platform.
DEFAULT_IGNORE = ("/lib/firmware/*", "/usr/lib/firmware/*")
NEUTRAL_MACHINES = frozenset({EM["NONE"], EM["BPF"]})

# architecture → (e_machine, bits, little-endian, ELF name people use)
_ARCHES: dict[str, tuple[int, int, bool, str]] = {
    "amd64": (EM["X86_64"], 64, True, "x86-64"),
    "386": (EM["386"], 32, True, "i386"),
    "arm64": (EM["AARCH64"], 64, True, "aarch64"),
    "arm64be": (EM["AARCH64"], 64, False, "aarch64_be"),
    "arm": (EM["ARM"], 32, True, "arm"),
    "armbe": (EM["ARM"], 32, False, "armeb"),
    "ppc64le": (EM["PPC64"], 64, True, "ppc64le"),
    "ppc64": (EM["PPC64"], 64, False, "ppc64"),
    "ppc": (EM["PPC"], 32, False, "ppc"),
    "s390x": (EM["S390"], 64, False, "s390x"),
    "s390": (EM["S390"], 32, False, "s390"),
    "riscv64": (EM["RISCV"], 64, True, "riscv64"),
    "riscv": (EM["RISCV"], 32, True, "riscv32"),
    "mips64le": (EM["MIPS"], 64, True, "mips64le"),
    "mips64": (EM["MIPS"], 64, False, "mips64"),
    "mipsle": (EM["MIPS"], 32, True, "mipsle"),
    "mips": (EM["MIPS"], 32, False, "mips"),
    "mips64p32le": (EM["MIPS"], 32, True, "mips n32"),
    "mips64p32": (EM["MIPS"], 32, False, "mips n32"),
    "loong64": (EM["LOONGARCH"], 64, True, "loongarch64"),
    "sparc64": (EM["SPARCV9"], 64, False, "sparc64"),
    "amd64p32": (EM["X86_64"], 32, True, "x32"),
}


@dataclass(frozen=True, slots=True)
class ElfExpectation:
    machine: int
    bits: int
    little: bool
    max_arm_level: int | None  # arm/vN: the highest ARM architecture level allowed
    label: str  # "arm64 (aarch64)", "arm/v6 (armv6)"

    def problem(self, info: ElfInfo) -> str | None:
        """None when ``info`` runs on the platform, else ``expected …, found …``."""
        if info.machine in NEUTRAL_MACHINES:
            return None
        same_abi = (info.machine, info.bits, info.little) == (self.machine, self.bits, self.little)
        arm_ok = self.max_arm_level is None or info.arm_arch is None or \
            arm_arch_level(info.arm_arch) <= self.max_arm_level
        if same_abi and arm_ok:
            return None
        return f"expected {self.label}, found {info.describe()}"


def expectation(platform: Platform) -> ElfExpectation | None:
    """What ELF files of ``platform`` look like; None when verify has no rule for it (windows, wasm, unknown)."""
    p = platform.normalized()
    if p.os == "windows" or p.architecture not in _ARCHES:
        return None
    machine, bits, little, elf_name = _ARCHES[p.architecture]
    level = None
    label = f"{p.architecture} ({elf_name})"
    if p.architecture in ("arm", "armbe"):
        try:
            level = int(p.variant.lstrip("v")) if p.variant else 7
        except ValueError:
            level = None
        if level is not None:
            label = f"{p.architecture}/v{level} (armv{level})"
    return ElfExpectation(machine, bits, little, level, label)


def platform_key(p: Platform) -> tuple[str, str, str]:
    n = p.normalized()
    return n.os, n.architecture, n.variant


def ignored(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, pat) for pat in patterns)


def check_elf(platform: str, want: ElfExpectation, f: ElfFile) -> Issue | None:
    problem = want.problem(f.info)
    if problem is None:
        return None
    return Issue(platform, "elf-mismatch", problem, path=f.path, expected=want.label, found=f.info.describe())


def check_config(entry: Descriptor, config_platform: Platform) -> Issue | None:
    """The config's os/architecture/variant must equal the index descriptor's (arm64 == arm64/v8)."""
    if entry.platform is None or entry.platform.same(config_platform):
        return None
    return Issue(str(entry.platform.normalized()), "config-mismatch",
                 f"image config says {config_platform}, the index says {entry.platform}",
                 expected=str(entry.platform.normalized()), found=str(config_platform.normalized()),
                 digest=str(entry.digest))


def _is_attestation(entry: Descriptor) -> bool:
    p = entry.platform
    return (p is not None and (p.os == "unknown" or p.architecture == "unknown")) or \
        entry.annotations.get("vnd.docker.reference.type") == "attestation-manifest"


def check_index_entries(entries: Sequence[Descriptor], *, selected: Sequence[Platform] = (),
                        required: Sequence[Platform] = ()) -> tuple[list[Descriptor], list[Issue]]:
    """The image entries to verify (attestations and platform-less entries set aside), and the index's issues:
    attestation entries, entries without a platform, duplicates, missing selected or required platforms."""
    issues: list[Issue] = []
    images: list[Descriptor] = []
    seen: dict[tuple[str, str, str], Descriptor] = {}
    for entry in entries:
        if _is_attestation(entry):
            where = str(entry.platform) if entry.platform is not None else "index"
            issues.append(Issue(where, "attestation-entry",
                                f"manifest {entry.digest} is listed as an index entry; attach attestations as "
                                "referrers (a manifest with a subject), not as platform entries",
                                digest=str(entry.digest)))
            continue
        if entry.platform is None:
            issues.append(Issue("index", "no-platform", f"entry {entry.digest} has no platform",
                                digest=str(entry.digest)))
            continue
        key = platform_key(entry.platform)
        if key in seen:
            issues.append(Issue(str(entry.platform.normalized()), "duplicate-platform",
                                f"listed twice ({seen[key].digest.short} and {entry.digest.short}); "
                                "clients pull the first", digest=str(entry.digest)))
            continue
        seen[key] = entry
        images.append(entry)
    for p in required:
        if platform_key(p) not in seen:
            issues.append(Issue(str(p.normalized()), "missing-platform", "required platform is not in the index",
                                expected=str(p.normalized())))
    if selected:
        wanted = {platform_key(p) for p in selected}
        for p in selected:
            if platform_key(p) not in seen and not any(platform_key(p) == platform_key(r) for r in required):
                issues.append(Issue(str(p.normalized()), "missing-platform", "platform is not in the index",
                                    expected=str(p.normalized())))
        images = [e for e in images if e.platform is not None and platform_key(e.platform) in wanted]
    return images, issues
