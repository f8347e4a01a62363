"""JSON helpers shared by the OCI models: canonical encoding and strict decoding, and the canonical bytes that
keys and definition digests hash (``key_json``).

Names from tar entries, contexts and host paths are ``str`` decoded with ``surrogateescape``: a byte that is not
UTF-8 is a lone surrogate (``b"\\xe9"`` → ``"\\udce9"``). Documents must be UTF-8, so ``canonical_json`` refuses
them; ``key_json`` keeps them, so two different names never share a key and no name makes hashing fail.

Decoding never lets ``RecursionError`` out: a document nested deeper than the interpreter can parse (a hostile
manifest of 100,000 ``[``) is invalid JSON like any other.
"""

from __future__ import annotations

import json
from typing import Any

from polyarch.errors import InvalidManifest

__all__ = ["canonical_json", "key_json", "load_object", "loads", "strmap"]

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: the same value always gives the same bytes.

    :raises InvalidManifest: a string holds a lone surrogate (a JSON ``"\\udce9"`` escape read from a
        document, or a non-UTF-8 name), which UTF-8 cannot encode.
    """
    text = _CANONICAL.encode(obj)
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        bad = text[max(exc.start - 20, 0):exc.end + 20].encode("ascii", "backslashreplace").decode()
        raise InvalidManifest(f"a document cannot hold {bad!r}: it is not valid Unicode") from None


def key_json(obj: Any) -> bytes:
    """The bytes to hash for a key: ``canonical_json``'s for every value it can encode, and lossless for strings
    holding surrogates (non-UTF-8 names kept with ``surrogateescape``), which are written as their code points
    (``surrogatepass``). The map from values to bytes is injective, so distinct names give distinct keys."""
    return _CANONICAL.encode(obj).encode("utf-8", "surrogatepass")


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
