"""Bake: build definitions in HCL, JSON or compose files → resolved targets (``Definition``).

``load_definition(files, names, overrides, env)`` is the whole frontend: read (``files``), parse (``hcl``,
``json``, ``compose``), evaluate (``evaluate``: variables, functions, matrix, inherits, groups), apply ``--set``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .evaluate import Evaluator, SourceFile
from .files import DEFAULT_FILES, load_files, parse_file
from .model import Definition, Group, Target
from .overrides import Override, parse_overrides

__all__ = ["DEFAULT_FILES", "Definition", "Evaluator", "Group", "Override", "SourceFile", "Target", "load_definition",
           "load_files", "parse_file", "parse_overrides"]


def load_definition(files: Sequence[str], names: Sequence[str] = (), overrides: Sequence[str] = (),
                    env: Mapping[str, str] | None = None, directory: Path = Path(".")) -> Definition:
    sources = load_files(files, directory, env)
    ev = Evaluator(sources, env)
    return ev.definition(list(names) or ["default"], parse_overrides(overrides))
