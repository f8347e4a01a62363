"""Registry authentication: ``WWW-Authenticate`` challenges, bearer tokens per scope, basic auth.

A registry answers 401 with a challenge: ``Basic realm="…"`` or ``Bearer realm="…",service="…",scope="…"``. For
Bearer, a token is fetched from the realm (GET with basic credentials, or POST ``grant_type=refresh_token`` for an
identity token) for the scopes a request needs, cached per (host, scopes) until shortly before it expires, and
dropped when the registry rejects it. Credentials only ever go to the registry's own origin and to the realm it
named; the client strips them on cross-origin redirects. A token answer is read up to 1 MiB and no further.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from polyarch.errors import RegistryError
from polyarch.oci.jsonutil import loads

from .bodies import read_capped
from .credentials import Credential

__all__ = [
    "Authenticator",
    "Challenge",
    "TokenFetcher",
    "basic_header",
    "parse_challenges",
    "scope_for",
]

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
_DEFAULT_TTL = 60.0
_MAX_TTL = 86400.0
_MARGIN = 10.0
MAX_TOKEN_RESPONSE = 1 << 20


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lowercase
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse one ``WWW-Authenticate`` value into challenges (several may share the header)."""
    out: list[Challenge] = []
    rest = header.strip()
    while rest:
        m = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", rest)
        if not m:
            break
        scheme = m.group(1).lower()
        rest = rest[m.end():]
        params: dict[str, str] = {}
        while rest:
            pm = _PARAM_RE.match(rest)
            if not pm:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
            rest = rest[pm.end():]
        out.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return out


def scope_for(repository: str, actions: str) -> str:
    """``repository:NAME:pull`` or ``repository:NAME:pull,push``."""
    return f"repository:{repository}:{actions}"


def basic_header(cred: Credential) -> str:
    return "Basic " + base64.b64encode(f"{cred.username}:{cred.secret}".encode()).decode()


# (realm, service, scopes, credential) -> (token, ttl seconds)
TokenFetcher = Callable[[Challenge, Sequence[str], Credential | None], tuple[str, float]]


class Authenticator:
    """Per-registry auth state: the challenge scheme once known, and cached bearer tokens per scope set.

    Thread-safe: parallel blob transfers share one instance; a token for a scope is fetched once.
    """

    def __init__(self, registry: str, credential: Credential | None, fetch_token: TokenFetcher) -> None:
        self.registry = registry
        self.credential = credential
        self._fetch = fetch_token
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._scope_locks: dict[tuple[str, ...], threading.Lock] = {}

    @property
    def challenge(self) -> Challenge | None:
        return self._challenge

    def learn(self, header: str) -> Challenge | None:
        """Remember the challenge from a 401; returns it (None when it is not one we support)."""
        chosen = None
        for ch in parse_challenges(header):
            if ch.scheme == "bearer" and ch.realm:
                chosen = ch
                break
            if ch.scheme == "basic" and chosen is None:
                chosen = ch
        if chosen is not None:
            self._challenge = chosen
        return chosen

    def header(self, scopes: Sequence[str]) -> str | None:
        """The Authorization value for a request needing ``scopes``, or None (anonymous / not yet challenged)."""
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            return basic_header(self.credential) if self.credential and not self.credential.is_identity_token \
                else None
        key = tuple(sorted(set(scopes)))
        now = time.monotonic()
        cached = self._tokens.get(key)
        if cached and cached[1] > now:
            return f"Bearer {cached[0]}"
        with self._lock:
            lock = self._scope_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic():
                return f"Bearer {cached[0]}"
            token, ttl = self._fetch(ch, key, self.credential)
            self._tokens[key] = (token, time.monotonic() + max(ttl - _MARGIN, ttl / 2))
            return f"Bearer {token}"

    def invalidate(self, scopes: Sequence[str]) -> None:
        self._tokens.pop(tuple(sorted(set(scopes))), None)


def fetch_token(http: httpx.Client, registry: str, challenge: Challenge, scopes: Sequence[str],
                credential: Credential | None) -> tuple[str, float]:
    """Exchange credentials for a bearer token at the challenge's realm (distribution token spec).

    :raises RegistryError: 401/403 from the realm (bad credentials), or an answer without a token.
    """
    realm = challenge.realm
    if not realm.startswith(("https://", "http://")):
        raise RegistryError(f"{registry}: token realm {realm[:100]!r} is not an http(s) URL")
    scope_text = " ".join(scopes) or "(none)"
    if credential is not None and credential.is_identity_token:
        form = {"grant_type": "refresh_token", "refresh_token": credential.secret, "client_id": "polyarch",
                "service": challenge.service, "scope": " ".join(scopes)}
        request = http.build_request("POST", realm, data=form)
    else:
        params: list[tuple[str, str]] = [("service", challenge.service)] if challenge.service else []
        params += [("scope", s) for s in scopes]
        if credential is not None:
            params.append(("account", credential.username))
        headers = {"Authorization": basic_header(credential)} if credential is not None else {}
        request = http.build_request("GET", realm, params=params, headers=headers)
    try:
        resp = http.send(request, stream=True)
        try:
            body, more = read_capped(resp, MAX_TOKEN_RESPONSE) if resp.status_code == 200 else (b"", False)
        finally:
            resp.close()
    except httpx.HTTPError as exc:
        raise RegistryError(f"cannot get a token for {registry} from {realm}: {exc}") from exc
    if resp.status_code in (401, 403):
        who = f"as {credential.username!r}" if credential else "anonymously"
        raise RegistryError(
            f"{registry}: authentication failed {who} for {scope_text} ({resp.status_code} from token server)",
            status=resp.status_code, code="UNAUTHORIZED" if resp.status_code == 401 else "DENIED",
            hint=f"check the password, or run 'polyarch login {registry}'")
    if resp.status_code != 200:
        raise RegistryError(f"{registry}: token server {realm} answered {resp.status_code}",
                            status=resp.status_code)
    if more:
        raise RegistryError(f"{registry}: token server {realm} sent more than {MAX_TOKEN_RESPONSE} bytes")
    try:
        doc = loads(body)
        token = doc.get("token") or doc.get("access_token")
        ttl = float(doc.get("expires_in") or _DEFAULT_TTL)
    except (ValueError, AttributeError, TypeError, OverflowError) as exc:
        raise RegistryError(f"{registry}: token server {realm} sent invalid JSON") from exc
    if not isinstance(token, str) or not token:
        raise RegistryError(f"{registry}: token server {realm} sent no token")
    return token, min(ttl, _MAX_TTL) if ttl > 0 else _DEFAULT_TTL  # NaN, 0, negative: the default
