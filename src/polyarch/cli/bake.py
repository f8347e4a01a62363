"""``polyarch bake``: build every selected target of HCL / JSON / compose files in one solve.

``--print`` shows the resolved definition in buildx's JSON shape; ``--list targets|variables`` lists them.
Otherwise each target becomes a ``BuildRequest`` and all of them go to ``build_many`` together, so a step two
targets share (same vertex digest) runs once and independent targets run in parallel; then each target exports
like ``polyarch build`` (its ``tags``, its ``output`` list, ``--load``, ``--push``). A target used as a named
context of another (``contexts = { src = "target:base" }``) is built in an earlier round and handed over as a
local image. Nothing is exported when any target fails.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from polyarch.cli.attestations import AttestCommand
from polyarch.cli.build import debug_option
from polyarch.cli.context import AppContext, pass_app
from polyarch.cli.registry_cmds import client_options, registry_factory, reporting_to
from polyarch.errors import UsageError

if TYPE_CHECKING:
    from polyarch.frontend.bake import Evaluator, Target
    from polyarch.nodes.model import Builder
    from polyarch.registry.client import RegistryClient

__all__ = ["bake", "read_bake_files"]


@click.command("bake", cls=AttestCommand)
@click.argument("names", nargs=-1)
@click.option("-f", "--file", "files", multiple=True, help="Build definition file (repeatable; default: buildx's lookup).")
@click.option("--set", "overrides", multiple=True, help="Override a target attribute: PATTERN.KEY[.NAME]=VALUE.")
@click.option("--print", "print_", is_flag=True, help="Print the resolved definition as JSON, without building.")
@click.option("--list", "list_", default=None, type=click.Choice(["targets", "variables"]), help="List targets or variables.")
@click.option("--load", is_flag=True, help="Store every target's images in the local store (= --set *.output=type=image).")
@click.option("--push", is_flag=True, help="Push every target's tags (= --set *.output=type=registry).")
@click.option("--no-cache", is_flag=True, help="Do not use the build cache.")
@click.option("--pull", is_flag=True, help="Always pull FROM images.")
@click.option("--allow", "allow", multiple=True, metavar="ENTITLEMENT",
              help="Allow extra privileged entitlement: network.host, security.insecure.")
@click.option("--progress", "progress_mode", default="auto",
              type=click.Choice(["auto", "tty", "plain", "rawjson", "quiet"]), help="Progress output.")
@click.option("--metadata-file", default=None, type=click.Path(dir_okay=False), help="Write per-target build metadata as JSON.")
@click.option("--verify", is_flag=True,
              help="Before any output: check every target's platforms hold binaries of their own architecture.")
@click.option("--builder", "builder_name", default=None,
              help="Builder instance to use (default: $POLYARCH_BUILDER, else the one in use).")
@click.option("--node-failover/--no-node-failover", "node_failover", default=None,
              help="When a builder node fails (unreachable, connection lost, out of disk): rebuild its platforms on "
                   "any node that runs them, emulated if need be / never (the build fails). Default: only on nodes "
                   "that run them as planned (natively).")
@click.option("--sbom", "sbom", default=None, metavar="true|false|generator=…",
              help="Shorthand for --set=*.attest=type=sbom.")
@click.option("--provenance", "provenance", default=None, metavar="true|false|mode=min|max,…",
              help="Shorthand for --set=*.attest=type=provenance.")
@click.option("--attest-mode", "attest_mode", type=click.Choice(["referrers", "buildx"]), default="referrers",
              help="Attach attestations as OCI 1.1 referrers (default) or as buildx does.")
@debug_option
@client_options
@pass_app
def bake(app: AppContext, names: tuple[str, ...], files: tuple[str, ...], overrides: tuple[str, ...], print_: bool,
         list_: str | None, load: bool, push: bool, no_cache: bool, pull: bool, progress_mode: str,
         metadata_file: str | None, verify: bool = False, allow: tuple[str, ...] = (), insecure: tuple[str, ...] = (),
         tls_ca: str | None = None, builder_name: str | None = None, sbom: str | None = None,
         provenance: str | None = None, attest_mode: str = "referrers", debug: bool = False,
         node_failover: bool | None = None) -> None:
    """Build several targets from a bake or compose file."""
    from polyarch.frontend.bake import Evaluator, parse_files, parse_overrides
    from polyarch.platform import host

    env = dict(os.environ)
    ev = Evaluator(parse_files(read_bake_files(files, Path(".")), env), env, local_platform=str(host()))
    if list_ == "variables":
        ev.validate()
        for name, value, desc in ev.variables():
            shown = value if isinstance(value, str) else json.dumps(value)
            click.echo(f"{name}\t{shown}" + (f"\t{desc}" if desc else ""))
        return
    if list_ == "targets":
        for name in ev.target_names():
            click.echo(name)
        for name in ev.group_blocks:
            group = ev.group(name)
            click.echo(f"{name}\t(group: {', '.join(group.targets) if group else ''})")
        return
    definition = ev.definition(list(names) or ["default"], parse_overrides(overrides))
    if print_:
        click.echo(json.dumps(definition.to_print_json(), indent=2))
        return
    from polyarch.pipeline.bases import local_resolver
    from polyarch.pipeline.runexec import parse_allow

    from .bake_request import run_calls
    from .builder import selected_builder

    chosen = selected_builder(app, builder_name)  # an unknown builder or a bad builders file fails here
    targets, status = run_calls(definition.targets, local_resolver(app.images))  # call = "check" etc.
    if targets:
        _build(app, ev, targets, load=load, push=push, no_cache=no_cache, pull=pull,
               progress_mode=progress_mode, metadata_file=metadata_file, overrides=overrides, verify=verify,
               allow=parse_allow(allow), registry=registry_factory(app.env, insecure, tls_ca),
               attest=(sbom, provenance, attest_mode), builder=chosen, node_failover=node_failover)
    if status:
        sys.exit(status)


def _build(app: AppContext, ev: Evaluator, targets: Sequence[Target], *, load: bool, push: bool, no_cache: bool, pull: bool,
           progress_mode: str, metadata_file: str | None, overrides: tuple[str, ...], verify: bool = False,
           allow: frozenset[str] = frozenset(), registry: Callable[[], RegistryClient],
           attest: tuple[str | None, str | None, str] = (None, None, "referrers"),
           builder: Builder | None = None, node_failover: bool | None = None) -> None:
    from polyarch.exporters.dispatch import export
    from polyarch.exporters.exporter import ExportReport
    from polyarch.exporters.metadata import build_metadata
    from polyarch.exporters.spec import require_epoch
    from polyarch.frontend.bake.overrides import parse_overrides
    from polyarch.progress import Progress, make_renderer

    from .bake_request import (
        check_supported,
        output_specs,
        plan_rounds,
        target_attest,
        to_request,
        with_dependencies,
    )

    chosen = with_dependencies(ev, targets, parse_overrides(overrides))
    rounds = plan_rounds(list(chosen.values()))
    for t in chosen.values():  # an attribute polyarch cannot honour fails the bake before anything is built
        check_supported(t, allow)
    attests = {name: target_attest(t, *attest) for name, t in chosen.items()}
    selected = {t.name for t in targets}  # dependencies pulled in by target: contexts get no --load/--push
    specs = {name: output_specs(t, load=load and name in selected, push=push and name in selected)
             for name, t in chosen.items()}
    for name, t in chosen.items():
        if any(s.type in ("image", "registry") for s in specs[name]) and not t.get("tags") \
                and not all(s.attrs.get("name") for s in specs[name] if s.type in ("image", "registry")):
            raise UsageError(f"target {name!r}: --load and --push need a name", hint=f"add tags to {name!r} "
                             f"or --set {name}.tags=NAME")
    from polyarch.cli.interrupt import cancel_on_signals
    from polyarch.cli.wiring import build_deps, enter_rootless
    from polyarch.pipeline.run import build_many
    from polyarch.worker.reap import reap_crashed

    if builder is None or builder.is_local:
        enter_rootless(app)  # a normal user: its user namespace (worker/userns.py), before any thread
    reap_crashed(app.store.root, runtime=app.env.runtime)
    from polyarch.cli.prune import gc_after_build, gc_policy

    gc = gc_policy(app)  # the config file's [gc], read before the build: a bad file fails before any work
    epoch = app.env.build_epoch()
    require_epoch([s for target_specs in specs.values() for s in target_specs], epoch)
    progress = Progress(make_renderer(progress_mode))
    registry = reporting_to(registry, progress)  # retries and blob transfers as progress messages
    deps = build_deps(app, registry)
    handed: dict[str, str] = {}  # target -> local image name given to later rounds
    needed = {v[7:] for t in chosen.values() for v in t.get("contexts", {}).values()
              if v and v.startswith("target:")}
    built: dict[str, Any] = {}
    plans: dict[str, Any] = {}
    reattest: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    import time

    started = time.time()
    try:
        for names in rounds:
            reqs = [to_request(chosen[n], handed, no_cache=no_cache, pull=pull, epoch=epoch, allow=allow)
                    for n in names]
            with cancel_on_signals() as cancel:  # ^C: cancel the build (exit 130), a second ^C: exit at once
                if builder is None or builder.is_local:
                    done = build_many(deps, reqs, progress=progress, cancel=cancel)
                else:  # every target's platforms spread over the builder's nodes (cli/node.py)
                    from polyarch.cli.node import build_over_nodes, node_push

                    pushes = [node_push(specs[n], list(chosen[n].get("tags", ())),  # nodes push by digest
                                        layers_needed=verify or attests[n].any or n in needed) for n in names]
                    done = build_over_nodes(app, builder, reqs, progress=progress, cancel=cancel, registry=registry,
                                            node_failover=node_failover, local_images=tuple(handed.values()),
                                            pushes=pushes if any(pushes) else ())
            for name, (plan, result) in zip(names, done, strict=True):
                built[name], plans[name] = result, plan
                if name in needed:
                    handed[name] = f"polyarch.bake/{name}:{str(result.index.digest)[7:19]}"
                    app.images.set_name(handed[name], result.index)
        if verify:  # every selected target verified before anything is exported
            from polyarch.cli.build import verify_before_export
            from polyarch.platform import parse_list

            for name in sorted(selected & set(built)):
                verify_before_export(app, built[name].index, parse_list(chosen[name].get("platforms") or ()), progress,
                               label=f"[{name}] ")
        for name in sorted(selected & set(built)):  # attestations of the selected targets, before any export
            built[name], reattest[name] = _attest(app, chosen[name], built[name], plans[name], attests[name],
                                                  epoch, started, progress)
        for name, result in built.items():  # every target built: now export, like polyarch build
            report = ExportReport(result=result)
            tags = list(chosen[name].get("tags", ()))
            if specs[name]:
                with progress.vertex(f"[{name}] exporting to image") as handle:
                    report = export(app.images, result, specs[name], tags=tags, client_factory=registry, epoch=epoch,
                                    attest=reattest.get(name))
                    for ref in report.names:
                        handle.log(f"naming to {ref}" if ref not in report.pushed else
                                   f"pushed {ref}@{report.pushed[ref]}")
            final = report.result or result
            metadata[name] = build_metadata(final, list(dict.fromkeys([*tags, *report.names])))
        if not any(specs.values()):
            progress.message("no output specified: the build results stay in the build cache only "
                             "(use --load, --push or output = [...])")
    finally:
        progress.close()
        for ref in handed.values():
            try:
                app.images.remove_name(ref)
            except Exception:  # a temporary name; never fail the bake for it
                pass
    if metadata_file:
        Path(metadata_file).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    gc_after_build(app, gc)  # the build cache cut back to the [gc] policy


def _attest(app: AppContext, t: Target, result: Any, plan: Any, opts: Any, epoch: int | None, started: float,
            progress: Any) -> Any:
    """The target's attestations made and attached (cli/attestations.py): the result, maybe with a new index, and
    the hook ``export`` calls for an output that changes the manifests (None: no attestations)."""
    if not opts.any:
        return result, None
    from polyarch.cli.attestations import attest_result, build_facts

    ctx = Path(t.context)
    inline = t.get("dockerfile-inline")
    df_path = Path(t.dockerfile) if Path(t.dockerfile).is_absolute() else ctx / t.dockerfile
    text = inline if inline is not None else df_path.read_text(encoding="utf-8", errors="replace")
    facts = build_facts(ctx_dir=ctx, context_arg=t.context, dockerfile_name=df_path.name, dockerfile_text=text,
                        build_args=t.build_args(), target=t.get("target", ""),
                        platforms=[str(i.platform) for i in result.images],
                        secrets=[s.split(",")[0].removeprefix("id=") for s in t.get("secret", ())],
                        ssh=list(t.get("ssh", ())), epoch=epoch, started=started, opts=opts)
    tags = list(t.get("tags", ()))
    return attest_result(app.images, result, plan, opts, facts, name=tags[0] if tags else "", epoch=epoch,
                         progress=progress)


def read_bake_files(names: Sequence[str], directory: Path) -> list[tuple[str, str]]:
    """``(filename, text)`` of each bake file in merge order: the ``-f`` names (``-`` is stdin), else every file of
    buildx's lookup (``DEFAULT_FILES``) that exists in ``directory``.

    :raises UsageError: no file found, or a file cannot be read.
    """
    from polyarch.frontend.bake import DEFAULT_FILES

    paths = [Path(n) for n in names] if names else [directory / n for n in DEFAULT_FILES if (directory / n).is_file()]
    if not paths:
        raise UsageError(f"no bake file found in {directory.absolute()}",
                         hint="looked for " + ", ".join(DEFAULT_FILES) + "; or give -f FILE")
    out = []
    for path in paths:
        if str(path) == "-":
            out.append(("-", sys.stdin.read()))
            continue
        try:
            out.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read bake file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return out
