"""Persistent cache keys (pure functions).

The definition digest of a vertex (``polyarch.ops``) names the *work*; a cache key names the *result* and is
stable across runs only when the inputs are: a key is the SHA-256 of the canonical JSON (``key_json``: lossless
for names that are not UTF-8) of the vertex kind, its identity fields, the cache keys of its inputs and the facts resolved at build time (the manifest digest an image
reference resolved to, the content hash of the files a COPY reads). Keys carry a version so a format change
invalidates old entries instead of matching them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from polyarch import ops
from polyarch.oci.jsonutil import key_json

__all__ = ["KEY_VERSION", "copy_key", "entries_key", "exec_key", "image_key", "key_of", "layer_key", "scratch_key",
           "vertex_key"]

KEY_VERSION = "polyarch-cache-v1"


def key_of(obj: Any) -> str:
    return "sha256:" + hashlib.sha256(key_json({"v": KEY_VERSION, "k": obj})).hexdigest()


def entries_key(rows: Sequence[Sequence[object]], epoch: int | None, compression: str) -> str:
    """Names the layer a list of entries (path, type, mode, owner, host file, link, size, mtime) gives, so one
    build writes identical COPY layers once; paths may be any bytes (``surrogateescape``)."""
    return key_of({"kind": "entries", "e": [list(r) for r in rows], "epoch": epoch, "c": compression})


def scratch_key() -> str:
    return key_of({"kind": "scratch"})


def image_key(manifest_digest: str) -> str:
    """An image source is its resolved manifest (one platform's), never its tag."""
    return key_of({"kind": "image", "manifest": manifest_digest})


def vertex_key(v: ops.Vertex, input_keys: Sequence[str], facts: Mapping[str, Any] | None = None) -> str:
    """The generic key: kind + identity fields + input keys (in order) + resolved facts."""
    return key_of({"kind": v.kind, "fields": v.fields(), "inputs": list(input_keys), "facts": dict(facts or {})})


def copy_key(v: ops.Copy, root_key: str, source_key: str) -> str:
    return vertex_key(v, [root_key, source_key])


def exec_key(v: ops.Exec, input_keys: Sequence[str]) -> str:
    return vertex_key(v, input_keys)


def layer_key(kind: str, fields: Mapping[str, Any], source_key: str, facts: Iterable[Any]) -> str:
    """Names one COPY/WORKDIR layer by what it contains (not the root it lands on), so platforms share it."""
    return key_of({"kind": kind + "-layer", "fields": dict(fields), "source": source_key, "facts": list(facts)})
