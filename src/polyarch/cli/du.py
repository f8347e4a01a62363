"""``polyarch du``: disk usage of the store, as ``docker buildx du`` — per kind, reclaimable vs in use, totals.

Records and kinds (and their buildx types) are ``pipeline.usage``'s; the total is ``du -sb`` of the store root.
"""

from __future__ import annotations

import json
import time

import click

from polyarch.cli.context import AppContext, pass_app

__all__ = ["du"]

_KIND_NAMES = {"result": "build cache", "snapshot": "snapshot layers", "cachemount": "cache mounts", "blob": "blobs",
               "leftover": "leftovers", "metadata": "metadata"}


def _ago(then: float, now: float) -> str:
    if then <= 0:
        return "never"
    secs = max(0.0, now - then)
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if secs >= size:
            return f"{int(secs // size)} {unit} ago"
    return f"{int(secs)} seconds ago"


@click.command()
@click.option("--verbose", is_flag=True, help="List every record: id, kind, type, size, last use.")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Only records matching: until=DURATION, type=TYPE (buildx type or polyarch kind), id=PREFIX.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_app
def du(app: AppContext, verbose: bool, filters: tuple[str, ...], fmt: str) -> None:
    """Show the disk usage of the store: build cache, snapshots, cache mounts, blobs and what interrupted
    builds left, reclaimable (what 'polyarch prune' may delete) and in use."""
    from polyarch.cli.prune import registry_keep
    from polyarch.cli.wiring import enter_rootless
    from polyarch.pipeline.gcpolicy import human_size
    from polyarch.pipeline.usage import KINDS, cache_total, collect_usage, parse_filters
    from polyarch.worker.snapshot import build_lock

    enter_rootless(app, required=False)  # rootless store: snapshot trees owned by subordinate uids
    flt = parse_filters(filters)
    now = time.time()
    root = app.store.root
    with build_lock(root, exclusive=True, wait=False) as held:
        usage = collect_usage(root, app.images, keep=registry_keep(app), busy=not held, metadata=True, now=now)
    records = [r for r in usage.records if flt.match(r, now)]
    kinds = {k: {"records": 0, "inUse": 0, "reclaimable": 0, "size": 0} for k in KINDS}
    for r in records:
        row = kinds[r.kind]
        row["records"] += 1
        row["size"] += r.size
        row["inUse" if r.in_use else "reclaimable"] += r.size
    reclaimable = sum(r.size for r in records if r.reclaimable)
    total = sum(r.size for r in records)
    if fmt == "json":
        click.echo(json.dumps({"records": [r.to_json() for r in records], "kinds": kinds, "buildCache":
                               cache_total(records), "reclaimable": reclaimable, "total": total,
                               "buildRunning": usage.busy}, indent=2))
        return
    if verbose:
        for r in sorted(records, key=lambda r: (KINDS.index(r.kind), -r.last_used)):
            click.echo(f"ID:\t\t{r.id}")
            if r.parent:
                click.echo(f"Parent:\t\t{r.parent}")
            click.echo(f"Kind:\t\t{r.kind}\nType:\t\t{r.type}\nDescription:\t{r.description}")
            click.echo(f"In use:\t\t{str(r.in_use).lower()}\nReclaimable:\t{str(r.reclaimable).lower()}")
            click.echo(f"Size:\t\t{human_size(r.size)}\nLast used:\t{_ago(r.last_used, now)}\n")
    table = [("KIND", "RECORDS", "IN USE", "RECLAIMABLE", "SIZE")]
    for k in KINDS:
        row = kinds[k]
        if row["records"]:
            table.append((_KIND_NAMES[k], str(row["records"]), human_size(row["inUse"]),
                          human_size(row["reclaimable"]), human_size(row["size"])))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    click.echo(f"Build cache:\t{human_size(cache_total(records))}")
    click.echo(f"Reclaimable:\t{human_size(reclaimable)}")
    click.echo(f"Total:\t\t{human_size(total)}")
    if usage.busy:
        click.echo("(a build is running: its temporary state counts as in use)")
