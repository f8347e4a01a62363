"""``polyarch binfmt``: register qemu-user-static in binfmt_misc (flags F and P) and show what this host runs."""

from __future__ import annotations

import json

import click

from polyarch.cli.context import AppContext, pass_app

__all__ = ["binfmt"]


@click.command("binfmt")
@click.option("--install", "install_", metavar="all|ARCH[,ARCH…]",
              help="Register QEMU for these architectures (all = every foreign one polyarch knows).")
@click.option("--uninstall", metavar="all|ARCH[,ARCH…]", help="Remove the registrations of these architectures.")
@pass_app
def binfmt(app: AppContext, install_: str | None, uninstall: str | None) -> None:
    """Show, install or remove QEMU emulators for foreign platforms.

    Prints {"supported": [platforms], "emulators": [entries]} as JSON. Entries are named qemu-<arch> and
    registered with flags POCF (F: usable inside containers, P: argv[0] preserved for busybox-style binaries);
    an existing entry without F or P is replaced.
    """
    from polyarch.worker import binfmt as bf

    directory = app.env.binfmt_dir
    if uninstall:
        arches = bf.parse_arches(uninstall) if uninstall != "all" else list(bf.ARCHES.values())
        for line in bf.uninstall(arches, directory):
            click.echo(line, err=True)
    if install_:
        for line in bf.install(bf.parse_arches(install_), directory):
            click.echo(line, err=True)
    click.echo(json.dumps(bf.status(directory), indent=2))
