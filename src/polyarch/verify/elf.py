"""A small struct reader of ELF headers, and a forward-only probe for the ARM build attributes.

``parse_header`` reads class, byte order, type, machine and flags from the first 64 bytes. For 32-bit ARM files
the CPU architecture (v5/v6/v7/v8) is only recorded in the ``.ARM.attributes`` section (``Tag_CPU_arch``), which
is not loaded and sits near the end of the file, just before the section header table that says where it is.
Reading a layer as a tar stream we can only go forward, so ``ElfProbe`` is fed the file's bytes in order and

* scans them for the attributes' signature (``'A'`` + length + ``"aeabi\\0"``), parsing every candidate it sees
  (at most ``MAX_CANDIDATES``, each from a window of at most 1 KiB, keyed by file offset);
* captures the section header table when the stream passes ``e_shoff`` (at most 1 MiB);
* at the end, takes the ``SHT_ARM_ATTRIBUTES`` section's offset from the table and keeps the candidate parsed
  at exactly that offset. A false signature match elsewhere in the file is therefore never believed.

Memory per file is bounded (about 1 MiB + 2 KiB) whatever the file size, and no file is ever buffered whole;
the price is that the whole of a 32-bit ARM file passes through ``bytes.find`` (C speed, far below the cost of
decompressing it). Files without a section header table (``sstrip``) or whose table lies past the end give
``arm_arch = None``: only the header-based checks apply to them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "ARM_ARCH_NAMES",
    "EM",
    "HEADER_SIZE",
    "ElfHeader",
    "ElfInfo",
    "ElfProbe",
    "arm_arch_level",
    "machine_name",
    "parse_arm_attributes",
    "parse_header",
]

HEADER_SIZE = 64
MAGIC = b"\x7fELF"
SHT_ARM_ATTRIBUTES = 0x70000003
MAX_CANDIDATES = 64
MAX_SECTION_TABLE = 1 << 20
_WINDOW = 1024
_SIGNATURE = b"aeabi\x00"

# e_machine values this module names (the ones Linux images are built for, plus BPF which is arch-neutral).
EM = {
    "NONE": 0, "SPARC": 2, "386": 3, "68K": 4, "MIPS": 8, "PARISC": 15, "PPC": 20, "PPC64": 21, "S390": 22,
    "ARM": 40, "SH": 42, "SPARCV9": 43, "IA_64": 50, "X86_64": 62, "AARCH64": 183, "BPF": 247, "RISCV": 243,
    "LOONGARCH": 258,
}
_EM_NAMES = {
    0: "no machine", 2: "sparc", 3: "i386", 4: "m68k", 8: "mips", 15: "parisc", 20: "ppc", 21: "ppc64",
    22: "s390", 40: "arm", 42: "superh", 43: "sparc64", 50: "ia64", 62: "x86-64", 183: "aarch64", 247: "bpf",
    243: "riscv", 258: "loongarch",
}
# Tag_CPU_arch values (ARM IHI 0045, "Addenda to the ARM ABI"), as readelf prints them.
ARM_ARCH_NAMES = {
    0: "pre-v4", 1: "v4", 2: "v4T", 3: "v5T", 4: "v5TE", 5: "v5TEJ", 6: "v6", 7: "v6KZ", 8: "v6T2", 9: "v6K",
    10: "v7", 11: "v6-M", 12: "v6S-M", 13: "v7E-M", 14: "v8-A", 15: "v8-R", 16: "v8-M.baseline",
    17: "v8-M.mainline", 18: "v8.1-A", 19: "v8.2-A", 20: "v8.3-A", 21: "v8.1-M.mainline", 22: "v9-A",
}


def arm_arch_level(tag_cpu_arch: int) -> int:
    """The Docker ``arm/vN`` level a Tag_CPU_arch needs: 5 for ≤ v5TEJ, 6 for the v6 family, 7, 8 or 9."""
    if tag_cpu_arch <= 5:
        return 5
    if tag_cpu_arch in (6, 7, 8, 9, 11, 12):
        return 6
    if tag_cpu_arch in (10, 13):
        return 7
    if tag_cpu_arch == 22:
        return 9
    return 8


def machine_name(machine: int) -> str:
    return _EM_NAMES.get(machine, f"e_machine {machine}")


@dataclass(frozen=True, slots=True)
class ElfHeader:
    bits: int  # 32 or 64
    little: bool
    type: int
    machine: int
    flags: int
    shoff: int
    shentsize: int
    shnum: int


def parse_header(head: bytes) -> ElfHeader | None:
    """The ELF header in ``head`` (the file's first bytes), or None when it is not a well-formed ELF header."""
    if len(head) < 52 or not head.startswith(MAGIC):
        return None
    cls, data = head[4], head[5]
    if cls not in (1, 2) or data not in (1, 2):
        return None
    end = "<" if data == 1 else ">"
    if cls == 1:
        e_type, machine, _v, _entry, _phoff, shoff, flags, _eh, _phes, _phn, shes, shn, _shs = struct.unpack_from(
            end + "HHIIIIIHHHHHH", head, 16)
    else:
        if len(head) < 64:
            return None
        e_type, machine, _v, _entry, _phoff, shoff, flags, _eh, _phes, _phn, shes, shn, _shs = struct.unpack_from(
            end + "HHIQQQIHHHHHH", head, 16)
    return ElfHeader(32 if cls == 1 else 64, data == 1, e_type, machine, flags, shoff, shes, shn)


@dataclass(frozen=True, slots=True)
class ElfInfo:
    """What verify knows of one ELF file: machine, class, byte order, flags and (32-bit ARM) Tag_CPU_arch."""

    machine: int
    bits: int
    little: bool
    flags: int = 0
    arm_arch: int | None = None

    def describe(self) -> str:
        """``x86-64``, ``aarch64``, ``armv7``, ``i386``, ``ppc64le``, ``s390x``… as a person names it."""
        m, b, le = self.machine, self.bits, self.little
        if m == 62:
            return "x86-64" if b == 64 and le else ("x32" if le else "x86-64 big-endian")
        if m == 183:
            return "aarch64" if b == 64 and le else ("aarch64 big-endian" if b == 64 else "aarch64 ilp32")
        if m == 40:
            base = "arm" if le else "armeb"
            if b != 32:
                return base + " 64-bit"
            if self.arm_arch is not None:
                return f"{base} (Tag_CPU_arch {ARM_ARCH_NAMES.get(self.arm_arch, str(self.arm_arch))})"
            return base
        if m == 3:
            return "i386"
        simple = {(21, 64, True): "ppc64le", (21, 64, False): "ppc64", (20, 32, False): "ppc",
                  (22, 64, False): "s390x", (22, 32, False): "s390", (243, 64, True): "riscv64",
                  (243, 32, True): "riscv32", (8, 64, True): "mips64le", (8, 64, False): "mips64",
                  (8, 32, True): "mipsle", (8, 32, False): "mips", (258, 64, True): "loongarch64",
                  (43, 64, False): "sparc64"}
        name = simple.get((m, b, le))
        if name:
            return name
        return f"{machine_name(m)} {b}-bit {'LSB' if le else 'MSB'}"


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            break
    raise ValueError("truncated ULEB128")


def _skip_ntbs(data: bytes, pos: int) -> int:
    end = data.find(b"\x00", pos)
    if end < 0:
        raise ValueError("unterminated string")
    return end + 1


def _cpu_arch_in(attrs: bytes) -> int | None:
    pos = 0
    while pos < len(attrs):
        tag, pos = _uleb(attrs, pos)
        if tag == 6:
            return _uleb(attrs, pos)[0]
        if tag in (4, 5, 67) or (tag > 32 and tag % 2 == 1):
            pos = _skip_ntbs(attrs, pos)
        elif tag == 32:
            _flag, pos = _uleb(attrs, pos)
            pos = _skip_ntbs(attrs, pos)
        else:
            pos = _uleb(attrs, pos)[1]
    return None


def parse_arm_attributes(data: bytes, little: bool) -> int | None:
    """Tag_CPU_arch of the file-scope ``aeabi`` attributes in a ``.ARM.attributes`` section's bytes, or None."""
    if not data or data[0] != 0x41:
        return None
    u32 = "<I" if little else ">I"
    pos = 1
    try:
        while pos + 4 <= len(data):
            sublen = struct.unpack_from(u32, data, pos)[0]
            if sublen < 5:
                return None
            end = min(pos + sublen, len(data))
            name_end = data.find(b"\x00", pos + 4, end)
            if name_end < 0:
                return None
            if data[pos + 4:name_end] == b"aeabi":
                p = name_end + 1
                while p + 5 <= end:
                    tag, size = data[p], struct.unpack_from(u32, data, p + 1)[0]
                    if size < 5:
                        return None
                    if tag == 1:  # Tag_File: attributes of the whole file
                        return _cpu_arch_in(data[p + 5:min(p + size, end)])
                    p += size
            pos += sublen
    except (ValueError, struct.error):
        return None
    return None


class ElfProbe:
    """Fed an ELF file's bytes in order (``feed``), tells what the file is (``result``); bounded memory."""

    def __init__(self, header: ElfHeader) -> None:
        self.header = header
        self._pos = 0
        self._arm = header.machine == EM["ARM"] and header.bits == 32
        table = header.shentsize * header.shnum
        self._want_table = (self._arm and header.shoff > 0 and header.shentsize == 40 and 0 < table
                            <= MAX_SECTION_TABLE)
        self._table = bytearray()
        self._table_end = header.shoff + table
        self._tail = b""  # bytes kept from earlier chunks for signatures that straddle a boundary
        self._tail_pos = 0
        self._scan_from = 0  # file offset from which the signature has not been searched yet
        self._candidates: dict[int, int | None] = {}

    @property
    def needs_more(self) -> bool:
        """Whether more bytes can change the result (only 32-bit ARM files need more than the header)."""
        return self._arm

    def feed(self, data: bytes) -> None:
        if not self._arm or not data:
            self._pos += len(data)
            return
        start = self._pos
        self._pos += len(data)
        if self._want_table and start < self._table_end and self._pos > self.header.shoff:
            lo = max(self.header.shoff, start) - start
            hi = min(self._table_end, self._pos) - start
            self._table += data[lo:hi]
        self._scan(start, data, final=False)

    def _scan(self, start: int, data: bytes, *, final: bool) -> None:
        buf = self._tail + data
        base = self._tail_pos if self._tail else start
        i = max(self._scan_from - base, 0)
        keep_from = max(len(buf) - (_WINDOW + len(_SIGNATURE) + 5), 0)
        while len(self._candidates) < MAX_CANDIDATES:
            j = buf.find(_SIGNATURE, i)
            if j < 0:
                break
            s = j - 5
            if s < 0 or buf[s] != 0x41:
                i = j + 1
                continue
            if len(buf) - s < _WINDOW and not final:
                keep_from = min(keep_from, s)
                break
            self._candidates[base + s] = parse_arm_attributes(buf[s:s + _WINDOW], self.header.little)
            i = j + 1
        self._scan_from = base + max(i, keep_from)
        self._tail = buf[keep_from:]
        self._tail_pos = base + keep_from

    def result(self) -> ElfInfo:
        h = self.header
        arm_arch = None
        if self._arm:
            self._scan(self._pos, b"", final=True)
            arm_arch = self._arm_arch_from_table()
        return ElfInfo(h.machine, h.bits, h.little, h.flags, arm_arch)

    def _arm_arch_from_table(self) -> int | None:
        table = bytes(self._table)
        if not self._want_table or len(table) != self.header.shentsize * self.header.shnum:
            return None
        fmt = "<IIIIII" if self.header.little else ">IIIIII"
        for k in range(self.header.shnum):
            _name, sh_type, _flags, _addr, offset, _size = struct.unpack_from(fmt, table, k * 40)
            if sh_type == SHT_ARM_ATTRIBUTES:
                return self._candidates.get(offset)
        return None
