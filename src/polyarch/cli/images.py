"""Local image store commands: images, inspect, tag, rm."""

from __future__ import annotations

import json

import click

from polyarch.cli.context import AppContext, pass_app

__all__ = ["images", "inspect", "rm", "tag"]


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return f"{n}B"


@click.command()
@click.argument("reference_filter", required=False, metavar="[REPOSITORY[:TAG]]")
@click.option("--format", "fmt", default="table", show_default=True, metavar="table|json|TEMPLATE",
              help="table; json (one JSON array); or a Go template as docker: '{{.Repository}}:{{.Tag}}', "
                   "'{{json .}}', 'table {{.ID}}\\t{{.Repository}}'.")
@click.option("-q", "--quiet", is_flag=True, help="Print only image IDs.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="reference=PATTERN, dangling=true|false, before=IMAGE, since=IMAGE, label=KEY[=VALUE] "
                   "(repeatable; one key's values are OR-ed).")
@click.option("--digests/--no-trunc-digests", "short", default=True, help="Show short digests (default).")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs and digests.")
@click.option("-a", "--all", "all_", is_flag=True, hidden=True, help="Accepted for docker compatibility.")
@pass_app
def images(app: AppContext, reference_filter: str | None, fmt: str, quiet: bool, filters: tuple[str, ...],
           short: bool, no_trunc: bool, all_: bool) -> None:
    """List images of the local store with their platforms and size (unnamed ones as <none>)."""
    from polyarch.cli.gotemplate import parse_template
    from polyarch.content.images import REF_NAME
    from polyarch.content.summary import docker_row, parse_filters, summarize

    short = short and not no_trunc
    chosen = parse_filters([*filters, *([f"reference={reference_filter}"] if reference_filter else [])])
    template = parse_template(fmt) if fmt not in ("table", "json") else None
    from polyarch.content.referrers import is_referrer

    entries = [(d.annotations.get(REF_NAME, ""), d) for d in app.images.entries()
               if not is_referrer(d)]  # attestations kept as referrers are not images
    rows = chosen.select([summarize(app.images, name, desc) for name, desc in entries])
    if fmt == "json":  # index order, as before
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    rows.sort(key=lambda r: (not r.name, r.name, str(r.digest)))
    if quiet:
        seen: dict[str, None] = {}
        for r in rows:
            image_id = r.image_id or r.digest
            seen.setdefault(image_id.short if short else str(image_id), None)
        for line in seen:
            click.echo(line)
        return
    if template is not None:
        for line in template.render_all([docker_row(r, short=short) for r in rows]):
            click.echo(line)
        return
    table = [("REF", "DIGEST", "PLATFORMS", "SIZE")]
    for r in rows:
        table.append((r.name or "<none>", r.digest.short if short else str(r.digest),
                      ",".join(map(str, r.platforms)) or "-", _human(r.size)))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


@click.command()
@click.argument("ref")
@click.option("--raw", is_flag=True, help="Print the manifest or index bytes exactly as stored.")
@pass_app
def inspect(app: AppContext, ref: str, raw: bool) -> None:
    """Show an image or index of the local store: its manifests, platforms, configs and layers."""
    from polyarch.content.summary import describe

    doc = app.images.resolve(ref)
    if raw:
        click.echo(doc.raw.decode())
        return
    click.echo(json.dumps(describe(app.images, ref, doc), indent=2))


@click.command()
@click.argument("source")
@click.argument("target", nargs=-1, required=True)
@pass_app
def tag(app: AppContext, source: str, target: tuple[str, ...]) -> None:
    """Give the image SOURCE the name(s) TARGET."""
    from polyarch.oci import reference

    desc = app.images.lookup(source)
    for name in target:
        reference.parse(name)
        app.images.set_name(name, desc)


@click.command()
@click.argument("refs", nargs=-1, required=True)
@pass_app
def rm(app: AppContext, refs: tuple[str, ...]) -> None:
    """Remove names (or unnamed images, by ID) from the local store (blobs stay until 'polyarch prune').

    Also available as 'rmi'."""
    from polyarch.content.images import REF_NAME

    for ref in refs:
        found = app.images.lookup(ref)
        if found.annotations.get(REF_NAME):
            app.images.remove_name(found.annotations[REF_NAME])
            click.echo(f"Untagged: {ref} ({found.digest})")
            continue
        app.images.update(lambda entries, d=found: [e for e in entries
                                                    if e.annotations.get(REF_NAME) or e.digest != d.digest])
        click.echo(f"Deleted: {found.digest}")
