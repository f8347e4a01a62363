"""Bake file texts → parsed ``SourceFile``s; the format follows the name. Nothing is read here: the CLI reads
the files (``-f``, ``-`` for stdin, or buildx's default lookup over ``DEFAULT_FILES``) and the environment, and
passes their text and an environment mapping in.

buildx's documented lookup order (all that exist are loaded and merged in this order, later wins):
compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml, docker-bake.json, docker-bake.hcl,
docker-bake.override.json, docker-bake.override.hcl. The format follows the name: ``.json``, ``.yml``/``.yaml``
(compose), anything else HCL (a ``.hcl`` file whose text starts with ``{`` is read as JSON, as buildx does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .compose import parse_compose
from .evaluate import SourceFile
from .hcl import parse_hcl
from .json import parse_json

__all__ = ["DEFAULT_FILES", "parse_file", "parse_files"]

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml", "docker-bake.json",
                 "docker-bake.hcl", "docker-bake.override.json", "docker-bake.override.hcl")


def parse_file(filename: str, text: str, env: Mapping[str, str]) -> SourceFile:
    """One file's text → ``SourceFile`` (``env`` interpolates compose files). :raises ParseError: a syntax error."""
    lower = filename.lower()
    if lower.endswith(".json") or (not lower.endswith((".yml", ".yaml")) and text.lstrip().startswith("{")):
        body = parse_json(text, filename)
    elif lower.endswith((".yml", ".yaml")):
        body = parse_compose(text, filename, env)
    else:
        body = parse_hcl(text, filename)
    return SourceFile(filename, text, body)


def parse_files(texts: Sequence[tuple[str, str]], env: Mapping[str, str]) -> list[SourceFile]:
    """``(filename, text)`` pairs in merge order → parsed files. :raises ParseError: a syntax error."""
    return [parse_file(name, text, env) for name, text in texts]
