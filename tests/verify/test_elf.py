"""ELF header reading and the forward-only ARM build-attributes probe, on real binaries and crafted bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch import platform as plat
from polyarch.verify.checks import expectation
from polyarch.verify.elf import (
    EM,
    ElfInfo,
    ElfProbe,
    arm_arch_level,
    parse_arm_attributes,
    parse_header,
)


def elf_header(machine: int, bits: int = 64, little: bool = True, flags: int = 0, shoff: int = 0,
               shnum: int = 0) -> bytes:
    end = "<" if little else ">"
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if little else 2, 1, 0]) + bytes(8)
    if bits == 32:
        rest = struct.pack(end + "HHIIIIIHHHHHH", 2, machine, 1, 0, 52, shoff, flags, 52, 32, 0, 40, shnum, 0)
    else:
        rest = struct.pack(end + "HHIQQQIHHHHHH", 2, machine, 1, 0, 64, shoff, flags, 64, 56, 0, 64, shnum, 0)
    return ident + rest


def arm_attributes(cpu_arch: int, little: bool = True, cpu_name: bytes = b"7-A") -> bytes:
    end = "<" if little else ">"
    attrs = b"\x05" + cpu_name + b"\x00" + b"\x06" + bytes([cpu_arch]) + b"\x08\x01\x09\x02"
    file_sub = b"\x01" + struct.pack(end + "I", 5 + len(attrs)) + attrs
    vendor = b"aeabi\x00"
    sub = struct.pack(end + "I", 4 + len(vendor) + len(file_sub)) + vendor + file_sub
    return b"A" + sub


def arm_elf(cpu_arch: int | None, *, little: bool = True, filler: int = 200_000, decoy: bool = False) -> bytes:
    """A 32-bit ARM ELF: header, filler, (decoy attributes), the real .ARM.attributes, a section table."""
    end = "<" if little else ">"
    body = bytearray(bytes(52))
    body += bytes(range(256)) * (filler // 256)
    if decoy:  # a signature inside "code" that no section header points at
        body += arm_attributes(5, little) + bytes(100)
    attr_offset = len(body)
    attrs = arm_attributes(cpu_arch, little) if cpu_arch is not None else b""
    body += attrs
    shoff = len(body)
    sections = [struct.pack(end + "IIIIIIIIII", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                struct.pack(end + "IIIIIIIIII", 1, 1, 6, 0x10000, 52, filler, 0, 0, 4, 0)]
    if cpu_arch is not None:
        sections.append(struct.pack(end + "IIIIIIIIII", 11, 0x70000003, 0, 0, attr_offset, len(attrs), 0, 0, 1, 0))
    body += b"".join(sections)
    body[:52] = elf_header(EM["ARM"], 32, little, 0x5000400, shoff, len(sections))
    return bytes(body)


def probe(data: bytes, chunk: int = 65536) -> ElfInfo:
    header = parse_header(data[:64])
    assert header is not None
    p = ElfProbe(header)
    for i in range(0, len(data), chunk):
        p.feed(data[i:i + chunk])
    return p.result()


def test_real_binaries(elves: dict[str, bytes]) -> None:
    got = {p: probe(data) for p, data in elves.items()}
    assert got["linux/amd64"].describe() == "x86-64"
    assert got["linux/arm64"].describe() == "aarch64"
    assert (got["linux/arm/v7"].machine, got["linux/arm/v7"].bits, got["linux/arm/v7"].arm_arch) == (40, 32, 10)
    for p, info in got.items():
        assert expectation(plat.parse(p)).problem(info) is None  # type: ignore[union-attr]
    assert expectation(plat.parse("linux/arm/v6")).problem(got["linux/arm/v7"]) == \
        "expected arm/v6 (armv6), found arm (Tag_CPU_arch v7)"


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1 << 20])
def test_arm_attributes_found_whatever_the_chunking(elves: dict[str, bytes], chunk: int) -> None:
    data = elves["linux/arm/v7"] if chunk >= 1000 else arm_elf(10, filler=5000)
    assert probe(data, chunk).arm_arch == 10


@pytest.mark.parametrize(("cpu_arch", "level"), [(3, 5), (5, 5), (6, 6), (7, 6), (9, 6), (10, 7), (14, 8), (22, 9)])
def test_arm_levels(cpu_arch: int, level: int) -> None:
    assert arm_arch_level(cpu_arch) == level
    assert probe(arm_elf(cpu_arch)).arm_arch == cpu_arch


def test_decoy_signature_is_not_believed() -> None:
    info = probe(arm_elf(10, decoy=True))
    assert info.arm_arch == 10  # the section header points at the real one, after the decoy (v5TEJ)


def test_no_attributes_section_means_unknown_arch() -> None:
    assert probe(arm_elf(None, decoy=True)).arm_arch is None


def test_big_endian_arm() -> None:
    info = probe(arm_elf(6, little=False))
    assert (info.little, info.arm_arch) == (False, 6)
    assert expectation(plat.parse("linux/arm/v7")).problem(info) == "expected arm/v7 (armv7), found armeb " \
        "(Tag_CPU_arch v6)"


@pytest.mark.parametrize(("platform", "machine", "bits", "little", "name"), [
    ("linux/amd64", 62, 64, True, "x86-64"),
    ("linux/386", 3, 32, True, "i386"),
    ("linux/arm64", 183, 64, True, "aarch64"),
    ("linux/ppc64le", 21, 64, True, "ppc64le"),
    ("linux/s390x", 22, 64, False, "s390x"),
    ("linux/riscv64", 243, 64, True, "riscv64"),
    ("linux/mips64le", 8, 64, True, "mips64le"),
    ("linux/loong64", 258, 64, True, "loongarch64"),
])
def test_platform_table(platform: str, machine: int, bits: int, little: bool, name: str) -> None:
    header = parse_header(elf_header(machine, bits, little))
    assert header is not None and (header.machine, header.bits, header.little) == (machine, bits, little)
    info = probe(elf_header(machine, bits, little) + bytes(100))
    assert info.describe() == name
    want = expectation(plat.parse(platform))
    assert want is not None and want.problem(info) is None
    # every other platform of the table rejects it
    for other in ("linux/amd64", "linux/386", "linux/arm64", "linux/ppc64le", "linux/s390x", "linux/riscv64",
                  "linux/mips64le", "linux/loong64", "linux/arm/v7"):
        if other != platform:
            assert expectation(plat.parse(other)).problem(info) is not None, other  # type: ignore[union-attr]


def test_byte_order_and_class_matter() -> None:
    want = expectation(plat.parse("linux/s390x"))
    assert want is not None
    assert want.problem(probe(elf_header(22, 64, little=True) + bytes(8))) == "expected s390x (s390x), found s390 64-bit LSB"
    amd64 = expectation(plat.parse("linux/amd64"))
    assert amd64 is not None and amd64.problem(probe(elf_header(62, 32) + bytes(20))) == \
        "expected amd64 (x86-64), found x32"


def test_arch_neutral_and_unknown() -> None:
    bpf = probe(elf_header(EM["BPF"], 64) + bytes(8))
    assert expectation(plat.parse("linux/arm64")).problem(bpf) is None  # type: ignore[union-attr]
    assert expectation(plat.parse("windows/amd64")) is None
    assert expectation(plat.parse("linux/wasm")) is None


@pytest.mark.parametrize("head", [b"", b"\x7fELF", b"\x7fELF" + bytes(60), b"\x7fELF\x03\x01" + bytes(58),
                                  b"#!/bin/sh\n" + bytes(60), b"\x7fELF\x02\x01" + bytes(40)])
def test_not_elf(head: bytes) -> None:
    assert parse_header(head) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_attribute_parser_never_crashes(data: bytes) -> None:
    for little in (True, False):
        parse_arm_attributes(b"A" + data, little)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=4000), st.integers(min_value=1, max_value=500))
def test_probe_never_crashes_on_garbage(tail: bytes, chunk: int) -> None:
    data = elf_header(EM["ARM"], 32, True, 0, shoff=60, shnum=3) + b"Aaeabi\x00" + tail
    probe(data, chunk)
