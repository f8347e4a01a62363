"""Attestations in the CLI: the build and bake flags, making them after a build, and ``polyarch attestations``.

``attest_options`` adds ``--sbom``, ``--provenance``, ``--attest`` and ``--attest-mode`` to a command;
``build_facts`` gathers what provenance says of the build (git commit and remote of the context, Dockerfile
digest, build args, secrets by id); ``attest_result`` makes the statements of a build result and attaches them
(referrers in the store, or a new index the buildx way) before anything is exported.

``polyarch attestations ls REF`` lists every platform's attestations (store name, OCI layout or registry
reference); ``get REF --type sbom|provenance [--platform P]`` prints the statements as JSON (one per line when
there are several).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from polyarch.cli.context import AppContext, pass_app
from polyarch.cli.registry_cmds import client_options, make_client

if TYPE_CHECKING:
    from polyarch.attest.options import AttestOptions
    from polyarch.attest.provenance import BuildFacts
    from polyarch.content.images import ImageStore
    from polyarch.exporters.assemble import BuildResult
    from polyarch.frontend.convert.plan import BuildPlan
    from polyarch.registry.client import RegistryClient

__all__ = ["AttestCommand", "attest_options", "attest_result", "attestations", "build_facts",
           "missing_attestations", "parse_flags"]

F = TypeVar("F", bound=Callable[..., Any])


class AttestCommand(click.Command):
    """A command whose ``--sbom`` and ``--provenance`` take a value only as ``--flag=VALUE`` (buildx's optional
    values): a bare ``--sbom`` is ``--sbom=true`` and the next word stays an argument (``build --sbom .``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                out += args[i:]
                break
            out.append(f"{arg}=true" if arg in ("--sbom", "--provenance") else arg)
        return super().parse_args(ctx, out)


def attest_options(f: F) -> F:
    """``--sbom[=VALUE]``, ``--provenance[=VALUE]``, ``--attest`` (repeatable), ``--attest-mode``; the command
    must be an ``AttestCommand``."""
    f = click.option("--attest-mode", "attest_mode", type=click.Choice(["referrers", "buildx"]), default="referrers",
                     help="Attach attestations as OCI 1.1 referrers of each platform manifest (default) or as "
                          "buildx does (unknown/unknown index entries).")(f)
    f = click.option("--attest", "attest", multiple=True, metavar="type=sbom|provenance,…",
                     help="Attestation: type=sbom[,generator=…] | type=provenance[,mode=min|max][,version=v1|v0.2]"
                          "[,builder-id=…]; disabled=true turns one off.")(f)
    f = click.option("--provenance", "provenance", default=None,
                     metavar="true|false|mode=min|max,…", help="Shorthand for --attest=type=provenance.")(f)
    f = click.option("--sbom", "sbom", default=None,
                     metavar="true|false|generator=…", help="Shorthand for --attest=type=sbom.")(f)
    return f


def parse_flags(sbom: str | None, provenance: str | None, attest: Sequence[str], mode: str) -> AttestOptions:
    from polyarch.attest.options import parse_attest

    return parse_attest(sbom, provenance, attest, mode)


def _git(ctx_dir: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(ctx_dir), *args], capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _strip_credentials(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url


def _when(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_facts(*, ctx_dir: Path, context_arg: str, dockerfile_name: str, dockerfile_text: str,
                build_args: Mapping[str, str], target: str, platforms: Sequence[str], secrets: Sequence[str],
                ssh: Sequence[str], epoch: int | None, started: float, opts: AttestOptions) -> BuildFacts:
    """What the provenance says of this build (secrets and ssh by id; credentials removed from URLs)."""
    from polyarch import __version__
    from polyarch import platform as plat
    from polyarch.attest.provenance import BuildFacts
    from polyarch.digest import Digest
    from polyarch.pipeline.ctxurl import parse_git_url

    commit = _git(ctx_dir, "rev-parse", "HEAD") if (ctx_dir / ".git").exists() else ""
    remote = _strip_credentials(context_arg) if parse_git_url(context_arg) is not None else ""
    if commit and not remote:
        remote = _strip_credentials(_git(ctx_dir, "config", "--get", "remote.origin.url"))
    finished = time.time()
    when_start, when_end = (_when(epoch), _when(epoch)) if epoch is not None else (_when(started), _when(finished))
    seed = hashlib.sha256(f"{dockerfile_text}\0{sorted(build_args.items())}\0{target}\0{platforms}".encode())
    invocation = str(uuid.UUID(bytes=seed.digest()[:16])) if epoch is not None else str(uuid.uuid4())
    return BuildFacts(builder_id=opts.builder_id, builder_version=__version__, builder_platform=str(plat.host()),
                      dockerfile_name=dockerfile_name, dockerfile_digest=Digest.of(dockerfile_text.encode()),
                      build_args=dict(build_args), target=target, platforms=tuple(platforms),
                      secrets=tuple(sorted(secrets)), ssh=tuple(sorted(ssh)), context_uri=remote,
                      context_commit=commit, started=when_start, finished=when_end, invocation_id=invocation,
                      reproducible=epoch is not None)


def attest_result(images: ImageStore, result: BuildResult, plan: BuildPlan, opts: AttestOptions, facts: BuildFacts,
                  *, name: str, epoch: int | None, progress: Any = None
                  ) -> tuple[BuildResult, Callable[[BuildResult], BuildResult] | None]:
    """Make and attach the attestations ``opts`` asks for: the result comes back unchanged (referrers) or with
    the new index (``--attest-mode=buildx``), with the hook ``export(attest=…)`` calls for an output that changed
    the manifests (the same statements about the new digests; no layer read twice)."""
    if not opts.any:
        return result, None
    from polyarch.attest.attach import attach_buildx, attach_referrers
    from polyarch.attest.generate import make_statements
    from polyarch.attest.layers import LayerCache
    from polyarch.solver.cache import BuildCache

    created = _when(epoch) if epoch is not None else facts.finished
    what = " and ".join(k for k, on in (("SBOM", opts.sbom), ("provenance", opts.provenance)) if on)
    cache = LayerCache()

    def run(target: BuildResult) -> BuildResult:
        indexes = BuildCache.in_store(images.store.root)  # layer path indexes: what pulls captured for the SBOM
        try:
            statements = make_statements(images, [i.descriptor for i in target.images], opts, facts,
                                         plan.platforms, name=name, created=created, cache=cache, indexes=indexes)
        finally:
            indexes.close()
        if opts.mode == "buildx":
            return replace(target, index=attach_buildx(images, target.index, statements))
        attach_referrers(images, statements)
        return target

    if progress is None:
        return run(result), run
    with progress.vertex(f"generating {what} attestations"):
        return run(result), run


# --- reading ------------------------------------------------------------------------------------------------


def template_view(opened: Any, kind: str) -> dict[str, Any]:
    """``imagetools inspect --format '{{json .Provenance}}'`` / ``'{{json .SBOM}}'`` as buildx shows them: for an
    index, platform → ``{"SLSA": predicate}`` / ``{"SPDX": document}`` (``{"CycloneDX": document}`` for a CycloneDX
    SBOM); for a single manifest the inner object."""
    from polyarch.attest.read import list_attestations, read_statement
    from polyarch.oci.spec import Index

    out: dict[str, Any] = {}
    for att in list_attestations(opened):
        if att.kind == kind and att.platform not in out:
            key = "SLSA" if kind == "provenance" else "CycloneDX" if "cyclonedx" in att.predicate_type else "SPDX"
            out[att.platform] = {key: read_statement(opened, att).get("predicate")}
    if not isinstance(opened.document, Index):
        return next(iter(out.values()), {})
    return out


def missing_attestations(opened: Any, platforms: Sequence[Any] = ()) -> list[str]:
    """``verify --require-attestations``: one line per platform (of ``platforms``, default all) that lacks an
    SBOM or a provenance attestation."""
    from polyarch.attest.read import list_attestations

    found = list_attestations(opened)
    have = {(a.platform, a.kind) for a in found}
    wanted = {str(p) for p in platforms}
    lines = []
    for plat in opened.platforms():
        if wanted and str(plat) not in wanted:
            continue
        for kind in ("sbom", "provenance"):
            if (str(plat), kind) not in have:
                lines.append(f"{plat}: missing-attestation: no {kind} attestation")
    return lines


@click.group("attestations")
def attestations() -> None:
    """List and read the SBOM and provenance attestations of an image."""


def _open(app: AppContext, ref: str, insecure: tuple[str, ...], tls_ca: str | None,
          clients: list[RegistryClient]) -> Any:
    from polyarch.sources import VERIFY_ORDER, open_source, parse_location

    def registry() -> RegistryClient:
        clients.append(make_client(app.env, insecure, tls_ca))
        return clients[-1]

    return open_source(parse_location(ref), images=lambda: app.images, registry=registry, order=VERIFY_ORDER)


def _select(app: AppContext, ref: str, platform: str | None, kind: str | None, insecure: tuple[str, ...],
            tls_ca: str | None, body: Callable[[Any, list[Any]], None]) -> None:
    from polyarch import platform as plat
    from polyarch.attest.read import list_attestations

    wanted = plat.parse(platform) if platform else None
    clients: list[RegistryClient] = []
    try:
        with _open(app, ref, insecure, tls_ca, clients) as opened:
            found = list_attestations(opened)
            if wanted is not None:
                found = [a for a in found if a.platform == str(wanted)]
            if kind:
                found = [a for a in found if a.kind == kind]
            body(opened, found)
    finally:
        for client in clients:
            client.close()


@attestations.command("ls")
@click.argument("ref")
@click.option("--platform", default=None, help="Only this platform.")
@click.option("--type", "kind", type=click.Choice(["sbom", "provenance"]), default=None, help="Only this type.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@client_options
@pass_app
def ls(app: AppContext, ref: str, platform: str | None, kind: str | None, fmt: str, insecure: tuple[str, ...],
       tls_ca: str | None) -> None:
    """List REF's attestations: platform, type, predicate type, how attached, manifest digest."""

    def show(_opened: Any, found: list[Any]) -> None:
        if fmt == "json":
            rows = [{"platform": a.platform, "subject": str(a.subject), "type": a.kind, "predicateType":
                     a.predicate_type, "attached": a.attached, "manifest": str(a.manifest.digest),
                     "digest": str(a.layer.digest), "size": a.layer.size} for a in found]
            click.echo(json.dumps(rows, indent=2))
            return
        click.echo(f"{'PLATFORM':<16} {'TYPE':<11} {'ATTACHED':<9} {'PREDICATE':<34} MANIFEST")
        for a in found:
            click.echo(f"{a.platform:<16} {a.kind or '-':<11} {a.attached:<9} {a.predicate_type:<34} "
                       f"{a.manifest.digest}")

    _select(app, ref, platform, kind, insecure, tls_ca, show)


@attestations.command("get")
@click.argument("ref")
@click.option("--platform", default=None, help="Only this platform.")
@click.option("--type", "kind", type=click.Choice(["sbom", "provenance"]), required=True)
@click.option("--predicate", is_flag=True, help="Print only the predicate (the SPDX document, the provenance).")
@client_options
@pass_app
def get(app: AppContext, ref: str, platform: str | None, kind: str, predicate: bool, insecure: tuple[str, ...],
        tls_ca: str | None) -> None:
    """Print REF's attestations of one type as JSON, one per platform (one line each when there are several)."""
    from polyarch.attest.read import read_statement

    def show(opened: Any, found: list[Any]) -> None:
        if not found:
            where = f" for {platform}" if platform else ""
            click.echo(f"error: {ref} has no {kind} attestation{where}", err=True)
            sys.exit(1)
        docs = [read_statement(opened, a) for a in found]
        docs = [d.get("predicate") for d in docs] if predicate else docs
        if len(docs) == 1:
            click.echo(json.dumps(docs[0], indent=2))
        else:
            for d in docs:
                click.echo(json.dumps(d, separators=(",", ":")))

    _select(app, ref, platform, kind, insecure, tls_ca, show)
