"""``polyarch build``: Dockerfile → one image per platform → one index; buildx's flags.

``--call outline|targets|plan|check`` and ``--check`` run the frontend's reports (``polyarch.frontend.reports.call``)
without building. Otherwise: plan, solve (progress on stderr), assemble, then export to every output given
(``--load``, ``--push``, ``-o``), then ``--metadata-file`` and ``--iidfile``. Nothing is exported when any
platform fails.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from polyarch.cli.attestations import AttestCommand, attest_options
from polyarch.cli.context import AppContext, pass_app
from polyarch.cli.registry_cmds import client_options, registry_factory, reporting_to
from polyarch.errors import UsageError

__all__ = ["build", "debug_option"]

# ``-D/--debug`` on the command itself, as on the top-level group: ``cli.main`` sees it in the arguments and
# shows tracebacks (here it only has to be accepted)
debug_option = click.option("-D", "--debug", "debug", is_flag=True, help="Show tracebacks for errors.")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start})") from None


def _pairs(items: tuple[str, ...], what: str, *, from_env: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
        if not eq:
            if not from_env:
                raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def _excludes(ctx_dir: Path, df_path: Path) -> list[str]:
    from polyarch.frontend.dockerignore import ignore_file_candidates, parse_dockerignore

    for candidate in ignore_file_candidates(str(df_path)):
        path = Path(candidate) if candidate != ".dockerignore" else ctx_dir / candidate
        if path.is_file():
            return [str(p) for p in parse_dockerignore(_read(path))]
    return []


def _secrets(items: tuple[str, ...]) -> dict[str, bytes]:
    """``--secret id=ID[,src=PATH|,source=PATH|,env=VAR][,type=file|env]`` → id → value (read now)."""
    out: dict[str, bytes] = {}
    for item in items:
        attrs: dict[str, str] = {}
        for part in item.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                raise UsageError(f"invalid --secret {item!r}: expected key=value pairs")
            attrs[key.strip().lower()] = value
        sid = attrs.get("id", "")
        src = attrs.get("src") or attrs.get("source") or ""
        env = attrs.get("env", "")
        if attrs.get("type") == "env" and not env:
            env, src = src or sid, ""
        if not sid:
            sid = Path(src).name if src else env
        if not sid:
            raise UsageError(f"invalid --secret {item!r}: id= is required")
        if env:
            if env not in os.environ:
                raise UsageError(f"--secret {sid}: environment variable {env} is not set")
            out[sid] = os.environ[env].encode()
        else:
            path = Path(src or sid)
            try:
                out[sid] = path.read_bytes()
            except OSError as exc:
                raise UsageError(f"--secret {sid}: cannot read {path}: {exc.strerror or exc}") from None
    return out


def _ssh(items: tuple[str, ...]) -> dict[str, str]:
    """``--ssh default`` ($SSH_AUTH_SOCK) or ``--ssh ID=SOCKET``."""
    out: dict[str, str] = {}
    for item in items:
        sid, eq, sock = item.partition("=")
        if not eq:
            sock = os.environ.get("SSH_AUTH_SOCK", "")
            if not sock:
                raise UsageError(f"--ssh {sid}: SSH_AUTH_SOCK is not set", hint=f"use --ssh {sid}=/path/to/agent.sock")
        out[sid or "default"] = sock
    return out


@click.command("build", cls=AttestCommand)
@click.argument("context", default=".")
@click.option("-f", "--file", "dockerfile", default=None, help="Name of the Dockerfile (default: CONTEXT/Dockerfile).")
@click.option("--platform", "platforms", multiple=True, help="Target platforms (comma-separated or repeated).")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and optionally a tag (name:tag).")
@click.option("--load", is_flag=True, help="Store every platform and the index in the local store.")
@click.option("--push", is_flag=True, help="Push to the registry of each -t name (= -o type=registry).")
@click.option("-o", "--output", "outputs", multiple=True,
              help="type=oci|docker|local|tar|registry|image,dest=…,name=… (repeatable).")
@click.option("--target", default="", help="Target build stage.")
@click.option("--build-arg", "build_args", multiple=True, help="Build-time variable KEY=VALUE (or KEY from the env).")
@click.option("--build-context", "build_contexts", multiple=True,
              help="Extra named context NAME=PATH|docker-image://REF|oci-layout://PATH[@DIGEST|:TAG]|GIT-URL|URL.")
@click.option("--label", "labels", multiple=True, help="Image label KEY=VALUE.")
@click.option("--annotation", "annotations", multiple=True,
              help="Annotation [TYPE[PLATFORM]:]KEY=VALUE; TYPE: manifest (default), index, manifest-descriptor.")
@click.option("--secret", "secrets", multiple=True, help="Secret for RUN --mount=type=secret: id=ID[,src=PATH|,env=VAR].")
@click.option("--ssh", "ssh", multiple=True, help="SSH agent socket for RUN --mount=type=ssh: default|ID[=SOCKET].")
@click.option("--no-cache", is_flag=True, help="Do not use the build cache.")
@click.option("--no-cache-filter", "no_cache_filter", multiple=True, metavar="STAGE",
              help="Do not use the build cache for the steps of these stages (comma-separated or repeated).")
@click.option("--add-host", "add_hosts", multiple=True, metavar="HOST:IP",
              help="Add a host-to-IP mapping to /etc/hosts of RUN steps (HOST:IP or HOST=IP).")
@click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]",
              help="Resource limit of RUN steps (nofile, nproc, core, …; -1: unlimited).")
@click.option("--shm-size", "shm_size", default=None, metavar="SIZE", help="Size of /dev/shm of RUN steps (64m, 1g).")
@click.option("--cgroup-parent", "cgroup_parent", default=None, metavar="PATH",
              help="Parent cgroup of RUN steps' containers (cgroupfs path).")
@click.option("--cache-from", "cache_from", multiple=True,
              help="Import build cache: type=local,src=DIR | type=registry,ref=REF | REF.")
@click.option("--cache-to", "cache_to", multiple=True,
              help="Export build cache: type=local,dest=DIR | type=registry,ref=REF [,mode=min|max]"
                   "[,ignore-error=true].")
@click.option("--pull", is_flag=True, help="Always pull FROM images (default: only when the store lacks them).")
@click.option("--network", "network", default="default", type=click.Choice(["default", "none", "host"]),
              help="Network of RUN steps (RUN --network= overrides): default (own namespace, outbound access), "
                   "none, host (needs --allow network.host).")
@click.option("--allow", "allow", multiple=True, metavar="ENTITLEMENT",
              help="Allow extra privileged entitlement: network.host, security.insecure.")
@click.option("--progress", "progress_mode", default="auto",
              type=click.Choice(["auto", "tty", "plain", "rawjson", "quiet"]), help="Progress output.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image digest.")
@click.option("--metadata-file", default=None, type=click.Path(dir_okay=False), help="Write build metadata as JSON.")
@click.option("--iidfile", default=None, type=click.Path(dir_okay=False), help="Write the image (index) digest.")
@click.option("--call", "call_name", default="build", help="build, outline, targets, plan or check.")
@click.option("--check", is_flag=True, help="Shorthand for --call=check.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format of --call.")
@click.option("--verify", "verify", is_flag=True,
              help="Before any output: check every platform holds binaries of its own architecture (polyarch verify).")
@click.option("--builder", "builder_name", default=None,
              help="Builder instance to use (default: $POLYARCH_BUILDER, else the one in use).")
@click.option("--node-failover/--no-node-failover", "node_failover", default=None,
              help="When a builder node fails (unreachable, connection lost, out of disk): rebuild its platforms on "
                   "any node that runs them, emulated if need be / never (the build fails). Default: only on nodes "
                   "that run them as planned (natively).")
@debug_option
@attest_options
@client_options
@pass_app
def build(app: AppContext, context: str, dockerfile: str | None, platforms: tuple[str, ...], tags: tuple[str, ...],
          load: bool, push: bool, outputs: tuple[str, ...], target: str, build_args: tuple[str, ...],
          build_contexts: tuple[str, ...], labels: tuple[str, ...], annotations: tuple[str, ...], secrets: tuple[str, ...], ssh: tuple[str, ...],
          no_cache: bool, cache_from: tuple[str, ...], cache_to: tuple[str, ...], pull: bool, network: str,
          allow: tuple[str, ...], progress_mode: str, quiet: bool,
          metadata_file: str | None, iidfile: str | None, call_name: str, check: bool, fmt: str,
          verify: bool = False, insecure: tuple[str, ...] = (), tls_ca: str | None = None,
          builder_name: str | None = None, sbom: str | None = None, provenance: str | None = None,
          attest: tuple[str, ...] = (), attest_mode: str = "referrers", no_cache_filter: tuple[str, ...] = (),
          add_hosts: tuple[str, ...] = (), ulimits: tuple[str, ...] = (), shm_size: str | None = None,
          cgroup_parent: str | None = None, debug: bool = False, node_failover: bool | None = None) -> None:
    """Build an image for one or more platforms from a Dockerfile."""
    from polyarch.cli.buildctx import RemoteArgs
    from polyarch.oci import reference
    from polyarch.platform import parse_list

    remote = RemoteArgs(app)  # git, http(s) and stdin contexts; removed when the command ends
    fetched = remote.main(context, dockerfile)
    if fetched is not None:
        ctx_dir, df_path, text = fetched.directory, fetched.dockerfile, fetched.text
    else:
        ctx_dir = Path(context)
        if not ctx_dir.is_dir():
            raise UsageError(f"build context {context!r} is not a directory")
        df_path = Path(dockerfile) if dockerfile else ctx_dir / "Dockerfile"
        if dockerfile == "-":
            text, df_path = sys.stdin.read(), Path("Dockerfile")
        else:
            text = _read(df_path)
    args = _pairs(build_args, "--build-arg", from_env=True)
    excludes = _excludes(ctx_dir, df_path)
    wanted = parse_list(platforms)
    from polyarch.cli.builder import selected_builder

    chosen = selected_builder(app, builder_name)  # an unknown builder or a bad builders file fails here
    what = "check" if check else call_name
    if what != "build":
        from polyarch.frontend.reports.call import CALLS, call

        if what not in CALLS:
            raise UsageError(f"unknown --call {what!r}", hint="available: build, " + ", ".join(CALLS))
        from polyarch.pipeline.bases import local_resolver

        report_text = call(what, text, df_path.name, wanted, target, args, context_excludes=excludes, fmt=fmt,
                           resolve_image=local_resolver(app.images))
        click.echo(report_text.text, nl=False)
        if report_text.exit_code:
            sys.exit(report_text.exit_code)
        return
    early = None
    if not chosen.is_local:  # reach the nodes now: their start-up overlaps this one's (cli/node.py)
        from polyarch.cli.node import connect_nodes

        early = connect_nodes(app, chosen)

    from polyarch.cli.interrupt import cancel_on_signals
    from polyarch.cli.wiring import build_deps, enter_rootless
    from polyarch.exporters.cache import parse_cache_spec
    from polyarch.exporters.dispatch import export
    from polyarch.exporters.exporter import ExportReport
    from polyarch.exporters.metadata import build_metadata
    from polyarch.exporters.spec import OutputSpec, parse_output, require_epoch
    from polyarch.pipeline.run import BuildRequest, build_image
    from polyarch.pipeline.runexec import parse_allow
    from polyarch.progress import Progress, make_renderer
    from polyarch.worker.reap import reap_crashed

    entitlements = parse_allow(allow)
    from polyarch.pipeline.runflags import parse_no_cache_filter, run_options

    run_opts = run_options(add_hosts=add_hosts, ulimits=ulimits, shm_size=shm_size, cgroup_parent=cgroup_parent)
    if run_opts.cgroup_parent:
        from polyarch.pipeline.runflags import check_rootless
        from polyarch.worker.userns import in_user_namespace

        check_rootless(run_opts, rootless=os.geteuid() != 0 or in_user_namespace())
    from polyarch.cli.attestations import attest_result, build_facts, parse_flags

    attest_opts = parse_flags(sbom, provenance, attest, attest_mode)  # bad values fail before any work
    if chosen.is_local:
        enter_rootless(app)  # a normal user: its user namespace (worker/userns.py), before any thread
    reap_crashed(app.store.root, runtime=app.env.runtime)
    from polyarch.cli.prune import gc_after_build, gc_policy

    gc = gc_policy(app)  # the config file's [gc], read before the build: a bad file fails before any work

    for tag in tags:
        reference.parse(tag)
    specs = [parse_output(o) for o in outputs]
    if load:
        specs.append(OutputSpec("image"))
    if push:
        specs.append(OutputSpec("registry"))
    if any(s.type in ("image", "registry") for s in specs) and not tags \
            and not all(s.attrs.get("name") for s in specs if s.type in ("image", "registry")):
        raise UsageError("--load and --push need a name", hint="add -t NAME")
    contexts = remote.named(_pairs(build_contexts, "--build-context"))
    from polyarch.exporters.assemble import Annotations

    Annotations.parse(annotations)  # flag errors before any work
    epoch = app.env.build_epoch()
    require_epoch(specs, epoch)
    req = BuildRequest(text, df_path.name, ctx_dir, tuple(wanted), target, args, _pairs(labels, "--label"),
                       tuple(excludes), contexts, no_cache, epoch, _secrets(secrets), _ssh(ssh), pull, annotations,
                       tuple(parse_cache_spec(c, export=False) for c in cache_from),
                       tuple(parse_cache_spec(c, export=True) for c in cache_to), network=network,
                       allow=entitlements, run_options=run_opts, no_cache_filter=parse_no_cache_filter(no_cache_filter))
    progress = Progress(make_renderer("quiet" if quiet else progress_mode))
    registry = reporting_to(registry_factory(app.env, insecure, tls_ca), progress)  # retries, blobs: progress
    import time

    started = time.time()
    try:
        with cancel_on_signals() as cancel:  # ^C: cancel the build (exit 130), a second ^C: exit at once
            if chosen.is_local:
                plan, result = build_image(build_deps(app, registry), req, progress=progress, cancel=cancel)
            else:  # platforms spread over the builder's nodes (cli/node.py, nodes/distribute.py)
                from polyarch.cli.node import build_over_nodes, node_push

                pushes = node_push(specs, tags, layers_needed=verify or attest_opts.any)  # nodes push by digest
                [(plan, result)] = build_over_nodes(app, chosen, [req], progress=progress, cancel=cancel,
                                                    registry=registry, pushes=[pushes] if pushes else (),
                                                    node_failover=node_failover, connections=early)
        for finding in plan.findings:
            progress.message(f"{finding.rule}: {finding.message} ({finding.filename}:{finding.start_line})")
        for name in plan.unused_build_args:
            progress.message(f"build-arg {name} was not consumed by any instruction")
        if verify:
            verify_before_export(app, result.index, wanted, progress)
        if attest_opts.any:
            facts = build_facts(ctx_dir=ctx_dir, context_arg=context, dockerfile_name=df_path.name,
                                dockerfile_text=text, build_args=args, target=target,
                                platforms=[str(p.platform) for p in result.images], secrets=list(req.secrets),
                                ssh=list(req.ssh), epoch=epoch, started=started, opts=attest_opts)
            result, reattest = attest_result(app.images, result, plan, attest_opts, facts,
                                             name=tags[0] if tags else "", epoch=epoch, progress=progress)
        else:
            reattest = None
        report = ExportReport(result=result)
        if not specs:
            progress.message("no output specified: the build result stays in the build cache only "
                             "(use --load, --push or -o)")
        else:
            with progress.vertex("exporting to image") as handle:
                report = export(app.images, result, specs, tags=tags, client_factory=registry, epoch=epoch,
                                attest=reattest)
                for name in report.names:
                    handle.log(f"naming to {name}" if name not in report.pushed else
                               f"pushed {name}@{report.pushed[name]}")
    finally:
        progress.close()
    final = report.result or result
    digest = str(final.index.digest)
    if iidfile:
        Path(iidfile).write_text(digest)
    if metadata_file:
        meta = build_metadata(final, list(dict.fromkeys([*tags, *report.names])))
        Path(metadata_file).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    gc_after_build(app, gc)  # the build cache cut back to the [gc] policy
    if quiet:
        click.echo(digest)


def verify_before_export(app: AppContext, index: Any, wanted: Sequence[Any], progress: Any, *, label: str = "") -> None:
    """``--verify``: run polyarch verify on the built index before anything is exported or pushed.

    :raises BuildError: naming the first offending file; every problem is logged to the progress output.
    """
    from polyarch.errors import BuildError
    from polyarch.verify import verify_image

    with progress.vertex(f"{label}verifying every platform's binaries") as handle:
        report = verify_image(app.images, index, require=wanted)
        for line in report.lines():
            handle.log(line)
    if not report.ok:
        lines = report.lines()
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise BuildError(f"{label}verify failed, nothing was exported: {lines[0]}{more}",
                         hint="a stage probably builds for the build machine: pass GOARCH=$TARGETARCH (or the "
                              "equivalent) in the $BUILDPLATFORM stage")
