"""The Starlette application: one dispatcher for ``/v2/…`` (strict raw-path routing, see :mod:`.names`), the
token endpoint, and the translation of every failure into a spec error answer.

A ``--read-only`` registry answers every POST, PUT, PATCH and DELETE with 405 ``UNSUPPORTED`` before anything
else is looked at (distribution registers no write handler then: 405 too); so does a pull-through mirror
(``Registry.proxy``) unless it allows pushes. Client errors are 4xx with a spec code;
a full disk is 507; any other failure is 500 ``UNKNOWN`` whose body names no internal path. Expired upload sessions are purged by a background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.routing import Route as StarletteRoute

from polyarch.errors import LimitExceeded, NotFound, StoreError

from . import blobs, manifests, upload_api
from .auth import Access
from .body import ClientGone, read_capped
from .errors import ApiError, error_response
from .names import Route, parse_digest, parse_reference, parse_route, parse_tag_params
from .state import Registry
from .storage import StorageUnavailable

if TYPE_CHECKING:
    from .ui import WebUi

__all__ = ["create_app"]

log = logging.getLogger("polyarch.registry")
API_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")
_READ = frozenset({"pull"})
_WRITE = frozenset({"pull", "push"})
_DELETE = frozenset({"delete"})
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})  # refused, on every route, by --read-only


def _needs(route: Route, method: str) -> list[Access]:
    if route.kind == "base":
        return []
    if route.kind == "catalog":
        return [Access("registry", "catalog", frozenset({"*"}))]
    if method == "DELETE" and route.kind in ("manifest", "blob"):
        return [Access("repository", route.name, _DELETE)]
    if method in ("GET", "HEAD") and route.kind not in ("upload",):
        return [Access("repository", route.name, _READ)]
    return [Access("repository", route.name, _WRITE)]


def _allowed(route: Route) -> tuple[str, ...]:
    return {
        "base": ("GET", "HEAD"), "catalog": ("GET",), "tags": ("GET",), "referrers": ("GET",),
        "manifest": ("GET", "HEAD", "PUT", "DELETE"), "blob": ("GET", "HEAD", "DELETE"),
        "uploads": ("POST",), "upload": ("GET", "PATCH", "PUT", "DELETE"),
    }[route.kind]


async def _handle(reg: Registry, request: Request, route: Route) -> Response:
    method = request.method
    head = method == "HEAD"
    if method not in _allowed(route):
        raise ApiError("UNSUPPORTED", f"method {method} not allowed here", status=405,
                       headers={"Allow": ", ".join(_allowed(route))})
    if reg.config.read_only and method in _MUTATING:
        raise ApiError("UNSUPPORTED", "registry is read-only", status=405)
    if reg.proxy is not None and not reg.proxy.config.allow_push and method in _MUTATING:
        raise ApiError("UNSUPPORTED", "registry is a pull-through cache: pushes are refused", status=405)
    await reg.auth.authorize(request.headers, _needs(route, method), str(request.base_url))
    kind, name = route.kind, route.name
    if kind == "base":
        return Response(b"{}", media_type="application/json")
    if kind == "catalog":
        return manifests.catalog(reg, request.query_params)
    if kind == "tags":
        return await manifests.list_tags(reg, name, request.query_params)
    if kind == "referrers":
        return manifests.referrers(reg, name, parse_digest(route.ref), request.query_params)
    if kind == "manifest":
        ref = parse_reference(route.ref)
        if method in ("GET", "HEAD"):
            return await manifests.get_manifest(reg, name, ref, head=head)
        if method == "PUT":
            tags = () if isinstance(ref, str) else parse_tag_params(request.query_params.getlist("tag"))
            return await manifests.put_manifest(reg, name, ref, request.receive, request.headers, tags)
        return await manifests.delete_manifest(reg, name, ref)
    if kind == "blob":
        digest = parse_digest(route.ref)
        if method == "DELETE":
            return await blobs.delete_blob(reg, name, digest)
        return await blobs.get_blob(reg, name, digest, request.headers.get("range"), head=head)
    if kind == "uploads":
        return await upload_api.start_upload(reg, name, request)
    if method == "PATCH":
        return await upload_api.patch_upload(reg, name, route.ref, request)
    if method == "PUT":
        return await upload_api.finish_upload(reg, name, route.ref, request)
    if method == "DELETE":
        return await upload_api.cancel_upload(reg, name, route.ref)
    return await upload_api.upload_status(reg, name, route.ref)


def _storage_error(exc: BaseException) -> Response:
    cause: BaseException | None = exc
    while cause is not None:
        full = (isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)) or \
            (isinstance(cause, sqlite3.OperationalError) and "full" in str(cause))
        if full:
            return error_response(507, "UNKNOWN", "insufficient storage on the registry")
        cause = cause.__cause__ or cause.__context__
    log.error("storage error: %s", exc)
    return error_response(500, "UNKNOWN", "storage error")


def create_app(reg: Registry, *, purge_interval: float = 60.0, ui: WebUi | None = None) -> Starlette:
    """The ASGI app over ``reg`` (which the caller owns and closes); with ``ui`` the web page at ``/ui/`` (and
    ``/`` redirects there), told of every stored manifest."""

    async def dispatch(request: Request) -> Response:
        head = request.method == "HEAD"
        try:
            route = parse_route(request.scope.get("raw_path") or request.url.path.encode())
            if route is None:
                raise ApiError("UNSUPPORTED", "not found", status=404)
            response = await _handle(reg, request, route)
            if ui is not None and route.kind == "manifest" and response.status_code == 201:
                ui.after_push(route.name, response.headers["Docker-Content-Digest"])
        except ApiError as exc:
            response = exc.response(head=head)
        except ClientGone:
            return Response(status_code=400)
        except LimitExceeded as exc:
            response = error_response(413, "SIZE_INVALID", exc.message, head=head)
        except NotFound:
            response = error_response(404, "BLOB_UNKNOWN", "not found", head=head)
        except StorageUnavailable as exc:
            log.error("storage unavailable: %s", exc)
            response = error_response(503, "UNAVAILABLE", "storage backend unavailable, retry later",
                                      headers={"Retry-After": "5"}, head=head)
        except (StoreError, OSError) as exc:
            response = _storage_error(exc)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.url.path[:200])
            response = error_response(500, "UNKNOWN", "internal error", head=head)
        response.headers.setdefault(*API_HEADER)
        return response

    async def token(request: Request) -> Response:
        try:
            scopes = request.query_params.getlist("scope")
            service = request.query_params.get("service", "")
            if request.method == "POST":  # OAuth2 style: application/x-www-form-urlencoded
                body = await read_capped(request.receive, 64 << 10, reg.config.idle_timeout)
                form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=50)
                scopes = form.get("scope") or scopes
                service = (form.get("service") or [service])[0]
            data = await reg.auth.issue_token(request.headers, scopes, service, read_only=reg.config.read_only)
        except ApiError as exc:
            return exc.response()
        except (ClientGone, ValueError):
            return error_response(400, "UNSUPPORTED", "bad token request")
        return JSONResponse(data)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def purge() -> None:
            while True:
                await asyncio.sleep(purge_interval)
                try:
                    reg.uploads.expire()
                except Exception:
                    log.exception("upload purge failed")

        task = asyncio.create_task(purge())
        if ui is not None:
            ui.start()
        try:
            yield
        finally:
            task.cancel()
            if ui is not None:
                ui.close()

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    routes = [StarletteRoute("/token", token, methods=["GET", "POST"])]
    if ui is not None:
        async def home(request: Request) -> Response:
            return RedirectResponse("/ui/", status_code=302)

        routes += [StarletteRoute("/", home, methods=["GET", "HEAD"]), Mount("/ui", app=ui.router())]
    routes.append(StarletteRoute("/{path:path}", dispatch, methods=methods))
    return Starlette(routes=routes, lifespan=lifespan)
