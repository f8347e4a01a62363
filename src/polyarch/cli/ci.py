"""``polyarch ci init``: write (or print with ``--dry-run``) a CI workflow that publishes on every ``v*`` tag.

Platforms and tags come from the flags, else from the project's bake or compose file (buildx's lookup in
DIRECTORY; its default group evaluated without the environment: CI variables are not known yet). ``--bake`` makes
the workflow run ``polyarch bake --push`` over that file's targets instead of ``polyarch build --push``. The texts
are made by ``polyarch.ci``; this module reads the bake file and writes the files.
"""

from __future__ import annotations

from pathlib import Path

import click

from polyarch.errors import UsageError

__all__ = ["ci"]


@click.group("ci")
def ci() -> None:
    """Generate CI workflows that build and publish multi-platform images."""


def _bake_definition(directory: Path, files: tuple[str, ...]):  # type: ignore[no-untyped-def]
    from polyarch.frontend.bake import DEFAULT_FILES, Evaluator, parse_files, parse_overrides
    from polyarch.platform import host

    from .bake import read_bake_files

    if not files and not any((directory / n).is_file() for n in DEFAULT_FILES):
        return None
    texts = read_bake_files([str(directory / f) for f in files], directory)
    ev = Evaluator(parse_files(texts, {}), {}, local_platform=str(host()))
    return ev.definition(["default"], parse_overrides(()))


@ci.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False, exists=True))
@click.option("--provider", required=True, type=click.Choice(["gitea", "forgejo", "github", "woodpecker", "gitlab"]),
              help="CI system whose workflow file to write.")
@click.option("--dry-run", is_flag=True, help="Print the workflow file(s) instead of writing them.")
@click.option("--matrix", is_flag=True,
              help="One job per platform on a runner of that architecture (push by digest), then a merge job.")
@click.option("--platform", "platforms", multiple=True, help="Target platforms (comma-separated or repeated).")
@click.option("-t", "--tag", "tags", multiple=True,
              help="Name to push (repeatable); ${VERSION} is the git tag of the run, e.g. reg.example/app:${VERSION}.")
@click.option("-f", "--file", "dockerfile", default="", help="Dockerfile, relative to the repository root.")
@click.option("--context", default=".", show_default=True, help="Build context, relative to the repository root.")
@click.option("--bake", is_flag=True, help="Run polyarch bake --push over the bake file's targets.")
@click.option("--bake-file", "bake_files", multiple=True,
              help="Bake file relative to DIRECTORY (repeatable; default: buildx's lookup).")
@click.option("--pip-spec", default="polyarch", show_default=True,
              help="What the workflow installs with pip (a version, a git URL, a path).")
@click.option("--force", is_flag=True, help="Overwrite existing workflow files.")
def init(directory: str, provider: str, dry_run: bool, matrix: bool, platforms: tuple[str, ...],
         tags: tuple[str, ...], dockerfile: str, context: str, bake: bool, bake_files: tuple[str, ...],
         pip_spec: str, force: bool) -> None:
    """Write a workflow that publishes DIRECTORY's image(s) on every pushed tag v*.

    It installs polyarch with pip, registers QEMU (or, with --matrix, builds each platform on its own runner),
    logs in with the CI's secrets REGISTRY_USER and REGISTRY_PASSWORD, and builds with a registry cache,
    --verify, an SBOM and a provenance, then pushes.
    """
    from polyarch.ci import BakeTarget, CiSpec, render, spec_error
    from polyarch.platform import parse_list

    root = Path(directory)
    definition = _bake_definition(root, bake_files) if (bake or bake_files or not (platforms and tags)) else None
    if bake and definition is None:
        raise UsageError(f"--bake: no bake or compose file in {root}")
    plats = parse_list(platforms)
    if bake:
        assert definition is not None
        spec = CiSpec(provider, bake=True, bake_files=bake_files, matrix=matrix, pip_spec=pip_spec,
                      bake_targets=tuple(BakeTarget(t.name, tuple(t.get("tags") or ()))
                                         for t in definition.targets if t.get("tags")))
    else:
        if definition is not None and not (plats and tags):
            if len(definition.targets) != 1:
                raise UsageError(f"the bake file has {len(definition.targets)} targets",
                                 hint="give --bake to publish them all, or --platform and --tag")
            target = definition.targets[0]
            plats = plats or parse_list(target.get("platforms") or ())
            tags = tags or tuple(target.get("tags") or ())
            if not dockerfile and target.get("dockerfile"):
                dockerfile = str(Path(target.context) / target.dockerfile)
            context = target.context if context == "." else context
        spec = CiSpec(provider, platforms=plats, tags=tags, context=context, file=dockerfile, matrix=matrix,
                      pip_spec=pip_spec)
    err = spec_error(spec)
    if err:
        raise UsageError(err)
    files = render(spec)
    if dry_run:
        click.echo("\n".join(f.text for f in files), nl=False)
        return
    existing = [f.path for f in files if (root / f.path).exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} exists", hint="give --force to overwrite it, or --dry-run to see the text")
    for f in files:
        path = root / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f.text, encoding="utf-8")
        click.echo(f"wrote {f.path}", err=True)
    secrets = "registry_user and registry_password" if provider == "woodpecker" else "REGISTRY_USER and REGISTRY_PASSWORD"
    click.echo(f"add the secrets {secrets} to the CI, then push a tag v*", err=True)
