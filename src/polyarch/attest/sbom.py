"""SPDX 2.3 JSON documents (the predicate of an SBOM attestation, type ``https://spdx.dev/Document``).

API::

    spdx_document(packages, *, image_name, manifest_digest, platform, created, tool) -> dict

The document describes one platform image: a root package (the image, purpose ``CONTAINER``) that CONTAINS every
package found. Each package has its purl as an external reference, its declared license (``NOASSERTION`` when
unknown), where it was read from (``sourceInfo``) and the layer that added it (an ``OTHER`` annotation
``layerID: sha256:…``). Identifiers and the namespace derive from the content, so the same image gives the same
document. The document model is written here as plain dicts: the JSON shape is small and fixed, and spdx-tools
would add ~1 s of imports and a dozen dependencies for it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from polyarch.digest import Digest

from .scanners import Package

__all__ = ["spdx_document"]

_SOURCES = {"deb": "acquired package info from DPKG DB", "apk": "acquired package info from APK DB",
            "pypi": "acquired package info from installed python package metadata",
            "golang": "acquired package info from go module information",
            "rpm": "acquired package info from RPM DB",
            "npm": "acquired package info from installed node module manifest file",
            "cargo": "acquired package info from cargo-auditable data in a Rust binary"}


def _spdx_id(*parts: str) -> str:
    h = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in ".-" else "-" for c in parts[1])[:64] if len(parts) > 1 else ""
    return f"SPDXRef-Package-{parts[0]}-{safe}-{h}"


def _package(p: Package, created: str, tool: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": p.name, "SPDXID": _spdx_id(p.kind, p.name, p.version, p.source, p.arch),
        "versionInfo": p.version, "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION", "licenseDeclared": p.license or "NOASSERTION",
        "copyrightText": "NOASSERTION", "sourceInfo": f"{_SOURCES.get(p.kind, 'found')}: {p.source}",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": p.purl}],
    }
    if p.layer:
        out["annotations"] = [{"annotationDate": created, "annotationType": "OTHER", "annotator": f"Tool: {tool}",
                               "comment": f"layerID: {p.layer}"}]
    return out


def spdx_document(packages: Sequence[Package], *, image_name: str, manifest_digest: Digest, platform: str,
                  created: str, tool: str) -> dict[str, Any]:
    """The SPDX 2.3 document of one platform image."""
    root_id = "SPDXRef-DocumentRoot-Image-" + manifest_digest.hex[:16]
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"polyarch-sbom:{manifest_digest}:{platform}")
    seen: set[str] = set()
    pkgs: list[dict[str, Any]] = []
    for p in sorted(packages, key=lambda x: (x.kind, x.name, x.version, x.source)):
        entry = _package(p, created, tool)
        if entry["SPDXID"] in seen:
            continue
        seen.add(entry["SPDXID"])
        pkgs.append(entry)
    root = {"name": image_name or "image", "SPDXID": root_id, "versionInfo": str(manifest_digest),
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION", "primaryPackagePurpose": "CONTAINER",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": f"pkg:oci/image@{manifest_digest}?platform="
                                                  + platform.replace("/", "%2F")}]}
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": root_id}]
    relationships += [{"spdxElementId": root_id, "relationshipType": "CONTAINS", "relatedSpdxElement": p["SPDXID"]}
                      for p in pkgs]
    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{image_name or 'image'} ({platform})", "documentNamespace": f"urn:uuid:{namespace}",
        "creationInfo": {"created": created, "creators": [f"Tool: {tool}", "Organization: polyarch"]},
        "documentDescribes": [root_id],
        "packages": [root, *pkgs], "relationships": relationships,
    }
