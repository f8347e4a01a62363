"""Provisional ``polyarch build``: only ``--call outline|targets|plan|check`` and ``--check`` for now.

The real build command replaces this module later; it keeps the same flags. Reading the Dockerfile and the
``.dockerignore`` happens here (the frontend does no I/O).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from polyarch.errors import UsageError

__all__ = ["build"]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


@click.command("build", context_settings={"ignore_unknown_options": False})
@click.argument("context", default=".", type=click.Path(file_okay=False))
@click.option("-f", "--file", "dockerfile", default=None, help="Name of the Dockerfile (default: CONTEXT/Dockerfile).")
@click.option("--platform", "platforms", multiple=True, help="Target platforms (comma-separated or repeated).")
@click.option("--target", default="", help="Target build stage.")
@click.option("--build-arg", "build_args", multiple=True, help="Build-time variable KEY=VALUE (or KEY from the env).")
@click.option("--call", "call_name", default="build", help="outline, targets, plan or check.")
@click.option("--check", is_flag=True, help="Shorthand for --call=check.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format of --call.")
@click.option("-t", "--tag", "tags", multiple=True, hidden=True)
@click.option("--push", is_flag=True, hidden=True)
@click.option("--load", is_flag=True, hidden=True)
@click.option("-o", "--output", "outputs", multiple=True, hidden=True)
def build(context: str, dockerfile: str | None, platforms: tuple[str, ...], target: str,
          build_args: tuple[str, ...], call_name: str, check: bool, fmt: str, tags: tuple[str, ...], push: bool,
          load: bool, outputs: tuple[str, ...]) -> None:
    """Build an image from a Dockerfile (for now: --call outline|targets|plan|check and --check only)."""
    import os

    from polyarch.frontend.call import CALLS, call
    from polyarch.frontend.dockerignore import ignore_file_candidates, parse_dockerignore
    from polyarch.platform import parse_list

    what = "check" if check else call_name
    if what == "build":
        click.echo("error: only --call and --check are available yet", err=True)
        sys.exit(2)
    if what not in CALLS:
        raise UsageError(f"unknown --call {what!r}", hint="available: " + ", ".join(CALLS))
    ctx_dir = Path(context)
    df_path = Path(dockerfile) if dockerfile else ctx_dir / "Dockerfile"
    if dockerfile == "-":
        text, df_path = sys.stdin.read(), Path("Dockerfile")
    else:
        text = _read(df_path)
    args: dict[str, str] = {}
    for item in build_args:
        key, eq, value = item.partition("=")
        if not eq:
            if key not in os.environ:
                continue
            value = os.environ[key]
        args[key] = value
    excludes: list[str] = []
    for candidate in ignore_file_candidates(str(df_path)):
        path = Path(candidate) if candidate != ".dockerignore" else ctx_dir / candidate
        if path.is_file():
            excludes = [str(p) for p in parse_dockerignore(_read(path))]
            break
    result = call(what, text, df_path.name, parse_list(platforms), target, args, context_excludes=excludes, fmt=fmt)
    click.echo(result.text, nl=False)
    if result.exit_code:
        sys.exit(result.exit_code)
