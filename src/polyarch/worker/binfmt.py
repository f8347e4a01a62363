"""binfmt_misc registration of qemu-user-static, the way RUN steps of foreign platforms need it.

API::

    ARCHES                                  # platform architecture → BinfmtArch (qemu name, ELF magic and mask)
    arch_for(platform_arch) -> BinfmtArch   # aliases accepted (aarch64, armhf, loongarch64 …)
    ensure_mounted()                        # mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    handlers() -> list[Handler]             # every registered entry, parsed
    handler_for(arch) -> Handler | None     # the entry the kernel would use for that architecture's ELF files
    install(arches) / uninstall(arches)     # -> list[str] of what was done
    status() -> dict                        # {"supported": [platforms], "emulators": [entry names]}

Each function that touches binfmt_misc takes ``directory=`` (default ``BINFMT_DIR``, /proc/sys/fs/binfmt_misc;
the CLI passes ``$POLYARCH_BINFMT_DIR`` when set).

Decisions:
- Entries are named like Debian's binfmt-support and tonistiigi/binfmt do, ``qemu-<qemu arch>``: one entry per
  magic, which other tools recognise. An existing entry of that name is kept when it already has the flags we
  need and its interpreter exists, and replaced otherwise (e.g. one registered without F or P).
- Flags ``POCF``: F (fix-binary: the kernel opens the interpreter at registration, so it works inside a runc
  rootfs that has no qemu), P (preserve argv[0]: without it busybox-style multi-call binaries break as soon as
  one applet runs another), O and C (credentials of setuid binaries, like tonistiigi/binfmt). With P the
  interpreter is Debian's ``/usr/libexec/qemu-binfmt/<arch>-binfmt-P`` wrapper when installed (qemu also
  detects P through AT_FLAGS on newer kernels), else ``qemu-<arch>-static``.
- The kernel tries the newest entry first and binfmt_misc does not tell the order, so when another enabled
  entry matches the same magic, ``install`` re-registers ours (making it the newest, so it wins), and
  ``emulation.check`` refuses an unfit rival it cannot rule out; ``duplicates`` lists them for ``doctor``.
- Architectures the host runs natively (its own, and 386 on amd64, arm on arm64) are never registered.
- Magic and mask values come from Debian's qemu-user-static definitions (/usr/share/binfmts/qemu-*), with
  x86_64 and i386 from qemu's scripts/qemu-binfmt-conf.sh (Debian does not ship those on amd64).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from polyarch import platform as plat
from polyarch.errors import PolyarchError, StoreError, UsageError

from . import linux

__all__ = [
    "ARCHES",
    "BINFMT_DIR",
    "FLAGS",
    "BinfmtArch",
    "Handler",
    "arch_for",
    "duplicates",
    "ensure_mounted",
    "handler_for",
    "handlers",
    "install",
    "interpreter_for",
    "parse_arches",
    "status",
    "uninstall",
]

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
FLAGS = "POCF"
_ELF64LE = "7f454c46020101000000000000000000"
_ELF32LE = "7f454c46010101000000000000000000"
_MASK_ARM = "ffffffffffffff00fffffffffffffffffeffffff"


@dataclass(frozen=True, slots=True)
class BinfmtArch:
    arch: str  # platform architecture (arm64)
    qemu: str  # qemu's name (aarch64)
    magic: bytes
    mask: bytes
    variant: str = ""

    @property
    def platform(self) -> plat.Platform:
        return plat.Platform("linux", self.arch, self.variant)

    @property
    def entry(self) -> str:
        return f"qemu-{self.qemu}"


def _a(arch: str, qemu: str, magic: str, mask: str, variant: str = "") -> BinfmtArch:
    return BinfmtArch(arch, qemu, bytes.fromhex(magic), bytes.fromhex(mask), variant)


ARCHES: dict[str, BinfmtArch] = {a.arch: a for a in (
    _a("amd64", "x86_64", _ELF64LE + "02003e00", "fffffffffffefe00fffffffffffffffffeffffff"),
    _a("386", "i386", _ELF32LE + "02000300", "fffffffffffefe00fffffffffffffffffeffffff"),
    _a("arm64", "aarch64", _ELF64LE + "0200b700", _MASK_ARM),
    _a("arm", "arm", _ELF32LE + "02002800", _MASK_ARM, "v7"),
    _a("ppc64le", "ppc64le", _ELF64LE + "02001500", "fffffffffffffffcfffffffffffffffffeffff00"),
    _a("s390x", "s390x", "7f454c46020201000000000000000000" + "00020016", "fffffffffffffffcffffffffffffffffff" + "feffff"),
    _a("riscv64", "riscv64", _ELF64LE + "0200f300", _MASK_ARM),
    _a("mips64le", "mips64el", _ELF64LE + "02000800", "ffffffffffffff00fefffffffffffffffeffffff"),
    _a("loong64", "loongarch64", _ELF64LE + "02000201", "fffffffffffffffc00fffffffffffffffeffffff"),
)}


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    enabled: bool
    interpreter: str
    flags: str
    offset: int
    magic: bytes
    mask: bytes

    def matches(self, arch: BinfmtArch) -> bool:
        """Would the kernel pick this entry for an ELF file of ``arch``?"""
        if self.offset != 0 or not self.magic or len(self.magic) > len(arch.magic):
            return False
        mask = self.mask or b"\xff" * len(self.magic)
        return all((arch.magic[i] & mask[i]) == (self.magic[i] & mask[i]) for i in range(len(self.magic)))

    def usable(self) -> bool:
        """Enabled, with F and P, and an interpreter file that exists."""
        return self.enabled and "F" in self.flags and "P" in self.flags and os.path.exists(self.interpreter)


def arch_for(name: str) -> BinfmtArch:
    """The binfmt definition for an architecture name (platform or qemu spelling).

    :raises UsageError: an architecture polyarch has no definition for.
    """
    key = name.strip().lower()
    for a in ARCHES.values():
        if key == a.qemu:
            return a
    arch, _ = plat.normalize_arch(key)
    if arch not in ARCHES:
        raise UsageError(f"unknown architecture {name!r} for binfmt",
                         hint="choose from " + ", ".join(sorted(ARCHES)) + " or all")
    return ARCHES[arch]


def _native(a: BinfmtArch) -> bool:
    return plat.runs_natively(a.platform)


def parse_arches(spec: str) -> list[BinfmtArch]:
    """``all`` or a comma-separated list; ``all`` leaves out what the host runs natively."""
    if spec.strip() == "all":
        return [a for a in ARCHES.values() if not _native(a)]
    out: list[BinfmtArch] = []
    for part in spec.split(","):
        if part.strip():
            a = arch_for(part)
            if a not in out:
                out.append(a)
    if not out:
        raise UsageError("no architecture given", hint="e.g. --install arm64,arm or --install all")
    return out


def interpreter_for(a: BinfmtArch) -> str | None:
    wrapper = Path(f"/usr/libexec/qemu-binfmt/{a.qemu}-binfmt-P")
    if wrapper.exists():
        return os.fspath(wrapper)
    for candidate in (f"/usr/bin/qemu-{a.qemu}-static", shutil.which(f"qemu-{a.qemu}-static"),
                      shutil.which(f"qemu-{a.qemu}")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def ensure_mounted(directory: Path = BINFMT_DIR) -> None:
    """Mount binfmt_misc at its usual place when it is not mounted yet.

    :raises StoreError: it cannot be mounted (not root, or no kernel support).
    """
    if (directory / "register").exists():
        return
    try:
        linux.mount("binfmt_misc", directory, "binfmt_misc")
    except PolyarchError as exc:
        raise StoreError(f"binfmt_misc is not mounted and cannot be mounted: {exc}",
                         hint="run as root: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc") from exc


def _parse(name: str, text: str) -> Handler:
    fields: dict[str, str] = {}
    enabled = False
    for line in text.splitlines():
        if line == "enabled":
            enabled = True
        elif line.startswith("flags:"):
            fields["flags"] = line.partition(":")[2].strip()
        elif " " in line:
            key, _, value = line.partition(" ")
            fields[key] = value.strip()

    def hexbytes(key: str) -> bytes:
        try:
            return bytes.fromhex(fields.get(key, ""))
        except ValueError:
            return b""

    offset = fields.get("offset", "0")
    return Handler(name, enabled, fields.get("interpreter", ""), fields.get("flags", ""),
                   int(offset) if offset.isdigit() else -1, hexbytes("magic"), hexbytes("mask"))


def handlers(directory: Path = BINFMT_DIR) -> list[Handler]:
    """All registered entries (empty when binfmt_misc is not mounted)."""
    out: list[Handler] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return out
    for name in names:
        if name in ("register", "status"):
            continue
        try:
            out.append(_parse(name, (directory / name).read_text()))
        except OSError:
            continue
    return out


def handler_for(a: BinfmtArch, entries: list[Handler] | None = None, *,
                directory: Path = BINFMT_DIR) -> Handler | None:
    """The enabled entry the kernel would use (ours by name first, then any matching one) among ``entries``
    (default: those registered in ``directory``)."""
    entries = handlers(directory) if entries is None else entries
    matching = [h for h in entries if h.enabled and h.matches(a)]
    for h in matching:
        if h.name == a.entry:
            return h
    return matching[0] if matching else None


def duplicates(a: BinfmtArch, entries: list[Handler] | None = None, *,
               directory: Path = BINFMT_DIR) -> list[Handler]:
    entries = handlers(directory) if entries is None else entries
    return [h for h in entries if h.matches(a) and h.name != a.entry]


def _write(path: Path, data: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(data)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}",
                         hint="binfmt registration needs root") from exc


def _escape(data: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in data)


def install(arches: list[BinfmtArch], directory: Path = BINFMT_DIR) -> list[str]:
    """Register (or re-register) qemu for ``arches``; returns one line per architecture."""
    ensure_mounted(directory)
    report: list[str] = []
    current = {h.name: h for h in handlers(directory)}
    for a in arches:
        if _native(a):
            report.append(f"{a.arch}: native on this host, not registered")
            continue
        interp = interpreter_for(a)
        if interp is None:
            raise StoreError(f"no QEMU interpreter for {a.arch} (qemu-{a.qemu}-static)",
                             hint="apt-get install qemu-user-static")
        existing = current.get(a.entry)
        rivals = [h for h in current.values() if h.enabled and h.matches(a) and h.name != a.entry]
        if existing is not None:
            if existing.usable() and set(FLAGS) <= set(existing.flags) and existing.matches(a) and not rivals:
                report.append(f"{a.arch}: {a.entry} already registered ({existing.flags})")
                continue
            _write(directory / a.entry, "-1")
        _write(directory / "register", f":{a.entry}:M:0:{_escape(a.magic)}:{_escape(a.mask)}:{interp}:{FLAGS}")
        verb = "replaced" if existing is not None else "registered"
        report.append(f"{a.arch}: {verb} {a.entry} -> {interp} ({FLAGS})")
    return report


def uninstall(arches: list[BinfmtArch], directory: Path = BINFMT_DIR) -> list[str]:
    report = []
    for a in arches:
        if (directory / a.entry).exists():
            _write(directory / a.entry, "-1")
            report.append(f"{a.arch}: removed {a.entry}")
        else:
            report.append(f"{a.arch}: {a.entry} was not registered")
    return report


def status(directory: Path = BINFMT_DIR) -> dict[str, list[str]]:
    """tonistiigi/binfmt's answer: platforms this host can run (natively or emulated) and emulator entries."""
    entries = handlers(directory)
    supported = [str(p) for p in plat.host_compatible()]
    emulators: list[str] = []
    for a in ARCHES.values():
        if _native(a):
            continue
        h = handler_for(a, entries)
        if h is not None and h.usable():
            emulators.append(h.name)
            extra = [str(plat.Platform("linux", a.arch, v)) for v in ("v7", "v6")] if a.arch == "arm" \
                else [str(a.platform)]
            supported += [p for p in extra if p not in supported]
    return {"supported": supported, "emulators": sorted(set(emulators))}
