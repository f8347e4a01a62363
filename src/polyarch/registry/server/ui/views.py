"""The web page's views as plain JSON-ready dicts: the templates render them, ``/ui/api/`` returns them as is.

``repositories`` (search), ``matrix`` (tags × platforms with verify's verdict and size; the host filter keeps the
images a host would run emulated: Linux entries but none its platform runs natively — ``platform.best_match``,
the rule ``polyarch audit`` uses), ``tag`` (index, each platform's manifest, config and layers, referrers with
the SBOM's package list), ``gc``. Nothing here waits for a verdict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from polyarch import platform as plat
from polyarch.errors import PolyarchError
from polyarch.oci.spec import REFERENCE_DIGEST, Index, Manifest

from ..state import Registry
from .catalog import Catalog, platform_columns
from .model import HostPlatform, ImageSummary, TagInfo
from .verdicts import VerdictCache

__all__ = ["gc_view", "host_verdict", "matrix_view", "repo_view", "repositories_view", "tag_view"]

INTOTO = "application/vnd.in-toto+json"  # attest/statement.py INTOTO_MEDIA_TYPE (attest/ is a higher layer)
SPDX = "https://spdx.dev/Document"
MAX_STATEMENT = 16 << 20
MAX_PACKAGES = 5000


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t is not None else ""


def _match(query: str, *texts: str) -> bool:
    q = query.strip().lower()
    return not q or any(q in t.lower() for t in texts)


def repositories_view(catalog: Catalog, query: str) -> dict[str, Any]:
    repos = catalog.repos(catalog.tags())
    rows = [dict(r.to_dict(), lastPushText=_when(r.last_push)) for r in repos if _match(query, r.name)]
    return {"query": query, "total": len(repos), "repositories": rows}


def repo_view(catalog: Catalog, repo: str) -> dict[str, Any] | None:
    tags = [t for t in catalog.tags() if t.repo == repo]
    if not tags and not catalog.repo_known(repo):
        return None
    return {"repo": repo, "tags": [{"tag": t.tag, "digest": t.digest, "pushed": t.pushed,
                                    "pushedText": _when(t.pushed), "local": t.local} for t in tags]}


def host_verdict(summary: ImageSummary, host: plat.Platform) -> str:
    """``native``, ``emulated`` or ``missing``: what ``host`` would run of the image."""
    linux = [e.platform for e in summary.entries if e.platform.os == host.os]
    if not linux:
        return "missing"
    return "native" if plat.best_match(linux, host) is not None else "emulated"


def matrix_view(catalog: Catalog, verdicts: VerdictCache, hosts: Sequence[HostPlatform], query: str,
                host_name: str) -> dict[str, Any]:
    host = next((h for h in hosts if h.name == host_name), None)
    tags = [t for t in catalog.tags() if _match(query, t.repo, t.tag, t.ref)]
    summaries = [catalog.summary(t.digest, t.media_type) for t in tags]
    columns = platform_columns(summaries)
    rows = []
    memo: dict[str, list[dict[str, Any]]] = {}  # tags of one digest share their cells (the same list object)
    on_hosts: dict[str, str] = {}
    for t, s in zip(tags, summaries, strict=True):
        on_host = ""
        if host is not None:
            on_host = on_hosts.get(s.digest, "")
            if not on_host:
                on_host = on_hosts[s.digest] = host_verdict(s, host.platform)
        if host is not None and on_host != "emulated":
            continue
        cells = memo.get(s.digest)
        if cells is None:
            cells = memo[s.digest] = _cells(s, columns, verdicts)
        rows.append({"repo": t.repo, "tag": t.tag, "digest": t.digest, "error": s.error, "host": on_host,
                     "cells": cells})
    return {"query": query, "host": host.name if host else "", "hosts": [h.name for h in hosts],
            "hostPlatform": str(host.platform) if host else "", "platforms": columns, "rows": rows}


def _cells(s: ImageSummary, columns: list[str], verdicts: VerdictCache) -> list[dict[str, Any]]:
    by_key = {e.key: e for e in s.entries}
    cells: list[dict[str, Any]] = []
    for column in columns:
        e = by_key.get(column)
        if e is None:
            cells.append({"platform": column, "state": "missing", "size": 0, "detail": ""})
        else:
            v = verdicts.get(e)
            cells.append({"platform": column, "state": v.state, "size": e.size, "detail": v.detail,
                          "digest": e.digest})
    return cells


def _config_view(catalog: Catalog, manifest: Manifest) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    try:
        cfg = catalog.config(manifest)
    except PolyarchError as exc:
        return {}, [], str(exc)
    c = cfg.config
    config = {"entrypoint": list(c.entrypoint or ()), "cmd": list(c.cmd or ()), "env": list(c.env),
              "user": c.user, "workingDir": c.working_dir, "created": cfg.created, "labels": dict(c.labels),
              "exposedPorts": list(c.exposed_ports)}
    history = [{"created": h.created, "createdBy": h.created_by, "comment": h.comment, "emptyLayer": h.empty_layer}
               for h in cfg.history]
    return config, history, ""


def _statement(catalog: Catalog, manifest: Manifest) -> dict[str, Any]:
    """The attestation's predicate type and, for an SPDX SBOM, its packages (name, version)."""
    for layer in manifest.layers:
        if layer.media_type != INTOTO or layer.size > MAX_STATEMENT:
            continue
        try:
            doc = json.loads(catalog.read(str(layer.digest), MAX_STATEMENT))
        except (PolyarchError, ValueError, RecursionError):
            return {"predicateType": "", "error": "statement cannot be read"}
        if not isinstance(doc, dict):
            continue
        ptype = str(doc.get("predicateType", ""))
        out: dict[str, Any] = {"predicateType": ptype, "kind": "sbom" if ptype == SPDX else
                               ("provenance" if "slsa.dev/provenance" in ptype else "other")}
        predicate = doc.get("predicate")
        if ptype == SPDX and isinstance(predicate, dict) and isinstance(predicate.get("packages"), list):
            out["packages"] = [{"name": str(p.get("name", "")), "version": str(p.get("versionInfo", ""))}
                               for p in predicate["packages"][:MAX_PACKAGES] if isinstance(p, dict)]
        return out
    return {}


