"""Bake: build definitions in HCL, JSON or compose files → resolved targets (``Definition``).

Pure, like the rest of ``frontend``: the caller (``cli/bake.py``) reads the files and the environment and passes
their text and an environment mapping in. ``parse_files`` parses (``hcl``, ``json``, ``compose``), ``Evaluator``
evaluates (``variables``, functions, matrix, inherits, groups) and ``Evaluator.definition`` applies ``--set``.
"""

from __future__ import annotations

from .evaluate import Evaluator, SourceFile
from .files import DEFAULT_FILES, parse_file, parse_files
from .model import Definition, Group, Target
from .overrides import Override, parse_overrides

__all__ = ["DEFAULT_FILES", "Definition", "Evaluator", "Group", "Override", "SourceFile", "Target", "parse_file",
           "parse_files", "parse_overrides"]
