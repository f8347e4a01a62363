"""Local image store commands: images, inspect, tag, rm, prune."""

from __future__ import annotations

import json

import click

from polyarch.cli.context import AppContext, pass_app

__all__ = ["images", "inspect", "prune", "rm", "tag"]


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return f"{n}B"


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--digests/--no-trunc-digests", "short", default=True, help="Show short digests (default).")
@pass_app
def images(app: AppContext, fmt: str, short: bool) -> None:
    """List names in the local store with their platforms and size."""
    from polyarch.content.summary import summarize

    rows = [summarize(app.images, name, desc) for name, desc in app.images.names()]
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    table = [("REF", "DIGEST", "PLATFORMS", "SIZE")]
    for r in sorted(rows, key=lambda r: r.name):
        table.append((r.name, r.digest.short if short else str(r.digest),
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
    """Remove names from the local store (blobs stay until 'polyarch prune')."""
    for ref in refs:
        found = app.images.remove_name(ref)
        click.echo(f"Untagged: {ref} ({found.digest})")


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("--grace", default=3600.0, show_default=True, type=float,
              help="Keep unreferenced blobs and temp files younger than this many seconds.")
@pass_app
def prune(app: AppContext, dry_run: bool, grace: float) -> None:
    """Delete blobs that no name reaches (and abandoned temp files), then the build's own state nothing can
    use any more: build cache entries whose layers are gone, and snapshots (extracted layers) of neither a named
    image nor a remaining cache entry. Build cache layers are blobs no name reaches: they go too once older than
    --grace (like 'docker buildx prune'). Snapshots a running build uses are never deleted."""
    from polyarch.content.gc import prune as do_prune
    from polyarch.digest import Digest

    keep: set[Digest] = set()
    if (app.store.root / "registry.db").exists():
        # The embedded registry serves from this store: what it references is not garbage.
        from polyarch.registry.server import registry_roots

        keep = {Digest.parse(d) for d in registry_roots(app.store)}
    result = do_prune(app.images, dry_run=dry_run, grace=grace, extra_keep=keep)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {result.blobs} blobs, {_human(result.bytes)}; {result.temp_files} temp files")
    from polyarch.pipeline.prune import prune_build_state

    # a dry run deleted nothing: the build state is judged as if it had
    doomed = frozenset(str(d) for d in result.digests) if dry_run else frozenset()
    built = prune_build_state(app.store.root, app.images, grace=grace, dry_run=dry_run, doomed=doomed)
    line = f"{verb} {built.cache_entries} build cache entries"
    if built.skipped_busy:
        line += "; snapshots kept: a build is running"
    else:
        line += f", {built.snapshots} snapshots, {_human(built.snapshot_bytes)}"
    click.echo(line)
