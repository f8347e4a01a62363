"""Which bake files to read, and reading them: ``-f`` (repeatable, ``-`` is stdin) or buildx's default lookup.

buildx's documented lookup order (all that exist are loaded and merged in this order, later wins):
compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml, docker-bake.json, docker-bake.hcl,
docker-bake.override.json, docker-bake.override.hcl. The format follows the name: ``.json``, ``.yml``/``.yaml``
(compose), anything else HCL (a ``.hcl`` file whose text starts with ``{`` is read as JSON, as buildx does).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from polyarch.errors import UsageError

from .compose import parse_compose
from .evaluate import SourceFile
from .hcl import parse_hcl
from .json import parse_json

__all__ = ["DEFAULT_FILES", "find_files", "load_files", "parse_file"]

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml", "docker-bake.json",
                 "docker-bake.hcl", "docker-bake.override.json", "docker-bake.override.hcl")


def find_files(directory: Path) -> list[Path]:
    return [directory / name for name in DEFAULT_FILES if (directory / name).is_file()]


def parse_file(filename: str, text: str, env: Mapping[str, str] | None = None) -> SourceFile:
    lower = filename.lower()
    if lower.endswith(".json") or (not lower.endswith((".yml", ".yaml")) and text.lstrip().startswith("{")):
        body = parse_json(text, filename)
    elif lower.endswith((".yml", ".yaml")):
        body = parse_compose(text, filename, os.environ if env is None else env)
    else:
        body = parse_hcl(text, filename)
    return SourceFile(filename, text, body)


def load_files(names: Sequence[str], directory: Path = Path("."), env: Mapping[str, str] | None = None
               ) -> list[SourceFile]:
    """:raises UsageError: no file found, or a file cannot be read. :raises ParseError: a syntax error."""
    paths = [Path(n) for n in names] if names else find_files(directory)
    if not paths:
        raise UsageError(f"no bake file found in {directory.absolute()}",
                         hint="looked for " + ", ".join(DEFAULT_FILES) + "; or give -f FILE")
    out = []
    for path in paths:
        if str(path) == "-":
            out.append(parse_file("-", sys.stdin.read(), env))
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read bake file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        out.append(parse_file(str(path), text, env))
    return out
