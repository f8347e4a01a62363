"""``polyarch verify REF|LAYOUT``: prove each platform of an image is native before a Raspberry Pi finds out."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from polyarch.cli.context import AppContext, pass_app
from polyarch.cli.registry_cmds import client_options, make_client

if TYPE_CHECKING:
    from polyarch.registry.client import RegistryClient

__all__ = ["verify"]


@click.command("verify")
@click.argument("ref")
@click.option("--platform", "platforms", multiple=True, metavar="P[,P…]",
              help="Verify only these platforms (default: every platform of the index).")
@click.option("--require", "required", multiple=True, metavar="P[,P…]",
              help="Platforms that must be in the index.")
@click.option("--ignore", "ignores", multiple=True, metavar="GLOB",
              help="Do not check ELF files whose absolute path matches (e.g. '/usr/aarch64-linux-gnu/*' for a "
                   "cross sysroot); repeatable. Firmware dirs are always ignored.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--jobs", type=click.IntRange(1, 64), default=None, envvar="POLYARCH_VERIFY_JOBS",
              help="Platforms verified at once (default: up to 4, at most the CPU count).")
@click.option("--require-attestations", "require_attestations", is_flag=True,
              help="Fail unless every platform has an SBOM and a provenance attestation (referrers or buildx's).")
@client_options
@pass_app
def verify(app: AppContext, ref: str, platforms: tuple[str, ...], required: tuple[str, ...],
           ignores: tuple[str, ...], fmt: str, jobs: int | None, insecure: tuple[str, ...],
           tls_ca: str | None, require_attestations: bool = False) -> None:
    """Check every platform of REF: present when required, config matching the index, and every ELF file of
    its merged filesystem built for it (an amd64 binary in an arm64 image, an ARMv7 one in arm/v6).

    REF is an OCI layout directory (PATH or PATH:TAG), else a name in the local store, else a registry
    reference; or explicitly local:NAME, oci-layout://PATH[:TAG|@DIGEST], oci-archive://PATH[:TAG],
    docker-archive://PATH[:TAG]. Exit status: 0 clean, 1 with one line per problem.
    """
    from polyarch import platform as plat
    from polyarch.sources import VERIFY_ORDER, open_source, parse_location
    from polyarch.verify import render_json, render_text, verify_image
    from polyarch.verify.checks import DEFAULT_IGNORE

    selected = plat.parse_list(platforms)
    require = plat.parse_list(required)
    location = parse_location(ref)
    clients: list[RegistryClient] = []

    def registry() -> RegistryClient:
        clients.append(make_client(app.env, insecure, tls_ca))
        return clients[-1]

    try:
        with open_source(location, images=lambda: app.images, registry=registry, order=VERIFY_ORDER) as opened:
            subject = ref if opened.ref is not None else opened.name
            report = verify_image(opened.source, opened.descriptor, platforms=selected, require=require,
                                  ignore=(*DEFAULT_IGNORE, *ignores), subject=subject, jobs=jobs)
            missing: list[str] = []
            if require_attestations:
                from polyarch.cli.attestations import missing_attestations

                missing = missing_attestations(opened, selected)
    finally:
        for client in clients:
            client.close()
    if fmt == "json":
        click.echo(render_json(report), nl=False)
    else:
        out, summary = render_text(report)
        if out:
            click.echo(out, nl=False)
        click.echo(summary, err=True)
    for line in missing:
        click.echo(line, err=fmt == "json")
    if not report.ok or missing:
        sys.exit(1)
