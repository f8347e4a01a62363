"""``polyarch save`` and ``polyarch load`` (docker's forms: several images, stdout, stdin).

``save A B …`` writes one archive holding every image (each blob once); without ``-o`` (or with ``-o -``) it
goes to stdout, refused when stdout is a terminal. ``load`` reads ``-i FILE``, ``-i -`` or stdin (spooled to a
temporary file under the store root, as an archive is read with random access); an image without a name is
kept unnamed and printed as ``Loaded image ID: sha256:…`` (usable wherever a name is).

Referrers (attestations, signatures): ``save`` (OCI format) writes the store referrers of every manifest saved
(of the chosen platforms only) as annotated ``index.json`` entries; the docker format holds the image only
(``docker load`` has no place for them). ``load`` keeps an archive's referrers attached to their subjects as
store referrers: never ``<none>`` images, never reported.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from polyarch.cli.context import AppContext, pass_app

if TYPE_CHECKING:
    from polyarch.content.images import Image
    from polyarch.digest import Digest

__all__ = ["load", "save"]


@click.command()
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("-o", "--output", default=None,
              help="Archive file to write ('-' for stdout; the default when stdout is not a terminal).")
@click.option("--format", "fmt", type=click.Choice(["oci", "docker"]), default="oci", show_default=True,
              help="oci: OCI layout tar (all platforms); docker: docker-archive for 'docker load' (one platform).")
@click.option("--platform", "platforms", multiple=True, help="Only these platforms (docker: default this host).")
@pass_app
def save(app: AppContext, refs: tuple[str, ...], output: str | None, fmt: str, platforms: tuple[str, ...]) -> None:
    """Write the images REF... to one archive."""
    from polyarch import platform as plat
    from polyarch.errors import UsageError
    from polyarch.exporters.archive import write_docker_archive_entries, write_oci_archive_entries

    if output is None:
        if sys.stdout.isatty():
            raise UsageError("refusing to write an archive to a terminal", hint="use -o FILE or redirect stdout")
        output = "-"
    if output == "-":
        sys.stdout.flush()
    images = app.images
    descs = [images.lookup(ref) for ref in refs]
    wanted = plat.parse_list(platforms)
    if fmt == "oci":
        write_oci_archive_entries(images, list(zip(descs, refs, strict=True)), output, platforms=wanted)
        return
    if len(wanted) > 1:
        raise UsageError("a docker archive holds one platform; give one --platform or use --format oci")
    grouped: dict[Digest, tuple[Image, list[str]]] = {}
    for desc, ref in zip(descs, refs, strict=True):
        image = images.images(desc, wanted or [plat.host()])[0]
        grouped.setdefault(image.descriptor.digest, (image, []))[1].append(ref)
    write_docker_archive_entries(images, list(grouped.values()), output)


@click.command()
@click.option("-i", "--input", "path", default="-", show_default=True,
              help="OCI archive or docker-archive tar ('-' for stdin).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@pass_app
def load(app: AppContext, path: str, quiet: bool) -> None:
    """Load an OCI archive or docker-archive into the local store."""
    from polyarch.content.loader import load_archive
    from polyarch.content.pathindex import PendingIndexes
    from polyarch.errors import UsageError
    from polyarch.solver.cache import BuildCache

    if path == "-" and sys.stdin.isatty():
        raise UsageError("no archive on stdin", hint="use -i FILE or redirect stdin")
    indexes = PendingIndexes()  # layer path indexes made as the layers are hashed, kept once the load succeeded
    with app.store.batched():  # one flush for the load's blobs, before its first name (content/store.py)
        if path != "-":
            loaded = load_archive(app.images, Path(path), indexes=indexes)
        else:
            spool_dir = app.store.root / "ingest"
            spool_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=spool_dir, prefix="load-", suffix=".tar") as spool:
                shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
                spool.flush()
                loaded = load_archive(app.images, Path(spool.name), indexes=indexes)
    with BuildCache.in_store(app.store.root) as cache:
        indexes.flush_to(cache)
    if quiet:
        return
    for item in loaded:
        if item.name:
            click.echo(f"Loaded image: {item.name}")
        else:
            click.echo(f"Loaded image ID: {item.image_id}")
