"""The HTTP side of the web page: routes under ``/ui/`` (HTML) and ``/ui/api/`` (the same views as JSON).

Auth is the registry's: without it every visitor may look (and delete, when deletes are on); with htpasswd or
token auth a page needs a login (``/ui/login``, the htpasswd users; a session cookie after) and ``/ui/api/``
also takes Basic credentials. Users named read-only (``UiOptions.viewers``), a ``--read-only`` registry or
deletes off: no delete button, and the delete routes answer 403. A delete is a confirmation page, then a POST
carrying the session's CSRF token (and, when the browser sends one, an ``Origin`` of this site; the session
cookie is SameSite=Strict); it deletes the tag as ``DELETE /v2/<repo>/manifests/<tag>`` does.
Unknown or malformed repositories and tags answer a 404 page; nothing answers a traceback.
"""

from __future__ import annotations

import base64
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, Router

from polyarch.oci.reference import valid_repository, valid_tag

from .. import manifests
from ..body import ClientGone, read_capped, run_io
from ..errors import ApiError
from ..state import Registry
from ..storage import StorageUnavailable
from .catalog import Catalog
from .model import HostPlatform, Viewer
from .render import HEADERS, Renderer
from .sessions import COOKIE, Session, Sessions
from .verdicts import VerdictCache
from .views import gc_view, matrix_view, repo_view, repositories_view, tag_view

__all__ = ["UiRoutes"]

log = logging.getLogger("polyarch.registry.ui")
MAX_FORM = 16 << 10
Handler = Callable[[Request], Awaitable[Response]]


class NotFoundPage(Exception):
    pass


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def split_ref(ref: str) -> tuple[str, str | None]:
    """``app/x:1`` → (``app/x``, ``1``); ``app/x`` → (``app/x``, None). :raises NotFoundPage: malformed."""
    repo, sep, tag = ref.rpartition(":")
    if not sep:
        repo, tag = ref, ""
    if not valid_repository(repo) or (sep and not valid_tag(tag)):
        raise NotFoundPage(ref)
    return repo, (tag if sep else None)


