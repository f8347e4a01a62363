"""JSON helpers shared by the OCI models: canonical encoding and strict decoding.

Decoding never lets ``RecursionError`` out: a document nested deeper than the interpreter can parse (a hostile
manifest of 100,000 ``[``) is invalid JSON like any other.
"""

from __future__ import annotations

import json
from typing import Any

from polyarch.errors import InvalidManifest

__all__ = ["canonical_json", "load_object", "loads", "strmap"]


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: the same value always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def loads(raw: bytes | str) -> Any:
    """``json.loads`` that reports nesting too deep to parse as ``ValueError`` (not ``RecursionError``).

    :raises ValueError: invalid JSON, undecodable bytes or too deep nesting.
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def load_object(raw: bytes, what: str) -> dict[str, Any]:
    """Parse ``raw`` as a JSON object. :raises InvalidManifest: naming ``what``."""
    try:
        doc = loads(raw)
    except ValueError as exc:
        raise InvalidManifest(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidManifest(f"{what} must be a JSON object")
    return doc


def strmap(value: Any, what: str) -> dict[str, str]:
    """A ``{str: str}`` object (annotations, labels), or ``{}`` for null. :raises InvalidManifest:"""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidManifest(f"{what} must be an object of strings")
    return dict(value)
