"""``polyarch doctor``: can this host build? Runtime, privileges, overlayfs, binfmt handlers, platforms, store.

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


def _privileges() -> Check:
    if os.geteuid() == 0:
        return Check("privileges", "ok", "running as root")
    return Check("privileges", "fail", "RUN steps need root (mounts, runc); rootless mode is not supported",
                 "run polyarch as root (sudo)")


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
    from polyarch.worker.snapshot import overlay_usable

    forced = env.snapshotter
    if overlay_usable(root):
        note = " (POLYARCH_SNAPSHOTTER=copy forces the copying snapshotter)" if forced == "copy" else ""
        return Check("overlayfs", "ok", "overlayfs can be mounted; layers are stacked without copies" + note)
    return Check("overlayfs", "warn", "overlayfs cannot be mounted here: the copying snapshotter is used (slower, "
                 "more disk)", "run as root on a filesystem that is not itself overlayfs (e.g. ext4, xfs)")


def _binfmt(wanted: list[str], binfmt_dir: Path) -> list[Check]:
    from polyarch import platform as plat
    from polyarch.worker import binfmt, emulation

    checks = []
    mounted = (binfmt_dir / "register").exists()
    if not mounted:
        checks.append(Check("binfmt_misc", "warn", f"not mounted at {binfmt_dir}",
                            "polyarch binfmt --install all (mounts it)"))
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
                                f"polyarch binfmt --install {a.arch}"))
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
            checks.append(Check(f"platform {p}", "fail", result.problem.split(": run ")[0], fix))
    return checks


def run_checks(root: Path, platforms: list[str], env: Environment) -> list[Check]:
    checks = [_privileges(), _runtime(env), _run_network(env), *_store(root)]
    if os.geteuid() == 0:
        checks.append(_snapshotter(root, env))
    checks += _binfmt(platforms, env.binfmt_dir)
    return checks


@click.command("doctor")
@click.option("--platform", "platforms", default=DEFAULT_PLATFORMS, show_default=True,
              help="Platforms that must be runnable (natively or emulated).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_app
def doctor(app: AppContext, platforms: str, fmt: str) -> None:
    """Check the host: runtime, privileges, overlayfs, binfmt handlers, native and emulated platforms, store."""
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
