"""``polyarch import``: rootfs tarballs → one multi-platform image."""

from __future__ import annotations

from pathlib import Path

import click

from polyarch.cli.context import AppContext, pass_app

__all__ = ["import_"]


@click.command("import")
@click.option("--platform", "platforms", multiple=True, required=True, metavar="PLATFORM=ROOTFS.tar",
              help="A platform and its rootfs tarball (plain, .gz or .zst); repeat for more platforms.")
@click.option("-t", "--tag", "tags", multiple=True, required=True, help="Name for the image (repeatable).")
@click.option("--append", is_flag=True, help="Add or replace platforms of the image already named by the first tag.")
@click.option("--compression", type=click.Choice(["gzip", "zstd", "uncompressed"]), default="gzip", show_default=True)
@click.option("--compression-level", type=click.IntRange(0, 22), default=None)
@click.option("--oci-mediatypes/--docker-mediatypes", default=True, show_default=True)
@pass_app
def import_(app: AppContext, platforms: tuple[str, ...], tags: tuple[str, ...], append: bool, compression: str,
            compression_level: int | None, oci_mediatypes: bool) -> None:
    """Make one image per platform from rootfs tarballs, and one index of them under TAG.

    Example: polyarch import --platform linux/arm64=arm64.tar --platform linux/amd64=amd64.tar -t base/os:1
    """
    from polyarch import platform as plat
    from polyarch.content.importer import ImportSource, import_rootfs
    from polyarch.errors import NotFound, UsageError
    from polyarch.oci import reference

    sources = []
    for spec in platforms:
        p, sep, path = spec.partition("=")
        if not sep or not path:
            raise UsageError(f"--platform {spec!r}: expected PLATFORM=ROOTFS.tar")
        platform = plat.parse(p)
        if any(s.platform == platform for s in sources):
            raise UsageError(f"--platform {platform} given twice")
        sources.append(ImportSource(platform, Path(path)))
    for tag in tags:
        reference.parse(tag)
    images = app.images
    base = None
    if append:
        try:
            base = images.lookup(tags[0])
        except NotFound:
            base = None
    index = import_rootfs(images, sources, compression=compression, level=compression_level,
                          oci=oci_mediatypes, base=base, epoch=app.env.import_epoch(),
                          on_progress=lambda msg: click.echo(msg, err=True))
    for tag in tags:
        images.set_name(tag, index)
    click.echo(str(index.digest))
