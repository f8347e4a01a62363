"""The registry's web page at ``/ui/`` (``polyarch registry serve --ui``): repositories, the coverage matrix
(tags × platforms with verify's verdict), tag pages, delete with confirmation, GC status; JSON of the same views
under ``/ui/api/``. Server-rendered (Jinja2, one stylesheet, no script, no external asset).

API::

    web = WebUi(reg, UiOptions(verifier=…, hosts=(HostPlatform("pi4", linux/arm64),), viewers={"guest"}))
    app = create_app(reg, ui=web)     # mounts web.router() at /ui, starts/stops its verifier thread,
                                      # and calls web.after_push(repo, digest) after every manifest PUT

``verifier`` is made by the CLI (``verify/`` is a higher layer): without one the cells say ``unverified``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.routing import Router

from ..state import Registry
from .catalog import Catalog
from .model import CellVerdict, HostPlatform, PlatformEntry
from .routes import UiRoutes
from .sessions import Sessions
from .verdicts import VerdictCache, Verifier

__all__ = ["CellVerdict", "HostPlatform", "PlatformEntry", "UiOptions", "Verifier", "WebUi"]


@dataclass(frozen=True, slots=True)
class UiOptions:
    verifier: Verifier | None = None
    hosts: tuple[HostPlatform, ...] = ()
    viewers: frozenset[str] = field(default_factory=frozenset)  # users who may look but never delete
    session_ttl: float = 8 * 3600.0


class WebUi:
    """The page over one ``Registry``; owns the verdict worker (``start``/``close``)."""

    def __init__(self, reg: Registry, options: UiOptions | None = None) -> None:
        options = options or UiOptions()
        self.catalog = Catalog(reg)
        self.verdicts = VerdictCache(self.catalog, options.verifier)
        self._routes = UiRoutes(reg, self.catalog, self.verdicts, Sessions(options.session_ttl), options.hosts,
                                options.viewers)

    def router(self) -> Router:
        return self._routes.router()

    def start(self) -> None:
        """Start verifying: every tag already there is queued (in the background; pages never wait)."""
        self.verdicts.start()
        for tag in self.catalog.tags():
            self.verdicts.after_push(tag.digest, tag.media_type)

    def after_push(self, repo: str, digest: str) -> None:
        self.verdicts.after_push(digest)

    def close(self) -> None:
        self.verdicts.close()
