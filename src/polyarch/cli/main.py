"""Entry point: a click group whose commands are imported only when run, so ``polyarch --help`` stays instant.

Each command lives in its own module under ``polyarch.cli``; add it to ``COMMANDS`` with a one-line summary.
This module and the command modules are the composition root: they build concrete objects and wire them.

The polyarch process's cyclic garbage collector (``main()`` without arguments only: the console script and
``python -m polyarch``; never a process that calls ``main(argv)`` or imports polyarch as a library) follows
``ProcessGc``: off while the command's module is imported, frozen after it, frozen again at exit.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import Any

import click

from polyarch import __version__
from polyarch.cli.context import AppContext
from polyarch.cli.environment import Environment
from polyarch.libpatches import trim_imports

__all__ = ["COMMANDS", "cli", "main"]

# name -> ("module:attribute", summary shown by --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "images": ("polyarch.cli.images:images", "List images in the local store"),
    "inspect": ("polyarch.cli.images:inspect", "Show an image or index of the local store"),
    "tag": ("polyarch.cli.images:tag", "Give a local image another name"),
    "rm": ("polyarch.cli.images:rm", "Remove names from the local store"),
    "rmi": ("polyarch.cli.images:rm", "Remove names from the local store (alias of rm)"),
    "prune": ("polyarch.cli.prune:prune", "Delete build cache, snapshots, cache mounts and blobs nothing uses"),
    "du": ("polyarch.cli.du:du", "Show disk usage: build cache, snapshots, cache mounts, blobs"),
    "save": ("polyarch.cli.saveload:save", "Write an image to an OCI or docker archive"),
    "load": ("polyarch.cli.saveload:load", "Load an OCI or docker archive into the local store"),
    "import": ("polyarch.cli.importer:import_", "Make a multi-platform image from rootfs tarballs"),
    "run": ("polyarch.cli.run:run", "Run a local image's entrypoint once (native or under QEMU)"),
    "binfmt": ("polyarch.cli.binfmt:binfmt", "Install or show QEMU emulators for foreign platforms"),
    "doctor": ("polyarch.cli.doctor:doctor", "Check runtime, overlayfs, emulators and store"),
    "build": ("polyarch.cli.build:build", "Build an image from a Dockerfile"),
    "bake": ("polyarch.cli.bake:bake", "Build several targets from a bake or compose file"),
    "registry": ("polyarch.cli.registry_server:registry", "Run the embedded OCI registry"),
    "login": ("polyarch.cli.registry_cmds:login", "Log in to a registry"),
    "logout": ("polyarch.cli.registry_cmds:logout", "Log out from a registry"),
    "pull": ("polyarch.cli.registry_cmds:pull", "Fetch an image from a registry into the local store"),
    "push": ("polyarch.cli.registry_cmds:push", "Upload a local image to a registry"),
    "imagetools": ("polyarch.cli.imagetools:imagetools", "Inspect, create and copy images in registries"),
    "verify": ("polyarch.cli.verify:verify", "Check that every platform of an image is built for it"),
    "attestations": ("polyarch.cli.attestations:attestations", "List and read an image's SBOM and provenance"),
    "audit": ("polyarch.cli.audit:audit", "Show which image runs native, emulated or not at all on which host"),
    "builder": ("polyarch.cli.builder:builder", "Manage builder instances (local and ssh nodes)"),
    "create": ("polyarch.cli.builder:create", "Create a builder or add a node to it (= builder create)"),
    "ls": ("polyarch.cli.builder:ls", "List builders and their nodes (= builder ls)"),
    "use": ("polyarch.cli.builder:use", "Use a builder for build and bake (= builder use)"),
    "stop": ("polyarch.cli.builder:stop", "Stop a builder (= builder stop)"),
    "node": ("polyarch.cli.node:node", "Serve builds for a builder's node (run by ssh: node serve --stdio)"),
    "ci": ("polyarch.cli.ci:ci", "Write a CI workflow that publishes multi-platform images on tags"),
}


class ProcessGc:
    """When the polyarch process's cyclic garbage collector runs, and why that is safe.

    * ``start`` (``main``): off while the command's module and what it imports load. Imports make almost no
      cyclic garbage (what they create lives until exit), so the ~100 collections they would trigger find none.
    * ``imported`` (``LazyGroup.get_command``): ``gc.freeze()`` moves everything alive then (modules, classes,
      functions, click's objects) into the permanent generation, then the collector runs as before (if it was on).
      The run's full collections visit only what the command made, not the whole heap again and again. What is
      frozen lives until exit anyway; a frozen object that became cyclic garbage would stay until exit, which
      bounds the cost at what existed before the command ran.
    * ``exiting`` (``main``, after the command returned or failed): frozen again, so the interpreter's last
      collection does not walk the whole heap (~30 ms for a build) to free memory the process hands back anyway.
      Nothing depends on it: polyarch closes files, databases, clients and pools itself (``with``), temporary
      directories are removed by their ``weakref.finalize`` hooks (run at exit, not by the collector), and
      CPython never promises finalizers for objects still alive at exit.
    """

    def __init__(self) -> None:
        self._pending = False
        self._was_enabled = True

    def start(self) -> None:
        self._was_enabled, self._pending = gc.isenabled(), True
        gc.disable()

    def imported(self) -> None:
        if self._pending:
            self._pending = False
            gc.freeze()
            if self._was_enabled:
                gc.enable()

    def exiting(self) -> None:
        self.imported()  # a run that ended before any command module was imported (--help, a usage error)
        gc.freeze()


PROCESS_GC = ProcessGc()


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, _, attr = target[0].partition(":")
        command = getattr(importlib.import_module(module), attr)
        PROCESS_GC.imported()
        return command  # type: ignore[no-any-return]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="polyarch")
@click.option("-D", "--debug", is_flag=True, envvar="POLYARCH_DEBUG", help="Show tracebacks for errors.")
@click.option("--root", "root", envvar="POLYARCH_ROOT", type=click.Path(file_okay=False),
              help="Store root (default: $POLYARCH_ROOT, /var/lib/polyarch as root, else ~/.local/share/polyarch).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, root: str | None) -> None:
    """polyarch: build, store, publish and verify multi-architecture OCI images, daemonless."""
    # main() hands over the environment it read; a caller of the group itself (click's test runner) gets it here
    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment.read(os.environ)
    env.apply_process_settings()
    # absolute: the runtime and the snapshotter run with other working directories (runc chdirs into bundles)
    ctx.obj = AppContext(debug=debug, root=os.path.abspath(root) if root else None, env=env)


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; every error becomes one line (plus a hint) on stderr and an exit code, never a traceback
    unless ``--debug`` was given. Without ``argv`` (the polyarch process itself: the arguments are
    ``sys.argv``), the garbage collector follows ``ProcessGc``."""
    trim_imports()  # the polyarch process only: never httpx's CLI client or trio (see libpatches)
    if argv is not None:
        return _run(list(argv))
    PROCESS_GC.start()
    try:
        return _run(sys.argv[1:])
    finally:
        PROCESS_GC.exiting()


def _run(args: list[str]) -> Any:
    from polyarch.errors import PolyarchError

    env = Environment.read(os.environ)  # the one read of the environment (see cli.environment)
    debug = "--debug" in args or "-D" in args or env.debug  # top-level or a command's (build, bake) -D/--debug
    try:
        # Without standalone mode, click returns the code given to ctx.exit(n) instead of raising.
        rc = cli.main(args=args, prog_name="polyarch", standalone_mode=False, obj=env)
        if isinstance(rc, int) and rc != 0:
            sys.exit(rc)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except PolyarchError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(exc.render(), err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # the last line of defence: a bug, shown as one line
        if debug:
            raise
        click.echo(f"error: internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("hint: run with --debug for a traceback, and please report it", err=True)
        sys.exit(1)
    sys.exit(0)