class UiRoutes:
    """The Starlette router of ``/ui`` over one registry."""

    def __init__(self, reg: Registry, catalog: Catalog, verdicts: VerdictCache, sessions: Sessions,
                 hosts: tuple[HostPlatform, ...], viewers: frozenset[str]) -> None:
        self.reg = reg
        self.catalog = catalog
        self.verdicts = verdicts
        self.sessions = sessions
        self.hosts = hosts
        self.viewers = viewers
        self.render = Renderer()

    def router(self) -> Router:
        page, api = self._page, self._api
        return Router(routes=[
            Route("/", page(self.repositories)),
            Route("/matrix", page(self.matrix)),
            Route("/r/{ref:path}", page(self.ref)),
            Route("/delete/{ref:path}", page(self.delete), methods=["GET", "POST"]),
            Route("/gc", page(self.gc)),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", page(self.logout), methods=["POST"]),
            Route("/static/style.css", self.css),
            Route("/api/repos", api(lambda r, v: repositories_view(self.catalog, r.query_params.get("q", "")))),
            Route("/api/matrix", api(self._matrix_data)),
            Route("/api/r/{ref:path}", api(self._ref_data)),
            Route("/api/gc", api(lambda r, v: gc_view(self.reg))),
        ])

    # --- who is asking -------------------------------------------------------------------------------------

    async def _viewer(self, request: Request, *, basic: bool) -> tuple[Viewer | None, Session | None]:
        """The viewer, and a new session to set as cookie (anonymous, when the registry has no auth)."""
        session = self.sessions.get(request.cookies.get(COOKIE))
        fresh = None
        if not self.reg.auth.enabled:
            if session is None:
                session = fresh = self.sessions.create("", anonymous=True)
            return self._as_viewer("", session.csrf), fresh
        if session is not None and not session.anonymous:
            return self._as_viewer(session.user, session.csrf), None
        if basic:
            user = await self.reg.auth.check_basic(request.headers)
            if user is not None:
                return self._as_viewer(user, ""), None
        return None, None

    def _as_viewer(self, user: str, csrf: str) -> Viewer:
        cfg = self.reg.config
        return Viewer(user, cfg.delete_enabled and not cfg.read_only and user not in self.viewers, csrf)

    def _cookie(self, request: Request, response: Response, session: Session) -> None:
        response.set_cookie(COOKIE, session.id, max_age=int(self.sessions.ttl), path="/ui", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")

    def _page(self, view: Callable[[Request, Viewer], Awaitable[Response]]) -> Handler:
        async def handle(request: Request) -> Response:
            try:
                viewer, fresh = await self._viewer(request, basic=False)
                if viewer is None:
                    target = urllib.parse.quote(request.url.path + (f"?{request.url.query}" if request.url.query
                                                                     else ""), safe="/")
                    return RedirectResponse(f"/ui/login?next={target}", status_code=303, headers=HEADERS)
                response = await view(request, viewer)
                if fresh is not None:
                    self._cookie(request, response, fresh)
                return response
            except Exception as exc:
                return self._failure(request, exc, viewer=None)
        return handle

    def _api(self, view: Callable[[Request, Viewer], Any]) -> Handler:
        async def handle(request: Request) -> Response:
            try:
                viewer, _ = await self._viewer(request, basic=True)
                if viewer is None:
                    return JSONResponse({"error": "authentication required"}, status_code=401,
                                        headers={"WWW-Authenticate": 'Basic realm="polyarch-registry"'})
                data = await run_io(view, request, viewer)
                return JSONResponse(data, headers={"Cache-Control": "no-store"})
            except NotFoundPage:
                return JSONResponse({"error": "not found"}, status_code=404)
            except ApiError as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            except StorageUnavailable:
                return JSONResponse({"error": "storage unavailable"}, status_code=503)
            except Exception:
                log.exception("ui api failure on %s", request.url.path[:200])
                return JSONResponse({"error": "internal error"}, status_code=500)
        return handle

    def _failure(self, request: Request, exc: Exception, viewer: Viewer | None) -> Response:
        if isinstance(exc, NotFoundPage):
            return self._error(404, "Not found", "No such repository or tag.")
        if isinstance(exc, Refused):
            return self._error(exc.status, "Not allowed", exc.message)
        if isinstance(exc, ApiError):
            return self._error(exc.status, "Refused", exc.message)
        if isinstance(exc, StorageUnavailable):
            return self._error(503, "Storage unavailable", "The registry's storage cannot be reached; retry later.")
        if isinstance(exc, ClientGone):
            return Response(status_code=400)
        log.exception("ui failure on %s", request.url.path[:200])
        return self._error(500, "Internal error", "The page could not be made; the registry log says why.")

    def _error(self, status: int, title: str, message: str) -> Response:
        return self.render.page("error.html", {"title": title, "message": message, "viewer": None,
                                               "status": status, "nav": ""}, status=status)

    def _html(self, name: str, viewer: Viewer, nav: str, **context: Any) -> Response:
        return self.render.page(name, {"viewer": viewer, "nav": nav, "auth": self.reg.auth.enabled, **context})

    # --- pages ---------------------------------------------------------------------------------------------

    async def repositories(self, request: Request, viewer: Viewer) -> Response:
        view = await run_io(repositories_view, self.catalog, request.query_params.get("q", "")[:200])
        return self._html("repos.html", viewer, "repos", title="Repositories", view=view)

    def _matrix_data(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        q = request.query_params
        return matrix_view(self.catalog, self.verdicts, self.hosts, q.get("q", "")[:200], q.get("host", "")[:200])

    async def matrix(self, request: Request, viewer: Viewer) -> Response:
        view = await run_io(self._matrix_data, request, viewer)
        return self._html("matrix.html", viewer, "matrix", title="Coverage", view=view, memo={})

    def _ref_data(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        repo, tag = split_ref(request.path_params["ref"])
        if tag is None:
            view = repo_view(self.catalog, repo)
        else:
            info = self.catalog.resolve(repo, tag)
            view = None if info is None else tag_view(self.reg, self.catalog, self.verdicts, info,
                                                      request.url.netloc, viewer.may_delete)
        if view is None:
            raise NotFoundPage(repo)
        return view

    async def ref(self, request: Request, viewer: Viewer) -> Response:
        view = await run_io(self._ref_data, request, viewer)
        if "tag" in view and "platforms" in view:
            return self._html("tag.html", viewer, "", title=f"{view['repo']}:{view['tag']}", view=view)
        return self._html("repo.html", viewer, "", title=view["repo"], view=view,
                          deleted=request.query_params.get("deleted", "")[:128])

    async def delete(self, request: Request, viewer: Viewer) -> Response:
        repo, tag = split_ref(request.path_params["ref"])
        if tag is None:
            raise NotFoundPage(repo)
        info = await run_io(self.catalog.resolve, repo, tag)
        if info is None:
            raise NotFoundPage(repo)
        if not viewer.may_delete:
            raise Refused(403, "Deleting is not enabled for you on this registry.")
        if info.local:
            raise Refused(409, "This tag is a local store name; remove it with 'polyarch rm'.")
        if request.method == "GET":
            return self._html("delete.html", viewer, "", title=f"Delete {info.ref}", info=info)
        form = await self._form(request)
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None or not viewer.csrf or not session.csrf_ok(form.get("csrf", "")):
            raise Refused(403, "The form expired or did not come from this page; open it again.")
        await manifests.delete_manifest(self.reg, repo, tag)
        log.warning("ui: %s deleted %s", viewer.user or "anonymous", info.ref)
        return RedirectResponse(f"/ui/r/{repo}?deleted={urllib.parse.quote(tag)}", status_code=303,
                                headers=HEADERS)

    async def gc(self, request: Request, viewer: Viewer) -> Response:
        view = await run_io(gc_view, self.reg)
        return self._html("gc.html", viewer, "gc", title="Garbage collection", view=view)

    async def logout(self, request: Request, viewer: Viewer) -> Response:
        form = await self._form(request)
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is not None and session.csrf_ok(form.get("csrf", "")):
            self.sessions.drop(session.id)
        response = RedirectResponse("/ui/login" if self.reg.auth.enabled else "/ui/", status_code=303,
                                    headers=HEADERS)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    async def login(self, request: Request) -> Response:
        try:
            return await self._login(request)
        except Exception as exc:
            return self._failure(request, exc, viewer=None)

    async def _login(self, request: Request) -> Response:
        if not self.reg.auth.enabled:
            return RedirectResponse("/ui/", status_code=303, headers=HEADERS)
        target = _safe_next(request.query_params.get("next", ""))
        if request.method == "GET":
            return self.render.page("login.html", {"viewer": None, "nav": "", "title": "Log in", "error": "",
                                                   "next": target, "user": ""})
        form = await self._form(request)
        user, password = form.get("user", "")[:256], form.get("password", "")[:1024]
        target = _safe_next(form.get("next", target))
        header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        ok = bool(user) and ":" not in user and await self.reg.auth.check_basic({"authorization": header}) == user
        if not ok:
            return self.render.page("login.html", {"viewer": None, "nav": "", "title": "Log in", "next": target,
                                                   "error": "Wrong user name or password.", "user": user},
                                    status=401)
        response = RedirectResponse(target, status_code=303, headers=HEADERS)
        self._cookie(request, response, self.sessions.create(user))
        return response

    async def _form(self, request: Request) -> dict[str, str]:
        """A POSTed form (at most ``MAX_FORM`` bytes); refused when the browser says it came from another site."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urllib.parse.urlsplit(origin).netloc != request.url.netloc:
            raise Refused(403, "The form came from another site.")
        body = await read_capped(request.receive, MAX_FORM, self.reg.config.idle_timeout)
        try:
            fields = urllib.parse.parse_qs(body.decode("utf-8"), max_num_fields=20, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "The form could not be read.") from None
        return {k: v[0] for k, v in fields.items()}

    async def css(self, request: Request) -> Response:
        return self.render.css()


def _safe_next(target: str) -> str:
    """Only a path of this page after login: no other host, no scheme, no ``//``."""
    if target.startswith("/ui/") and "//" not in target and "\\" not in target and len(target) < 2000:
        return target
    return "/ui/"
