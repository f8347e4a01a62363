"""The embedded OCI distribution registry: a Starlette app over the polyarch content store.

``Registry`` owns the state (store, SQLite metadata, upload sessions, auth); ``create_app`` makes the ASGI
app; ``polyarch registry serve`` runs it under uvicorn (:mod:`.serve`); ``collect_garbage`` is the online GC.
"""

from __future__ import annotations

from .app import create_app
from .auth import Authorizer, Htpasswd, TokenIssuer
from .gc import GcReport, collect_garbage, registry_roots, scrub
from .state import Registry, RegistryConfig

__all__ = ["Authorizer", "GcReport", "Htpasswd", "Registry", "RegistryConfig", "TokenIssuer", "collect_garbage",
           "create_app", "registry_roots", "scrub"]