def _referrers(reg: Registry, catalog: Catalog, repo: str, index: Index | None,
               subjects: Sequence[str]) -> list[dict[str, Any]]:
    found: list[tuple[str, str, str, dict[str, str]]] = []  # digest, media type, subject, annotations
    for subject in subjects:
        for row in reg.meta.referrers(repo, subject):
            found.append((row.digest, row.media_type, subject, dict(row.annotations)))
    if index is not None:  # buildx's attestation manifests inside the index
        for child in index.manifests:
            ref = child.annotations.get(REFERENCE_DIGEST)
            if ref and child.platform is not None and child.platform.os == "unknown":
                found.append((str(child.digest), child.media_type, ref, dict(child.annotations)))
    out = []
    for digest, media_type, subject, notes in found:
        entry: dict[str, Any] = {"digest": digest, "mediaType": media_type, "subject": subject,
                                 "annotations": notes, "artifactType": ""}
        try:
            doc = catalog.document(digest, media_type)
        except PolyarchError as exc:
            entry["error"] = str(exc)
        else:
            if isinstance(doc, Manifest):
                entry["artifactType"] = doc.artifact_type or doc.config.media_type
                entry.update(_statement(catalog, doc))
        out.append(entry)
    return out


def tag_view(reg: Registry, catalog: Catalog, verdicts: VerdictCache, info: TagInfo, host: str,
             can_delete: bool) -> dict[str, Any]:
    """Everything about one tag; ``host`` is the address clients pull from (for the pull command)."""
    summary = catalog.summary(info.digest, info.media_type)
    view: dict[str, Any] = {
        "repo": info.repo, "tag": info.tag, "digest": info.digest, "mediaType": summary.media_type,
        "pushed": info.pushed, "pushedText": _when(info.pushed), "local": info.local, "error": summary.error,
        "pull": [f"polyarch pull {host}/{info.repo}:{info.tag}", f"docker pull {host}/{info.repo}@{info.digest}"],
        "annotations": {}, "platforms": [], "referrers": [], "canDelete": can_delete and not info.local}
    if summary.error:
        return view
    try:
        top = catalog.document(info.digest, info.media_type)
    except PolyarchError as exc:
        view["error"] = str(exc)
        return view
    view["annotations"] = dict(top.annotations)
    subjects = [info.digest]
    for e in summary.entries:
        doc = top if e.digest == info.digest else None
        entry: dict[str, Any] = dict(e.to_dict(), verdict=verdicts.get(e).to_dict())
        try:
            doc = doc or catalog.document(e.digest, e.media_type)
        except PolyarchError as exc:
            entry["error"] = str(exc)
            view["platforms"].append(entry)
            continue
        if isinstance(doc, Manifest):
            config, history, error = _config_view(catalog, doc)
            entry.update(config=config, history=history, annotations=dict(doc.annotations),
                         layers=[{"digest": str(layer.digest), "mediaType": layer.media_type, "size": layer.size}
                                 for layer in doc.layers])
            if error:
                entry["error"] = error
        if e.digest != info.digest:
            subjects.append(e.digest)
        view["platforms"].append(entry)
    view["referrers"] = _referrers(reg, catalog, info.repo, top if isinstance(top, Index) else None, subjects)
    return view


def gc_view(reg: Registry) -> dict[str, Any]:
    uploads = reg.meta.uploads()
    oldest = min((u.created for u in uploads), default=None)
    return {"deleteEnabled": reg.config.delete_enabled and not reg.config.read_only,
            "readOnly": reg.config.read_only,
            "uploadSessions": len(uploads), "uploadBytes": sum(u.offset for u in uploads),
            "oldestUpload": oldest, "oldestUploadText": _when(oldest),
            "uploadTtl": reg.config.upload_ttl,
            "command": "polyarch registry gc --dry-run"}
