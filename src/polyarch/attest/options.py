"""``--sbom``, ``--provenance``, ``--attest`` and ``--attest-mode`` values (build and bake) → ``AttestOptions``.

API::

    parse_attest(sbom=None, provenance=None, attest=(), mode="referrers") -> AttestOptions

buildx's spellings: ``--sbom`` / ``--sbom=true|false`` / ``--sbom=generator=IMAGE``; ``--provenance`` /
``--provenance=true|false`` / ``--provenance=mode=min|max[,builder-id=ID][,version=v1|v0.2]``; ``--attest
type=sbom|provenance[,disabled=true][,…]`` (a later value of the same type replaces an earlier one, as bake's
merge does). ``generator`` is recorded and ignored: polyarch's own scanners make the SBOM. The SBOM is SPDX 2.3 JSON
(BuildKit's only format) unless ``format=cyclonedx`` (polyarch's key; BuildKit would hand an unknown key to its
generator) asks for CycloneDX 1.5 JSON: ``--sbom=format=cyclonedx``, ``--attest type=sbom,format=cyclonedx``. Provenance is
``version=v1`` by default; ``v0.2`` is what buildx writes by default. Attestations are attached as OCI 1.1
referrers (``referrers``) or, with ``--attest-mode=buildx``, as buildx does (index entries).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from polyarch.errors import UsageError

__all__ = ["MODES", "SBOM_FORMATS", "AttestOptions", "parse_attest", "parse_entry"]

MODES = ("referrers", "buildx")
SBOM_FORMATS = ("spdx", "cyclonedx")
_TRUE = ("true", "1")
_FALSE = ("false", "0")
_KEYS = {"sbom": {"type", "disabled", "generator", "scan-context", "scan-stage", "format"},
         "provenance": {"type", "disabled", "mode", "builder-id", "version", "reproducible", "inline-only"}}


@dataclass(frozen=True, slots=True)
class AttestOptions:
    sbom: bool = False
    generator: str = ""
    sbom_format: str = "spdx"  # or cyclonedx
    provenance: bool = False
    provenance_mode: str = "min"
    provenance_version: str = "v1"
    builder_id: str = ""
    mode: str = "referrers"

    @property
    def any(self) -> bool:
        return self.sbom or self.provenance


def parse_entry(text: str, what: str = "--attest") -> dict[str, str]:
    """``type=…,k=v,…`` → dict (keys lower-cased); checks the type and its keys."""
    attrs: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise UsageError(f"invalid {what} {text!r}: expected key=value pairs")
        attrs[key.strip().lower()] = value.strip()
    kind = attrs.get("type", "")
    if kind not in _KEYS:
        raise UsageError(f"invalid {what} {text!r}: type must be sbom or provenance")
    unknown = sorted(set(attrs) - _KEYS[kind])
    if unknown:
        raise UsageError(f"invalid {what} {text!r}: unknown key {unknown[0]!r}",
                         hint="keys: " + ", ".join(sorted(_KEYS[kind])))
    return attrs


def _shorthand(kind: str, value: str, flag: str) -> str:
    """``--sbom=VALUE`` / ``--provenance=VALUE`` → an ``--attest`` entry."""
    v = value.strip()
    if v.lower() in _TRUE or v == "":
        return f"type={kind}"
    if v.lower() in _FALSE:
        return f"type={kind},disabled=true"
    if "=" not in v:
        raise UsageError(f"invalid {flag}={value!r}", hint=f"use {flag}, {flag}=false or {flag}=KEY=VALUE,…")
    return f"type={kind},{v}"


def _flag(attrs: dict[str, str], key: str, text: str) -> bool:
    value = attrs.get(key, "false").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"invalid attestation {text!r}: {key}={attrs[key]!r} is not true or false")


def parse_attest(sbom: str | None = None, provenance: str | None = None, attest: Iterable[str] = (),
                 mode: str = "referrers") -> AttestOptions:
    """The attestations one build makes.

    :raises UsageError: an unknown type, key or value (one line, naming it).
    """
    if mode not in MODES:
        raise UsageError(f"invalid --attest-mode {mode!r}", hint="referrers (default) or buildx")
    entries = list(attest)
    if sbom is not None:
        entries.append(_shorthand("sbom", sbom, "--sbom"))
    if provenance is not None:
        entries.append(_shorthand("provenance", provenance, "--provenance"))
    by_type: dict[str, tuple[str, dict[str, str]]] = {}
    for text in entries:
        attrs = parse_entry(text)
        by_type[attrs["type"]] = (text, attrs)
    opts: dict[str, object] = {"mode": mode}
    if "sbom" in by_type:
        text, attrs = by_type["sbom"]
        opts["sbom"] = not _flag(attrs, "disabled", text)
        opts["generator"] = attrs.get("generator", "")
        fmt = attrs.get("format", "spdx").lower()
        if fmt not in SBOM_FORMATS:
            raise UsageError(f"invalid attestation {text!r}: format must be spdx or cyclonedx")
        opts["sbom_format"] = fmt
    if "provenance" in by_type:
        text, attrs = by_type["provenance"]
        opts["provenance"] = not _flag(attrs, "disabled", text)
        pmode = attrs.get("mode", "min").lower()
        if pmode not in ("min", "max"):
            raise UsageError(f"invalid attestation {text!r}: mode must be min or max")
        version = attrs.get("version", "v1").lower()
        if version not in ("v1", "v0.2"):
            raise UsageError(f"invalid attestation {text!r}: version must be v1 or v0.2")
        opts["provenance_mode"], opts["provenance_version"] = pmode, version
        opts["builder_id"] = attrs.get("builder-id", "")
    return AttestOptions(**opts)  # type: ignore[arg-type]
