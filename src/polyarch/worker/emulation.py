"""Native or emulated: how a RUN step of a platform executes on this host, checked before any step runs.

API::

    check(platform, binfmt_dir=BINFMT_DIR) -> Emulation(platform, native, handler, problem)   # never raises
    ensure_runnable(platform, binfmt_dir=BINFMT_DIR) -> Emulation      # raises BuildError with the fix

Native when the host runs the platform (``platform.runs_natively``: amd64 runs 386, arm/v7 runs v6 …);
otherwise through a binfmt_misc handler for QEMU that has the F flag (usable inside the container rootfs) and
the P flag (argv[0] preserved, needed by busybox-style multi-call binaries). A missing or unfit handler is a
clear error naming the command that fixes it: ``polyarch binfmt --install ARCH`` (with ``sudo`` for a normal user
and in rootless mode: registering is root's one step; F handlers then work in any user namespace).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from polyarch import platform as plat
from polyarch.errors import BuildError, UsageError
from polyarch.platform import Platform

from . import binfmt
from .userns import in_user_namespace

__all__ = ["Emulation", "check", "ensure_runnable"]


@dataclass(frozen=True, slots=True)
class Emulation:
    platform: Platform
    native: bool
    handler: binfmt.Handler | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def check(platform: Platform, *, binfmt_dir: Path = binfmt.BINFMT_DIR) -> Emulation:
    p = platform.normalized()
    if plat.runs_natively(p):
        return Emulation(p, True)
    if p.os != "linux":
        return Emulation(p, False, problem=f"{p} cannot run on this host: only linux platforms are emulated")
    try:
        arch = binfmt.arch_for(p.architecture)
    except UsageError:
        return Emulation(p, False, problem=f"{p} cannot run on this host: polyarch knows no QEMU emulation for "
                                           f"{p.architecture}")
    sudo = "sudo " if os.geteuid() != 0 or in_user_namespace() else ""  # registering is root's (also rootless)
    fix = f"run '{sudo}polyarch binfmt --install {arch.arch}'"
    handler = binfmt.handler_for(arch, directory=binfmt_dir)
    if handler is None:
        return Emulation(p, False, problem=f"{p} needs QEMU: {fix}")
    missing = [f for f in "FP" if f not in handler.flags]
    if missing:
        why = {"F": "F (needed inside containers)", "P": "P (argv[0], needed by multi-call binaries)"}
        return Emulation(p, False, handler, f"{p} needs QEMU registered with flag "
                                            f"{' and '.join(why[f] for f in missing)}; binfmt entry "
                                            f"{handler.name} has flags {handler.flags or 'none'}: {fix}")
    if not handler.usable():
        return Emulation(p, False, handler, f"{p} needs QEMU: the interpreter {handler.interpreter} of binfmt "
                                            f"entry {handler.name} is missing: {fix}")
    rivals = [h.name for h in binfmt.duplicates(arch, directory=binfmt_dir) if h.enabled and h.name != handler.name and not h.usable()]
    if rivals:
        return Emulation(p, False, handler, f"{p} needs QEMU: binfmt entries {', '.join(rivals)} also match "
                                            f"{arch.arch} binaries and lack F or P (the newest wins): {fix}")
    return Emulation(p, False, handler)


def ensure_runnable(platform: Platform, *, binfmt_dir: Path = binfmt.BINFMT_DIR) -> Emulation:
    """:raises BuildError: the platform can run neither natively nor through a fit QEMU handler."""
    result = check(platform, binfmt_dir=binfmt_dir)
    if result.problem:
        raise BuildError(result.problem)
    return result
