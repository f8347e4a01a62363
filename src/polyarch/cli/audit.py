"""``polyarch audit --hosts FILE [COMPOSE_OR_LIST …]``: which image runs native, emulated or not at all where."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from polyarch.cli.context import AppContext, pass_app
from polyarch.cli.registry_cmds import client_options

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
    from polyarch import audit as au
    from polyarch import audit_inputs as inputs
    from polyarch.errors import UsageError

    specs = inputs.load_hosts(hosts_file)
    uses: list[au.ImageUse] = []
    skipped: list[str] = []
    for f in files:
        found, skip = inputs.load_images(f)
        uses += found
        skipped += skip
    uses += [au.ImageUse(ref, ("--image",)) for ref in extra]
    if not uses:
        raise UsageError("no image to audit", hint="give compose files or image lists, or --image REF")
    hosts = inputs.resolve_hosts(specs, timeout=ssh_timeout)
    resolver = _resolver(app, local_only, insecure, tls_ca)
    try:
        report = au.audit(inputs.merge_uses(uses), hosts, resolver, skipped)
    finally:
        close = getattr(resolver, "close", None)
        if close is not None:
            close()
    if fmt == "json":
        click.echo(au.render_json(report), nl=False)
    else:
        click.echo(au.render_table(report), nl=False)
        for h in report.hosts:
            if h.error:
                click.echo(f"{h.name}: {h.error}", err=True)
        for s in report.skipped:
            click.echo(f"skipped {s}", err=True)
        for e in report.errors:
            click.echo(f"cannot resolve {e}", err=True)
    if not report.ok:
        sys.exit(1)


class _Resolvers:
    """The local store first, then registries (with the user's credentials); owns the registry client."""

    def __init__(self, app: AppContext, local_only: bool, insecure: tuple[str, ...], tls_ca: str | None) -> None:
        from polyarch.audit import ChainResolver, RegistryResolver, StoreResolver

        self._client = None
        resolvers: list[object] = [StoreResolver(app.images)]
        if not local_only:
            from polyarch.cli.registry_cmds import make_client

            self._client = make_client(insecure, tls_ca)
            resolvers.append(RegistryResolver(self._client))
        self._chain = ChainResolver(*resolvers)  # type: ignore[arg-type]

    def platforms(self, ref: str):  # type: ignore[no-untyped-def]
        return self._chain.platforms(ref)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _resolver(app: AppContext, local_only: bool, insecure: tuple[str, ...], tls_ca: str | None) -> _Resolvers:
    return _Resolvers(app, local_only, insecure, tls_ca)
