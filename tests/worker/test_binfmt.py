"""binfmt definitions, handler parsing, emulation decisions, and registration against the real kernel."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from polyarch import platform as plat
from polyarch.errors import BuildError, UsageError
from polyarch.worker import binfmt, emulation
from tests.conftest import run_cli
from tests.worker.conftest import is_root


def _debian(path: Path) -> dict[str, bytes]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key in ("magic", "mask"):
            out[key] = value.encode().decode("unicode_escape").encode("latin-1")
    return out


def test_magic_matches_debian() -> None:
    """Every architecture Debian ships a definition for (all but the host's own) has the same magic and mask."""
    compared = []
    for arch, a in sorted(binfmt.ARCHES.items()):
        path = Path(f"/usr/share/binfmts/qemu-{a.qemu}")
        if not path.exists():
            continue  # qemu-user-static ships no handler for the host's own architecture
        deb = _debian(path)
        assert (a.magic, a.mask) == (deb["magic"], deb["mask"]), arch
        compared.append(arch)
    assert len(compared) >= len(binfmt.ARCHES) - 2, compared


def test_each_magic_matches_only_its_arch() -> None:
    for a in binfmt.ARCHES.values():
        h = binfmt.Handler(a.entry, True, "/x", "F", 0, bytes(m & k for m, k in zip(a.magic, a.mask, strict=True)),
                           a.mask)
        assert [b.arch for b in binfmt.ARCHES.values() if h.matches(b)] == [a.arch]


def test_arch_names() -> None:
    assert binfmt.arch_for("aarch64").arch == "arm64"
    assert binfmt.arch_for("loongarch64").arch == "loong64"
    assert binfmt.arch_for("armhf").arch == "arm"
    with pytest.raises(UsageError):
        binfmt.arch_for("vax")
    assert all(not plat.runs_natively(a.platform) for a in binfmt.parse_arches("all"))
    assert [a.arch for a in binfmt.parse_arches("arm64,arm,arm64")] == ["arm64", "arm"]


def test_parse_handler_and_emulation_errors(tmp_path: Path) -> None:
    """Parsing of what binfmt_misc shows, on a copy of its format in another directory (no kernel state changed)."""
    (tmp_path / "register").write_text("")
    foreign = next(a for a in binfmt.ARCHES.values() if not plat.runs_natively(a.platform))
    with pytest.raises(BuildError) as info:
        emulation.ensure_runnable(foreign.platform, binfmt_dir=tmp_path)
    assert str(info.value) == f"{foreign.platform} needs QEMU: run 'polyarch binfmt --install {foreign.arch}'"
    interp = tmp_path / "qemu"
    interp.write_text("")
    (tmp_path / foreign.entry).write_text(
        f"enabled\ninterpreter {interp}\nflags: OC\noffset 0\nmagic {foreign.magic.hex()}\nmask {foreign.mask.hex()}\n")
    h = binfmt.handler_for(foreign, directory=tmp_path)
    assert h is not None and h.flags == "OC" and not h.usable()
    assert binfmt.handler_for(foreign, directory=tmp_path / "elsewhere") is None
    problem = emulation.check(foreign.platform, binfmt_dir=tmp_path).problem
    assert "flag F" in problem and "and P" in problem and f"--install {foreign.arch}" in problem
    (tmp_path / foreign.entry).write_text((tmp_path / foreign.entry).read_text().replace("flags: OC", "flags: POCF"))
    assert emulation.check(foreign.platform, binfmt_dir=tmp_path).ok
    (tmp_path / "rival").write_text(
        f"enabled\ninterpreter {interp}\nflags: \noffset 0\nmagic {foreign.magic.hex()}\nmask {foreign.mask.hex()}\n")
    assert "rival" in emulation.check(foreign.platform, binfmt_dir=tmp_path).problem
    assert emulation.check(plat.host()).native


needs_binfmt_root = pytest.mark.skipif(not is_root() or not os.path.exists("/usr/bin/qemu-aarch64-static"),
                                       reason="needs root and qemu-user-static")


@pytest.mark.root
@pytest.mark.binfmt
@needs_binfmt_root
def test_install_replaces_entry_without_f_and_p() -> None:
    a = binfmt.ARCHES["arm64"] if not plat.runs_natively(binfmt.ARCHES["arm64"].platform) else binfmt.ARCHES["amd64"]
    binfmt.ensure_mounted()
    entry = binfmt.BINFMT_DIR / a.entry
    try:
        if entry.exists():
            entry.write_text("-1")
        # what binfmt-support registers when a package asks for no fix-binary/preserve
        esc = "".join(f"\\x{b:02x}" for b in a.magic)
        mask = "".join(f"\\x{b:02x}" for b in a.mask)
        (binfmt.BINFMT_DIR / "register").write_text(f":{a.entry}:M:0:{esc}:{mask}:{binfmt.interpreter_for(a)}:")
        assert not emulation.check(a.platform).ok
        doctor = run_cli("doctor", "--format", "json", check=False)
        assert doctor.returncode == 1
        assert any(c["name"] == f"binfmt {a.arch}" and c["status"] == "fail" and c["fix"]
                   for c in json.loads(doctor.stdout)["checks"])
        assert "replaced" in binfmt.install([a])[0]
        assert emulation.check(a.platform).ok
        assert "already registered" in binfmt.install([a])[0]
    finally:
        binfmt.install([a])


@pytest.mark.root
@pytest.mark.binfmt
@needs_binfmt_root
def test_cli_binfmt_and_doctor() -> None:
    proc = run_cli("binfmt", "--install", "all")
    status = json.loads(proc.stdout)
    assert "linux/arm64" in status["supported"] and "linux/arm/v7" in status["supported"]
    assert "qemu-aarch64" in status["emulators"]
    assert run_cli("doctor").returncode == 0
    bad = run_cli("doctor", "--platform", "linux/sparc64", check=False)
    assert bad.returncode == 1 and "FAIL" in bad.stdout
    wrong = run_cli("binfmt", "--install", "vax", check=False)
    assert wrong.returncode == 2 and "unknown architecture 'vax'" in wrong.stderr
