"""HTTP handlers of blob uploads: POST (session, monolithic, mount), PATCH, PUT, GET status, DELETE."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from polyarch.digest import ALGORITHMS, Digest

from .auth import Access
from .body import pump, run_io
from .errors import ApiError
from .names import check_repository, parse_digest
from .state import Registry
from .uploads import Session, parse_content_range

__all__ = ["cancel_upload", "finish_upload", "patch_upload", "start_upload", "upload_status"]


def _created(repo: str, digest: Digest) -> Response:
    return Response(status_code=201, headers={"Location": f"/v2/{repo}/blobs/{digest}",
                                              "Docker-Content-Digest": str(digest), "Content-Length": "0"})


def _progress(session: Session, status: int) -> Response:
    return Response(status_code=status, headers={
        "Location": f"/v2/{session.repo}/blobs/uploads/{session.id}", "Range": session.range_header(),
        "Docker-Upload-UUID": session.id, "Content-Length": "0"})


async def _session(reg: Registry, upload_id: str, repo: str) -> Session:
    """A live session at once (no await: requests keep their arrival order on its lock); one of an earlier
    process is resumed from storage on an I/O thread."""
    if reg.uploads.is_live(upload_id):
        return reg.uploads.get(upload_id, repo)
    return await run_io(reg.uploads.get, upload_id, repo)  # type: ignore[return-value]


def _client(request: Request) -> str:
    """The address the session limits count against (the peer: behind a proxy, all clients are one)."""
    return request.client.host if request.client is not None else ""


async def _try_mount(reg: Registry, repo: str, digest: Digest, source: str | None, headers: Any) -> bool:
    text = str(digest)
    if source:
        try:
            check_repository(source)
        except ApiError:
            return False
        if not reg.auth.can(headers, Access("repository", source, frozenset({"pull"}))):
            return False
        if reg.blob_size(source, digest) is None:
            return False
    elif reg.auth.tokens is not None:  # anonymous mount: only from a repository this token may pull
        repos = reg.meta.repos_with_blob(text)
        if not any(reg.auth.can(headers, Access("repository", r, frozenset({"pull"}))) for r in repos):
            return False
        if reg.blobs.stat(digest) is None:
            return False
    elif reg.blobs.stat(digest) is None:
        return False
    await run_io(reg.meta.link, repo, text)
    return True


async def _monolithic(reg: Registry, repo: str, digest: Digest, request: Request) -> None:
    """``POST ?digest=``: the body goes through a one-shot session (same verify → fsync → rename path)."""
    session: Session = await run_io(reg.uploads.start, repo, digest.algorithm,  # type: ignore[assignment]
                                    _client(request))
    try:
        await pump(request.receive, session.append, reg.config.idle_timeout, reg.config.max_blob)
        await run_io(reg.uploads.commit, session, digest)
    except BaseException:
        if not session.closed:
            await run_io(reg.uploads.cancel, session)
        raise
    await run_io(reg.meta.finish_upload, session.id, repo, str(digest))


async def start_upload(reg: Registry, repo: str, request: Request) -> Response:
    q = request.query_params
    mount = q.get("mount")
    if mount:
        digest = parse_digest(mount)
        if await _try_mount(reg, repo, digest, q.get("from"), request.headers):
            return _created(repo, digest)
    if q.get("digest") is not None:
        digest = parse_digest(q["digest"])
        await _monolithic(reg, repo, digest, request)
        return _created(repo, digest)
    algorithm = q.get("digest-algorithm") or "sha256"
    if algorithm not in ALGORITHMS:
        raise ApiError("DIGEST_INVALID", f"unsupported digest algorithm {algorithm[:20]!r}",
                       detail={"supported": sorted(ALGORITHMS)})
    session: Session = await run_io(reg.uploads.start, repo, algorithm, _client(request))  # type: ignore[assignment]
    return _progress(session, 202)


async def _append(reg: Registry, session: Session, request: Request, *, required: bool, save: bool = False) -> None:
    """Stream the request body onto the session, honouring ``Content-Range``; with ``save``, make it durable and
    record the new offset; rolled back on any failure (also of the save)."""
    cr = request.headers.get("content-range")
    cl = request.headers.get("content-length")
    expected = None
    if cr:
        start, end = parse_content_range(cr)
        if start != session.offset:
            raise ApiError("BLOB_UPLOAD_INVALID", f"chunk starts at {start}, upload is at {session.offset}",
                           status=416, headers={"Range": session.range_header(),
                                                "Location": f"/v2/{session.repo}/blobs/uploads/{session.id}"})
        expected = end - start + 1
        if cl is not None and (not cl.isdigit() or int(cl) != expected):
            raise ApiError("SIZE_INVALID", "Content-Length does not match Content-Range", status=400)
    if not required and cl in (None, "0") and "chunked" not in request.headers.get("transfer-encoding", ""):
        return
    state = session.checkpoint()
    limit = None if reg.config.max_blob is None else reg.config.max_blob - session.offset
    try:
        n = await pump(request.receive, session.append, reg.config.idle_timeout, limit)
        if expected is not None and n != expected:
            raise ApiError("SIZE_INVALID", f"chunk has {n} bytes, Content-Range says {expected}", status=400)
        if save:
            await run_io(reg.uploads.save_offset, session)
    except BaseException:
        await run_io(session.rollback, state)
        raise


async def patch_upload(reg: Registry, repo: str, upload_id: str, request: Request) -> Response:
    session: Session = await _session(reg, upload_id, repo)
    async with session.lock:
        # finished or purged while we waited?
        session = await _session(reg, upload_id, repo)
        await _append(reg, session, request, required=True, save=True)
        return _progress(session, 202)


async def finish_upload(reg: Registry, repo: str, upload_id: str, request: Request) -> Response:
    text = request.query_params.get("digest")
    if not text:
        raise ApiError("DIGEST_INVALID", "digest query parameter is required")
    digest = parse_digest(text)
    session: Session = await _session(reg, upload_id, repo)
    async with session.lock:
        session = await _session(reg, upload_id, repo)
        await _append(reg, session, request, required=False)
        await run_io(reg.uploads.commit, session, digest)
        await run_io(reg.meta.finish_upload, session.id, repo, str(digest))
    return _created(repo, digest)


async def upload_status(reg: Registry, repo: str, upload_id: str) -> Response:
    session: Session = await _session(reg, upload_id, repo)
    return _progress(session, 204)


async def cancel_upload(reg: Registry, repo: str, upload_id: str) -> Response:
    session: Session = await _session(reg, upload_id, repo)
    async with session.lock:
        session = await _session(reg, upload_id, repo)
        await run_io(reg.uploads.cancel, session)
    return Response(status_code=204, headers={"Content-Length": "0"})
