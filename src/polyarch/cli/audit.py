"""``polyarch audit --hosts FILE [COMPOSE_OR_LIST …]``: which image runs native, emulated or not at all where.

The composition root of ``polyarch.audit``: flags and environment (``POLYARCH_SSH``, and the variables compose
files are interpolated from) are read here, once, and passed down as values.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from polyarch.cli.context import AppContext, pass_app
from polyarch.cli.registry_cmds import client_options, make_client

__all__ = ["audit"]


@click.command("audit")
@click.option("--hosts", "hosts_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Hosts and their platforms: YAML 'hosts: {pi4: linux/arm64, mini: ssh://user@host}' or "
                   "'NAME PLATFORM' lines.")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--image", "extra", multiple=True, metavar="REF", help="Also audit this image (repeatable).")
@click.option("--local-only", is_flag=True, help="Resolve images in the local store only, never a registry.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--ssh-timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for each host.")
@client_options
@pass_app
def audit(app: AppContext, hosts_file: Path, files: tuple[Path, ...], extra: tuple[str, ...], local_only: bool,
          fmt: str, ssh_timeout: float, insecure: tuple[str, ...], tls_ca: str | None) -> None:
    """For every image the compose files (services.*.image) or image lists (one reference per line) use, and
    every host: native (the entry it would pull), emulated (what it would run under QEMU) or missing.

    Exit status: 0 when every host runs every image natively, 1 otherwise.
    """
    from polyarch.audit.hosts import SshOptions, load_hosts, resolve_hosts
    from polyarch.audit.inputs import load_images, merge_uses
    from polyarch.audit.model import ImageUse
    from polyarch.audit.render import render_json, render_table
    from polyarch.audit.resolve import SourceLookup
    from polyarch.audit.table import audit as audit_table
    from polyarch.errors import UsageError

    environ = dict(os.environ)
    ssh = SshOptions.from_setting(environ.get("POLYARCH_SSH", ""), ssh_timeout)
    specs = load_hosts(hosts_file)
    uses: list[ImageUse] = []
    skipped: list[str] = []
    for f in files:
        found, skip = load_images(f, environ)
        uses += found
        skipped += skip
    uses += [ImageUse(ref, ("--image",)) for ref in extra]
    if not uses:
        raise UsageError("no image to audit", hint="give compose files or image lists, or --image REF")
    hosts = resolve_hosts(specs, ssh)
    client = None if local_only else make_client(app.env, insecure, tls_ca)
    try:
        lookup = SourceLookup(app.images, None if client is None else lambda: client)
        report = audit_table(merge_uses(uses), hosts, lookup, skipped)
    finally:
        if client is not None:
            client.close()
    if fmt == "json":
        click.echo(render_json(report), nl=False)
    else:
        click.echo(render_table(report), nl=False)
        for h in report.hosts:
            if h.error:
                click.echo(f"{h.name}: {h.error}", err=True)
        for s in report.skipped:
            click.echo(f"skipped {s}", err=True)
        for e in report.errors:
            click.echo(f"cannot resolve {e}", err=True)
    if not report.ok:
        sys.exit(1)

