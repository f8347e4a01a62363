"""Manifests (GET/HEAD/PUT/DELETE by tag or digest), tag lists, the catalog and the referrers API.

A PUT by digest may name tags as ``?tag=`` parameters: each is created with the manifest, in one transaction,
and answered in an ``OCI-Tag`` header. The referrers API lists a manifest's ``artifactType``, or for an image
manifest without one its config's media type (distribution-spec 1.1).

A manifest is stored once as a blob of the content store (its exact pushed bytes) and recorded per repository
in the database with what it references. On a pull-through mirror (``reg.proxy``) a GET or HEAD first
makes the local copy current from the upstream (``proxy.PullThrough.manifest``), and a tag list adds the
upstream's tags. A PUT is accepted only when
every config, layer and child it names is readable in the same repository with the declared size (a missing
``subject`` is allowed; a layer with ``urls`` that was not pushed is accepted as data and never fetched); the check
and the tag update are one transaction, so a concurrent GC cannot remove a blob in between (no "201 then 404").
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from polyarch.digest import Digest
from polyarch.errors import InvalidManifest, NotFound, PolyarchError
from polyarch.oci.spec import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    Index,
    Manifest,
    MediaType,
)

from .body import read_capped, run_io
from .errors import ApiError
from .manifestdoc import describe
from .state import Registry

__all__ = ["catalog", "delete_manifest", "get_manifest", "list_tags", "put_manifest", "referrers"]

_KNOWN_TYPES = MANIFEST_TYPES | INDEX_TYPES
_FOREIGN = frozenset({MediaType.DOCKER_LAYER_FOREIGN, MediaType.OCI_LAYER_ND, MediaType.OCI_LAYER_ND_GZIP,
                      MediaType.OCI_LAYER_ND_ZSTD})


def _resolve(reg: Registry, repo: str, ref: Digest | str) -> tuple[str, str, int]:
    """(digest, media type, size) of a manifest of ``repo``. :raises ApiError: MANIFEST_UNKNOWN."""
    if isinstance(ref, str):
        digest = reg.meta.tag(repo, ref)
        if digest is not None:
            row = reg.meta.manifest(repo, digest)
            if row is not None:
                return row.digest, row.media_type, row.size
        desc = reg.local.lookup(repo, ref)
        if desc is not None:
            return str(desc.digest), desc.media_type, desc.size
    else:
        text = str(ref)
        row = reg.meta.manifest(repo, text)
        if row is not None:
            return row.digest, row.media_type, row.size
        desc = reg.local.manifest(repo, text)
        if desc is not None:
            return text, desc.media_type, desc.size
    if not reg.repo_known(repo):
        raise ApiError("NAME_UNKNOWN", "repository name not known to registry", detail={"name": repo})
    raise ApiError("MANIFEST_UNKNOWN", "manifest unknown", detail={"reference": str(ref)})


async def get_manifest(reg: Registry, repo: str, ref: Digest | str, *, head: bool) -> Response:
    if reg.proxy is not None:  # a pull-through mirror: the local copy made current first
        await run_io(reg.proxy.manifest, repo, ref)
    digest_text, media_type, _ = _resolve(reg, repo, ref)
    digest = Digest.parse(digest_text)
    try:
        raw = reg.blobs.read(digest, limit=reg.config.max_manifest)
    except NotFound:
        raise ApiError("MANIFEST_UNKNOWN", "manifest unknown", detail={"reference": str(ref)}) from None
    except PolyarchError:
        raise ApiError("UNKNOWN", "stored manifest cannot be read", status=500) from None
    if Digest.of(raw, digest.algorithm) != digest:
        raise ApiError("UNKNOWN", "stored manifest failed verification", status=500)
    headers = {"Docker-Content-Digest": digest_text, "Content-Length": str(len(raw)), "ETag": f'"{digest_text}"'}
    return Response(b"" if head else raw, headers=headers, media_type=media_type)


def _content_type(value: str | None) -> str | None:
    if not value:
        return None
    value = value.split(";", 1)[0].strip()
    return value if value in _KNOWN_TYPES else None


def _check_descriptor(reg: Registry, repo: str, desc: Descriptor, where: str, *, manifest: bool) -> None:
    if desc.data is not None and Digest.of(desc.data, desc.digest.algorithm) != desc.digest:
        raise ApiError("MANIFEST_INVALID", f"{where}: embedded data does not match its digest")
    text = str(desc.digest)
    if manifest:
        row = reg.meta.manifest(repo, text)
        local = reg.local.manifest(repo, text) if row is None else None
        size = row.size if row is not None else (local.size if local is not None else None)
        if size is not None and reg.blobs.stat(desc.digest) is None:
            size = None
    else:
        size = reg.blob_size(repo, desc.digest)
        if size is None and desc.urls and desc.media_type in _FOREIGN:
            return  # non-distributable layer: kept as data, never fetched
    if size is None:
        raise ApiError("MANIFEST_BLOB_UNKNOWN", f"{where} {text} is not in repository {repo}",
                       detail={"digest": text})
    if size != desc.size:
        raise ApiError("MANIFEST_INVALID", f"{where} {text}: descriptor size {desc.size} but blob has {size} bytes",
                       detail={"digest": text})


def _validate(reg: Registry, repo: str, doc: Manifest | Index) -> None:
    if isinstance(doc, Manifest):
        _check_descriptor(reg, repo, doc.config, "config", manifest=False)
        for i, layer in enumerate(doc.layers):
            _check_descriptor(reg, repo, layer, f"layers[{i}]", manifest=False)
    else:
        for i, child in enumerate(doc.manifests):
            is_doc = child.media_type in _KNOWN_TYPES
            _check_descriptor(reg, repo, child, f"manifests[{i}]", manifest=is_doc)


async def put_manifest(reg: Registry, repo: str, ref: Digest | str, receive: Any, headers: Any,
                       tag_params: tuple[str, ...] = ()) -> Response:
    """Store a manifest; by tag, the tag moves to it; by digest, every tag of ``tag_params`` (the ``?tag=``
    parameters) moves to it in the same transaction and each is named in an ``OCI-Tag`` answer header."""
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > reg.config.max_manifest:
        raise ApiError("SIZE_INVALID", f"manifest larger than {reg.config.max_manifest} bytes", status=413,
                       headers={"Connection": "close"})
    raw = await read_capped(receive, reg.config.max_manifest, reg.config.idle_timeout)
    algorithm = ref.algorithm if isinstance(ref, Digest) else "sha256"
    digest = Digest.of(raw, algorithm)
    try:
        described = describe(repo, raw, digest, _content_type(headers.get("content-type")))
    except InvalidManifest as exc:
        raise ApiError("MANIFEST_INVALID", exc.message) from None
    if isinstance(ref, Digest) and digest != ref:
        raise ApiError("DIGEST_INVALID", "manifest content does not match the digest in the URL",
                       detail={"digest": str(ref)})
    doc, row, refs, subject = described.doc, described.row, described.refs, described.row.subject
    _validate(reg, repo, doc)  # early, outside the write lock, for a quick answer
    await run_io(reg.blobs.write, raw, digest)
    tags = (ref,) if isinstance(ref, str) else tag_params
    await run_io(reg.meta.put_manifest, row, refs, tags, lambda: _validate(reg, repo, doc))
    out = {"Location": f"/v2/{repo}/manifests/{digest}", "Docker-Content-Digest": str(digest),
           "Content-Length": "0"}
    if subject is not None:
        out["OCI-Subject"] = subject
    response = Response(status_code=201, headers=out)
    if not isinstance(ref, str):
        for tag in tag_params:
            response.headers.append("OCI-Tag", tag)
    return response


async def delete_manifest(reg: Registry, repo: str, ref: Digest | str) -> Response:
    if not reg.config.delete_enabled:
        raise ApiError("UNSUPPORTED", "deletes are disabled on this registry", status=405)
    if isinstance(ref, str):
        done = await run_io(reg.meta.delete_tag, repo, ref)
        if not done and reg.local.lookup(repo, ref) is not None:
            raise ApiError("DENIED", "tag comes from a local store name; remove it with 'polyarch rm'", status=409)
    else:
        done = await run_io(reg.meta.delete_manifest, repo, str(ref))
        if not done and reg.local.manifest(repo, str(ref)) is not None:
            raise ApiError("DENIED", "manifest belongs to a local store image; remove it with 'polyarch rm'",
                           status=409)
    if not done:
        raise ApiError("MANIFEST_UNKNOWN", "manifest unknown", detail={"reference": str(ref)})
    return Response(status_code=202, headers={"Content-Length": "0"})


def page_params(reg: Registry, query: Any) -> tuple[int, str]:
    """``n`` and ``last``: n is a non-negative integer, clamped to the page maximum; else 400."""
    n_text = query.get("n")
    n = reg.config.page_max
    if n_text is not None:
        if not n_text.isdigit() or len(n_text) > 19:
            raise ApiError("PAGINATION_NUMBER_INVALID", "n must be a non-negative integer",
                           detail={"n": n_text[:40]})
        n = min(int(n_text), reg.config.page_max)
    last = query.get("last") or ""
    if len(last) > 512:
        raise ApiError("PAGINATION_NUMBER_INVALID", "last is too long")
    return n, last


def _page(items: list[str], n: int, link: str, doc: dict[str, Any], key: str) -> Response:
    more = len(items) > n
    items = items[:n]
    headers = {}
    if more and items:
        headers["Link"] = f'<{link}?n={n}&last={items[-1]}>; rel="next"'
    return Response(json.dumps({**doc, key: items}).encode(), headers=headers, media_type="application/json")


async def list_tags(reg: Registry, repo: str, query: Any) -> Response:
    """The repository's tags; on a pull-through mirror also the upstream's (when it answers)."""
    n, last = page_params(reg, query)
    remote = await run_io(reg.proxy.tags, repo) if reg.proxy is not None else None
    if remote is None and not reg.repo_known(repo):
        raise ApiError("NAME_UNKNOWN", "repository name not known to registry", detail={"name": repo})
    db = reg.meta.tags(repo, last=last, limit=n + 1)
    local = [t for t in reg.local.view().repos.get(repo, []) if t > last]
    tags = sorted(set(db) | set(local) | {t for t in remote or () if t > last})[: n + 1]
    return _page(tags, n, f"/v2/{repo}/tags/list", {"name": repo}, "tags")


def catalog(reg: Registry, query: Any) -> Response:
    n, last = page_params(reg, query)
    db = reg.meta.repos(last=last, limit=n + 1)
    local = [r for r in reg.local.view().repos if r > last]
    repos = sorted(set(db) | set(local))[: n + 1]
    return _page(repos, n, "/v2/_catalog", {}, "repositories")


def referrers(reg: Registry, repo: str, digest: Digest, query: Any) -> Response:
    wanted = query.get("artifactType")
    rows = reg.meta.referrers(repo, str(digest))
    headers = {}
    if wanted:
        rows = [r for r in rows if r.artifact_type == wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    manifests = []
    for r in rows:
        entry: dict[str, Any] = {"mediaType": r.media_type, "digest": r.digest, "size": r.size}
        if r.artifact_type:
            entry["artifactType"] = r.artifact_type
        if r.annotations:
            entry["annotations"] = r.annotations
        manifests.append(entry)
    body = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": manifests}).encode()
    return Response(body, headers=headers, media_type=MediaType.OCI_INDEX)
