"""``polyarch doctor``: can this host build? Mode (root or rootless), runtime, overlayfs, binfmt handlers,
platforms, store.

The ``mode`` check says how RUN steps run: as root (under ``sudo`` also whose store and credentials are used), or
rootless (``worker/userns.py``: the user's subordinate ranges, ``newuidmap``/``newgidmap``, user namespaces
allowed, ``/dev/net/tun`` usable by the user for slirp4netns/pasta). When rootless mode has everything, doctor
enters the user namespace itself, so the overlayfs check is the real one a build would meet.

Each check prints ``ok``, ``warn`` or ``FAIL`` with what was found and, when something is missing, the command
that fixes it. Exit 0 when everything needed is fine (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from polyarch.cli.context import AppContext, pass_app
from polyarch.cli.environment import Environment

__all__ = ["Check", "doctor", "run_checks"]

MIN_FREE = 2 << 30
DEFAULT_PLATFORMS = "linux/amd64,linux/arm64,linux/arm/v7"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def _runtime(env: Environment) -> Check:
    from polyarch.errors import PolyarchError
    from polyarch.worker.runc import runtime_binary, runtime_version

    try:
        binary = runtime_binary(env.runtime)
        return Check("runtime", "ok", f"{runtime_version(binary)} ({binary})")
    except PolyarchError as exc:
        return Check("runtime", "fail", exc.message, exc.hint or "apt-get install runc")


def _run_network(env: Environment) -> Check:
    from polyarch.worker.network import helper_name

    name = helper_name(env.net_helper)
    if name is None:
        return Check("run network", "warn", "no slirp4netns or pasta: RUN steps need --network none",
                     "apt-get install slirp4netns")
    return Check("run network", "ok", f"own namespace per RUN through {name}")


def _mode(env: Environment, root: Path) -> list[Check]:
    """Root or rootless, and what rootless mode lacks (each with its fix)."""
    if env.is_root():
        if env.sudo_user:
            return [Check("mode", "ok", f"root under sudo: store {root}, credentials {env.credentials().path} "
                          f"(not {env.sudo_user}'s)", f"run without sudo for rootless mode as {env.sudo_user}")]
        return [Check("mode", "ok", f"root: store {root}, credentials {env.credentials().path}")]
    from polyarch.worker import userns

    lacking = userns.missing()
    checks = [Check("mode", "fail", f"rootless: {m.what}", m.fix) for m in lacking]
    if not lacking:
        plan = userns.rootless_plan()
        last = plan.uids.start + plan.uids.count - 1
        checks.append(Check("mode", "ok", f"rootless: a user namespace per build (uid 0 = {plan.user}, 1-"
                            f"{plan.uids.count} = {plan.uids.start}-{last}); store {root}, credentials "
                            f"{env.credentials().path}"))
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        checks.append(Check("run network", "warn", "/dev/net/tun is not usable by this user: RUN steps need "
                            "--network none", "sudo chmod 0666 /dev/net/tun"))
    return checks


def _enter_rootless(checks: list[Check]) -> None:
    """Enter the user namespace a build would use (only when the mode checks found nothing missing)."""
    from polyarch.errors import PolyarchError
    from polyarch.worker.userns import enter, rootless_plan

    try:
        enter(rootless_plan())
    except PolyarchError as exc:
        checks.append(Check("mode", "fail", exc.message, exc.hint or ""))


def _store(root: Path) -> list[Check]:
    checks = []
    try:
        root.mkdir(parents=True, exist_ok=True)
        writable = os.access(root, os.W_OK)
        free = shutil.disk_usage(root).free
    except OSError as exc:
        return [Check("store", "fail", f"{root}: {exc.strerror}", "set POLYARCH_ROOT to a writable directory")]
    if not writable:
        checks.append(Check("store", "fail", f"{root} is not writable", "set POLYARCH_ROOT or run as root"))
    else:
        checks.append(Check("store", "ok", f"{root}"))
    gib = free / (1 << 30)
    if free < MIN_FREE:
        checks.append(Check("free space", "fail", f"{gib:.1f} GiB free under {root}", "polyarch prune, or free disk"))
    else:
        checks.append(Check("free space", "ok", f"{gib:.1f} GiB free"))
    return checks


def _snapshotter(root: Path, env: Environment) -> Check:
    from polyarch.worker.overlay import backend
    from polyarch.worker.snapshot import overlay_usable

    forced = env.snapshotter
    where = "" if env.is_root() else " in the user namespace"
    if overlay_usable(root):
        note = " (POLYARCH_SNAPSHOTTER=copy forces the copying snapshotter)" if forced == "copy" else ""
        how = " through fuse-overlayfs (the kernel's refused)" if backend() == "fuse" else ""
        return Check("overlayfs", "ok", f"overlayfs can be mounted{where}{how}; layers are stacked without copies"
                     + note)
    fix = "run as root on a filesystem that is not itself overlayfs (e.g. ext4, xfs)" if env.is_root() else \
        "sudo apt-get install fuse-overlayfs (and /dev/fuse open to users: sudo chmod 0666 /dev/fuse), or " \
        "Linux 5.11 or later with the store on ext4 or xfs"
    return Check("overlayfs", "warn", f"overlayfs cannot be mounted{where}: the copying snapshotter is used "
                 "(slower, more disk)", fix)


def _binfmt(wanted: list[str], binfmt_dir: Path, sudo: str = "") -> list[Check]:
    """``sudo``: the prefix of root's commands in fixes (``"sudo "`` in rootless mode: registering is root's)."""
    from polyarch import platform as plat
    from polyarch.worker import binfmt, emulation

    checks = []
    mounted = (binfmt_dir / "register").exists()
    if not mounted:
        checks.append(Check("binfmt_misc", "warn", f"not mounted at {binfmt_dir}",
                            f"{sudo}polyarch binfmt --install all (mounts it)"))
    entries = binfmt.handlers(binfmt_dir)
    for a in binfmt.ARCHES.values():
        if plat.runs_natively(a.platform):
            continue
        h = binfmt.handler_for(a, entries)
        dups = [d.name for d in binfmt.duplicates(a, entries) if h is None or d.name != h.name]
        extra = f"; also matched by {', '.join(dups)} (the newest registration wins)" if dups else ""
        if h is None:
            continue
        if h.usable():
            checks.append(Check(f"binfmt {a.arch}", "ok", f"{h.name} -> {h.interpreter} flags {h.flags}{extra}"))
        else:
            checks.append(Check(f"binfmt {a.arch}", "fail", f"{h.name} -> {h.interpreter} flags "
                                f"{h.flags or 'none'}: needs F and P and an existing interpreter{extra}",
                                f"{sudo}polyarch binfmt --install {a.arch}"))
    native = [str(p) for p in plat.host_compatible()]
    checks.append(Check("native platforms", "ok", ", ".join(native)))
    for spec in wanted:
        p = plat.parse(spec)
        result = emulation.check(p, binfmt_dir=binfmt_dir)
        if result.native:
            continue
        if result.ok:
            checks.append(Check(f"platform {p}", "ok", f"emulated by {result.handler.name if result.handler else '?'}"))
        else:
            fix = result.problem.split(": run ", 1)[1].strip("'") if ": run " in result.problem else ""
            fix = sudo + fix if fix.startswith("polyarch ") else fix
            checks.append(Check(f"platform {p}", "fail", result.problem.split(": run ")[0], fix))
    return checks


def run_checks(root: Path, platforms: list[str], env: Environment) -> list[Check]:
    checks = [*_mode(env, root), _runtime(env), _run_network(env), *_store(root)]
    if not env.is_root() and os.geteuid() != 0 and not any(c.status == "fail" for c in checks):
        _enter_rootless(checks)
    if os.geteuid() == 0:
        checks.append(_snapshotter(root, env))
    checks += _binfmt(platforms, env.binfmt_dir, "" if env.is_root() else "sudo ")
    return checks


@click.command("doctor")
@click.option("--platform", "platforms", default=DEFAULT_PLATFORMS, show_default=True,
              help="Platforms that must be runnable (natively or emulated).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_app
def doctor(app: AppContext, platforms: str, fmt: str) -> None:
    """Check the host: mode (root or rootless), runtime, overlayfs, binfmt handlers, platforms, store."""
    wanted = [p.strip() for p in platforms.split(",") if p.strip()]
    checks = run_checks(app.store_root, wanted, app.env)
    failed = any(c.status == "fail" for c in checks)
    if fmt == "json":
        click.echo(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        for c in checks:
            label = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[c.status]
            click.echo(f"{label}  {c.name}: {c.detail}")
            if c.fix and c.status != "ok":
                click.echo(f"      fix: {c.fix}")
        click.echo("everything needed is in place" if not failed else "some checks failed", err=True)
    if failed:
        raise SystemExit(1)  # click returns (not raises) ctx.exit codes under standalone_mode=False
