"""``polyarch imagetools inspect|create|copy`` (buildx's flags).

Locations (``polyarch.sources.location``): registry references, ``local:NAME`` (the local store),
``oci-layout://PATH[:TAG|@DIGEST]``, ``oci-archive://PATH[:TAG|@DIGEST]``, ``docker-archive://PATH[:TAG]``.

``create`` and ``copy`` carry the referrers of every manifest they copy (attestations, signatures) to the
destination; ``--no-referrers`` leaves them behind. The name is regctl's (``image copy --referrers``, opt-in
there, as oras's ``cp -r``); buildx and crane have none (buildx copies its index attestation entries as they are,
crane ignores referrers). When some were sent, one more line says how many.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path

import click

from polyarch.cli.context import AppContext, pass_app
from polyarch.cli.registry_cmds import client_options, make_client, progress_option

__all__ = ["imagetools"]

_REFERRERS = click.option(
    "--referrers/--no-referrers", default=True, show_default=True,
    help="Also copy the referrers (SBOM/provenance attestations, signatures) of every manifest copied.")


@click.group("imagetools")
def imagetools() -> None:
    """Inspect, create and copy images and indexes in registries (and local: / oci-layout:// locations)."""


@imagetools.command("inspect")
@click.argument("ref")
@click.option("--raw", is_flag=True, help="Print the manifest or index bytes exactly as stored.")
@click.option("--format", "fmt", default=None,
              help="'json' (or '{{json .}}') for a JSON document; '{{json .Manifest}}' for the parsed manifest.")
@client_options
@pass_app
def inspect(app: AppContext, ref: str, raw: bool, fmt: str | None, insecure: tuple[str, ...],
            tls_ca: str | None) -> None:
    """Show an image or index: name, media type, digest, and each manifest's platform and annotations."""
    from polyarch.errors import UsageError
    from polyarch.imagetools import format_inspect, inspect_json, resolve

    if raw and fmt:
        raise UsageError("--raw and --format are mutually exclusive")
    with make_client(app.env, insecure, tls_ca) as client:
        resolved = resolve(ref, client=client, images=lambda: app.images)
        compact = (fmt or "").replace(" ", "")
        if compact in ("{{json.Provenance}}", "{{json.SBOM}}"):  # buildx's: per platform, read from attestations
            from polyarch.cli.attestations import template_view

            try:
                view = template_view(resolved, "provenance" if "Provenance" in compact else "sbom")
            finally:
                resolved.close()
            click.echo(json.dumps(view, indent=2))
            return
        resolved.close()  # inspect shows the root document only
    if raw:
        sys.stdout.buffer.write(resolved.raw)
        if not resolved.raw.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
        return
    if fmt is None:
        click.echo(format_inspect(resolved))
        return
    compact = fmt.replace(" ", "")
    if compact in ("json", "{{json.}}"):
        click.echo(json.dumps(inspect_json(resolved), indent=2))
    elif compact == "{{json.Manifest}}":
        click.echo(json.dumps(json.loads(resolved.raw), indent=2))
    else:
        raise UsageError(f"unsupported --format {fmt!r}", hint="use json, '{{json .}}', '{{json .Manifest}}', "
                                                              "'{{json .Provenance}}' or '{{json .SBOM}}'")


@imagetools.command("create")
@click.argument("sources", nargs=-1)
@click.option("-t", "--tag", "tags", multiple=True, metavar="REF", help="Where to push the new index (repeatable).")
@click.option("--append", is_flag=True,
              help="Add the sources to the index the first tag points to (a platform it has is replaced).")
@click.option("-p", "--platform", "platforms", multiple=True, metavar="P[,P…]",
              help="Take only these platforms from the sources.")
@click.option("--prefer-index", type=click.BOOL, default=True, is_flag=False, flag_value=True, show_default=True,
              metavar="BOOL", help="With one single-platform source: make an index (true) or copy the manifest as is "
                                   "(false).")
@click.option("--metadata-file", type=click.Path(dir_okay=False), default=None,
              help="Write the pushed index's descriptor, digest and names (JSON) to this file.")
@click.option("--annotation", "annotations", multiple=True, metavar="[TYPE[PLATFORM]:]K=V",
              help="Annotation for the index (index:, default) or its descriptors (manifest-descriptor:).")
@click.option("--dry-run", is_flag=True, help="Print the new index instead of pushing it.")
@click.option("-f", "--file", "files", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Read source descriptors (JSON) from a file; their manifests must be in the first tag's repo.")
@click.option("--progress", default="auto", hidden=True)
@_REFERRERS
@client_options
@pass_app
def create(app: AppContext, sources: tuple[str, ...], tags: tuple[str, ...], append: bool,
           platforms: tuple[str, ...], prefer_index: bool, metadata_file: str | None,
           annotations: tuple[str, ...], dry_run: bool, files: tuple[str, ...], progress: str, referrers: bool,
           insecure: tuple[str, ...], tls_ca: str | None) -> None:
    """Merge images, indexes and digests into one index and push it to every -t."""
    from polyarch import platform as plat
    from polyarch.errors import UsageError
    from polyarch.fsutil import atomic_write
    from polyarch.imagetools import (
        create_index,
        load_descriptor_files,
        parse_annotation,
        push_index,
        resolve,
    )
    from polyarch.oci import reference
    from polyarch.oci.spec import Index, is_index
    from polyarch.sources.registry import RegistrySource

    if not tags and not dry_run:
        raise UsageError("imagetools create needs -t REF (or --dry-run)")
    if append and not tags:
        raise UsageError("--append needs -t REF")
    targets = [reference.parse(t).defaulted() for t in tags]
    parsed = [parse_annotation(a) for a in annotations]
    wanted = plat.parse_list(platforms)
    with make_client(app.env, insecure, tls_ca) as client, ExitStack() as opened:
        resolved = []
        if append:
            resolved.append(opened.enter_context(resolve(str(targets[0]), client=client)))
        resolved += [opened.enter_context(resolve(s, client=client, images=lambda: app.images)) for s in sources]
        descs = []
        if files:
            if not targets:
                raise UsageError("-f needs -t REF: the descriptors' manifests are looked up in its repository")
            repo_src = RegistrySource(client, targets[0])
            descs = [(d, repo_src) for d in load_descriptor_files(files)]
        single = resolved[0] if len(resolved) == 1 and not descs else None
        if single is not None and not prefer_index and not wanted and not parsed and \
                not isinstance(single.document, Index):
            root, raw, source = single.descriptor, single.raw, single.source  # a carbon copy, as buildx
        else:
            root, raw, source = create_index(resolved, parsed, descs, append=append, platforms=wanted)
        if dry_run:
            click.echo(json.dumps(json.loads(raw), indent=2))
            return
        copied = push_index(source, root, targets, client=client, referrers=referrers)
    if metadata_file:
        meta = {"containerimage.descriptor": root.to_dict(), "containerimage.digest": str(root.digest),
                "image.name": ",".join(str(t) for t in targets)}
        try:
            atomic_write(Path(metadata_file), json.dumps(meta, indent=2).encode() + b"\n")
        except OSError as exc:
            raise UsageError(f"cannot write --metadata-file {metadata_file}: {exc.strerror or exc}") from None
    what = "index" if is_index(root.media_type) else "manifest"
    for t in targets:
        click.echo(f"{t}: pushed {what} {root.digest}")
    for c in copied:
        if c.referrers:
            click.echo(f"{c.dest}: {c.referrers} referrer(s) copied")


@imagetools.command("copy")
@click.argument("src")
@click.argument("dest")
@click.option("--platform", "platforms", multiple=True, metavar="P[,P…]",
              help="Copy only these platforms (default: all, digest unchanged).")
@progress_option
@_REFERRERS
@client_options
@pass_app
def copy(app: AppContext, src: str, dest: str, platforms: tuple[str, ...], progress: str, referrers: bool,
         insecure: tuple[str, ...], tls_ca: str | None) -> None:
    """Copy an image or index to a registry repository, blobs mounted or streamed."""
    from polyarch import platform as plat
    from polyarch.cli.transferprogress import transfer_progress
    from polyarch.imagetools import copy_image, resolve
    from polyarch.oci import reference

    wanted = plat.parse_list(platforms)
    target = reference.parse(dest)
    if not target.tag and target.digest is None:
        target = target.defaulted()
    with transfer_progress(progress) as observer, make_client(app.env, insecure, tls_ca, observer=observer) as client, \
            resolve(src, client=client, images=lambda: app.images) as resolved:
        copied = copy_image(resolved, target, client=client, platforms=wanted, referrers=referrers)
    result = copied.result
    click.echo(f"{target}: copied {result.descriptor.digest} ({result.uploaded} uploaded, {result.mounted} mounted, "
               f"{result.existed} already present)")
    if copied.referrers:
        click.echo(f"{target}: {copied.referrers} referrer(s) copied")
