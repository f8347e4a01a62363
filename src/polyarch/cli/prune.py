"""``polyarch prune`` (buildx's flags) and the build cache gc that build and bake run after a successful build.

API (for build and bake)::

    policy = gc_policy(app)          # the config file's [gc] (read before the build: a bad file fails early)
    gc_after_build(app, policy)      # after export: cut the build cache back to the policy; never fails the build
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from polyarch.cli.context import AppContext, pass_app

if TYPE_CHECKING:
    from polyarch.digest import Digest
    from polyarch.pipeline.gcpolicy import GcPolicy

__all__ = ["gc_after_build", "gc_policy", "prune", "registry_keep"]


def registry_keep(app: AppContext) -> set[Digest]:
    """Digests the embedded registry serving this store references: never garbage."""
    if not (app.store.root / "registry.db").exists():
        return set()
    from polyarch.digest import Digest
    from polyarch.registry.server import registry_roots

    return {Digest.parse(d) for d in registry_roots(app.store)}


def gc_policy(app: AppContext) -> GcPolicy:
    from polyarch.cli.config import load_config

    return load_config(app.env).gc


def gc_after_build(app: AppContext, policy: GcPolicy) -> None:
    """Enforce ``policy`` on the build cache (``pipeline.prune.enforce_gc``); says on stderr what it deleted. A
    failure is a warning: the build and its outputs are done."""
    if not policy.enabled or policy.keep_storage <= 0:
        return
    from polyarch.errors import PolyarchError
    from polyarch.pipeline.gcpolicy import human_size
    from polyarch.pipeline.prune import enforce_gc

    try:
        done = enforce_gc(app.store.root, app.images, policy, keep=registry_keep(app))
    except (PolyarchError, OSError) as exc:
        click.echo(f"warning: build cache gc failed: {exc}", err=True)
        return
    if done.records:
        click.echo(f"gc: deleted {len(done.records)} build cache records, {human_size(done.size)} "
                   f"(keep-storage {human_size(policy.keep_storage)}; now {human_size(done.after)})", err=True)


_FILTER_HELP = ("Only records matching KEY=VALUE (repeatable): until=DURATION (last used at least that long ago, "
                "e.g. 24h), type=TYPE (regular, exec.cachemount, source.local, source.git.checkout, internal, "
                "frontend, or a polyarch kind: result, snapshot, cachemount, blob, leftover), id=PREFIX.")


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("--grace", default=3600.0, show_default=True, type=float,
              help="Without --filter/--keep-storage/--all: keep what was used or written within this many seconds.")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE", help=_FILTER_HELP)
@click.option("--keep-storage", "keep_storage", default=None, metavar="SIZE",
              help="Delete the least recently used records not in use until the build cache holds at most SIZE "
                   "(e.g. 10GB; docker's units, powers of 1024).")
@click.option("-a", "--all", "all_", is_flag=True, help="Delete every record not in use, however recent.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation (polyarch never prompts).")
@click.option("--verbose", is_flag=True, help="List every record deleted.")
@pass_app
def prune(app: AppContext, dry_run: bool, grace: float, filters: tuple[str, ...], keep_storage: str | None,
          all_: bool, force: bool, verbose: bool) -> None:
    """Delete what nothing uses.

    Without --filter, --keep-storage or --all: blobs no name reaches (and abandoned temp files), then the
    build's own state nothing can use any more: build cache entries whose layers are gone, snapshots (extracted
    layers) of neither a named image nor a remaining cache entry, cache mounts and what interrupted builds left;
    each once older than --grace. Build cache layers are blobs no name reaches: they go too (like 'docker buildx
    prune').

    With --filter, --keep-storage or --all: the records 'polyarch du' lists that are not in use and match, as
    'docker buildx prune'. Nothing a name reaches is deleted, nor anything while a build runs."""
    from polyarch.cli.wiring import enter_rootless
    from polyarch.pipeline.gcpolicy import human_size

    enter_rootless(app, required=False)  # rootless store: snapshot trees owned by subordinate uids
    verb = "would delete" if dry_run else "deleted"
    if filters or keep_storage is not None or all_:
        from polyarch.pipeline.gcpolicy import parse_size
        from polyarch.pipeline.prune import prune_records
        from polyarch.pipeline.usage import parse_filters

        flt = parse_filters(filters)
        limit = parse_size(keep_storage, what="--keep-storage") if keep_storage is not None else None
        done = prune_records(app.store.root, app.images, flt, keep_storage=limit, keep=registry_keep(app),
                             dry_run=dry_run)
        if done.skipped_busy:
            click.echo("nothing deleted: a build is running")
            return
        kinds: dict[str, int] = {}
        for r in done.records:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
            if verbose:
                click.echo(f"{verb} {r.kind} {r.id} {human_size(r.size)}  {r.description}")
        what = ", ".join(f"{n} {k}" for k, n in kinds.items())
        click.echo(f"{verb} {len(done.records)} records, {human_size(done.size)}" + (f": {what}" if what else ""))
        click.echo(f"build cache: {human_size(done.before)} before, {human_size(done.after)} after")
        return

    from polyarch.content.gc import prune as do_prune

    result = do_prune(app.images, dry_run=dry_run, grace=grace, extra_keep=registry_keep(app))
    click.echo(f"{verb} {result.blobs} blobs, {human_size(result.bytes)}; {result.temp_files} temp files")
    from polyarch.pipeline.prune import prune_build_state

    # a dry run deleted nothing: the build state is judged as if it had
    doomed = frozenset(str(d) for d in result.digests) if dry_run else frozenset()
    built = prune_build_state(app.store.root, app.images, grace=grace, dry_run=dry_run, doomed=doomed)
    line = f"{verb} {built.cache_entries} build cache entries"
    if built.skipped_busy:
        line += "; snapshots kept: a build is running"
    else:
        line += f", {built.snapshots} snapshots, {human_size(built.snapshot_bytes)}"
    click.echo(line)
    if not built.skipped_busy:
        click.echo(f"{verb} {built.cache_mounts} cache mounts, {human_size(built.cache_mount_bytes)}")
