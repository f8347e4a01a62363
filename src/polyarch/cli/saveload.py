"""``polyarch save`` and ``polyarch load``."""

from __future__ import annotations

from pathlib import Path

import click

from polyarch.cli.context import AppContext, pass_app

__all__ = ["load", "save"]


@click.command()
@click.argument("ref")
@click.option("-o", "--output", required=True, help="Archive file to write ('-' for stdout).")
@click.option("--format", "fmt", type=click.Choice(["oci", "docker"]), default="oci", show_default=True,
              help="oci: OCI layout tar (all platforms); docker: docker-archive for 'docker load' (one platform).")
@click.option("--platform", "platforms", multiple=True, help="Only these platforms (docker: default this host).")
@pass_app
def save(app: AppContext, ref: str, output: str, fmt: str, platforms: tuple[str, ...]) -> None:
    """Write the image REF to an archive."""
    from polyarch import platform as plat
    from polyarch.errors import UsageError
    from polyarch.exporters.archive import write_docker_archive, write_oci_archive

    images = app.images
    desc = images.lookup(ref)
    wanted = plat.parse_list(platforms)
    if fmt == "oci":
        write_oci_archive(images, desc, ref, output, platforms=wanted)
        return
    if len(wanted) > 1:
        raise UsageError("a docker archive holds one platform; give one --platform or use --format oci")
    chosen = images.images(desc, wanted or [plat.host()])
    write_docker_archive(images, chosen[0], [ref], output)


@click.command()
@click.option("-i", "--input", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="OCI archive or docker-archive tar.")
@pass_app
def load(app: AppContext, path: Path) -> None:
    """Load an OCI archive or docker-archive into the local store."""
    from polyarch.content.loader import load_archive

    for name in load_archive(app.images, path):
        click.echo(f"Loaded image: {name}")
