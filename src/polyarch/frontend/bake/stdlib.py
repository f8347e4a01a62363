"""The full table of built-in bake functions: buildx's list (go-cty's stdlib, go-cty-funcs, buildx's own).

``STDLIB`` merges the ``functions*`` modules and ``semvercmp``. Four of buildx's functions need more than
evaluated arguments and live elsewhere: ``try`` and ``can`` (unevaluated arguments) and ``convert`` (a type
expression) in ``expr.py``, ``homedir`` (the caller's ``HOME``) in ``with_home``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .functions import FUNCTIONS
from .functions_collections import COLLECTION_FUNCTIONS
from .functions_crypto import CRYPTO_FUNCTIONS
from .functions_time import TIME_FUNCTIONS
from .semver import semvercmp

__all__ = ["SPECIAL_FORMS", "STDLIB", "with_home"]

STDLIB: Mapping[str, Callable[..., Any]] = {**FUNCTIONS, **COLLECTION_FUNCTIONS, **TIME_FUNCTIONS,
                                            **CRYPTO_FUNCTIONS, "semvercmp": semvercmp}
SPECIAL_FORMS = frozenset({"try", "can", "convert"})  # evaluated by expr.py from their unevaluated arguments


def with_home(home: str) -> dict[str, Callable[..., Any]]:
    """``STDLIB`` plus ``homedir()`` answering ``home`` (the caller reads the environment, not the frontend)."""
    return {**STDLIB, "homedir": lambda: home}
