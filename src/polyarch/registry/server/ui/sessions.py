"""Browser sessions of the web page: who is logged in, and each session's CSRF token.

A session is a random id (the ``polyarch_ui`` cookie: HttpOnly, SameSite=Strict, Secure over TLS) mapped in
memory to its user, CSRF token and expiry; a restart logs everyone out. Without registry auth every visitor gets
an anonymous session so forms still carry a CSRF token. The token is compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

__all__ = ["COOKIE", "Session", "Sessions"]

COOKIE = "polyarch_ui"


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: str
    csrf: str
    expires: float
    anonymous: bool = False

    def csrf_ok(self, token: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), token.encode())


class Sessions:
    """Live sessions (at most ``max_sessions``; the oldest expire first when full)."""

    def __init__(self, ttl: float = 8 * 3600.0, max_sessions: int = 10_000) -> None:
        self.ttl = ttl
        self._max = max_sessions
        self._live: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str, *, anonymous: bool = False) -> Session:
        now = time.time()
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now + self.ttl, anonymous)
        with self._lock:
            if len(self._live) >= self._max:
                self._live = {k: s for k, s in self._live.items() if s.expires > now}
                while len(self._live) >= self._max:
                    del self._live[min(self._live, key=lambda k: self._live[k].expires)]
            self._live[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        session = self._live.get(session_id)
        if session is None or session.expires <= time.time():
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        with self._lock:
            self._live.pop(session_id or "", None)
