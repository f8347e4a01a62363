"""CI workflows that publish on every ``v*`` tag: ``polyarch ci init``'s texts (pure: values in, file texts out).

``CiSpec`` (``spec.py``) says what to build and for which provider; ``render`` (``render.py``) turns it into the
workflow files of that provider (path and YAML text each), the shell of every step made by ``scripts.py``. Nothing
here reads files or the environment: ``cli/ci.py`` reads the bake file and the flags and writes the files.
"""

from __future__ import annotations

from .render import WorkflowFile, render
from .spec import PROVIDERS, BakeTarget, CiSpec, spec_error

__all__ = ["PROVIDERS", "BakeTarget", "CiSpec", "WorkflowFile", "render", "spec_error"]
