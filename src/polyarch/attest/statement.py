"""in-toto statements and the names attestations are known by (media types, predicate types, annotations).

API::

    statement(predicate_type, predicate, subjects) -> dict      # an in-toto Statement v0.1, as BuildKit writes
    Subject(name, digest)                                       # one subject: a platform manifest
    encode(doc) -> bytes                                        # canonical JSON bytes of a statement
    kind_of(predicate_type) -> "sbom" | "provenance" | ""
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyarch.digest import Digest

__all__ = ["ANNOTATION_PREDICATE", "INTOTO_MEDIA_TYPE", "PREDICATE_CYCLONEDX", "PREDICATE_SLSA_V02",
           "PREDICATE_SLSA_V1", "PREDICATE_SPDX", "STATEMENT_TYPE", "Subject", "encode", "kind_of", "statement"]

STATEMENT_TYPE = "https://in-toto.io/Statement/v0.1"
INTOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
ANNOTATION_PREDICATE = "in-toto.io/predicate-type"
PREDICATE_SPDX = "https://spdx.dev/Document"
PREDICATE_CYCLONEDX = "https://cyclonedx.org/bom"
PREDICATE_SLSA_V1 = "https://slsa.dev/provenance/v1"
PREDICATE_SLSA_V02 = "https://slsa.dev/provenance/v0.2"
_KINDS = {PREDICATE_SPDX: "sbom", PREDICATE_CYCLONEDX: "sbom", PREDICATE_SLSA_V1: "provenance",
          PREDICATE_SLSA_V02: "provenance"}


@dataclass(frozen=True, slots=True)
class Subject:
    name: str
    digest: Digest

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": {self.digest.algorithm: self.digest.hex}}


def statement(predicate_type: str, predicate: Mapping[str, Any], subjects: Sequence[Subject]) -> dict[str, Any]:
    return {"_type": STATEMENT_TYPE, "predicateType": predicate_type,
            "subject": [s.to_dict() for s in subjects], "predicate": dict(predicate)}


def encode(doc: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces: the same inputs give the same bytes (and digest)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def kind_of(predicate_type: str) -> str:
    """``sbom``, ``provenance``, or "" for a predicate type polyarch does not write."""
    return _KINDS.get(predicate_type, "")
