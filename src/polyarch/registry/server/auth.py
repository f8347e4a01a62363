"""Authentication and authorization: none, htpasswd (bcrypt only) Basic, or bearer tokens from ``/token``.

Tokens are HS256 JWTs (PyJWT) signed with a key given at start or generated then; a token carries the Docker
``access`` claim (``[{"type": "repository", "name": "app", "actions": ["pull", "push"]}]``) and is checked
strictly: only ``alg: HS256`` with our ``kid``, no embedded key material (``jwk``/``jku``/``x5c``/``x5u``,
CVE-2025-24976), ``exp``/``nbf`` with 30 s leeway, our audience and issuer, and a scope naming the repository
and action of the request. Insufficient scope answers 401 with ``error="insufficient_scope"`` so clients fetch
a token for the new scope.

Basic logins (htpasswd, also at ``/token``) take as long for an unknown user as for a wrong password, and a
verified login is cached so floods of bad logins, which queue for a few bcrypt threads, cannot make it wait
(see :class:`Htpasswd`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import jwt

from polyarch.errors import UsageError

from .errors import ApiError

__all__ = ["Access", "Authorizer", "Htpasswd", "TokenIssuer", "parse_scope"]

LEEWAY = 30.0
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_KEY_HEADERS = ("jwk", "jku", "x5c", "x5u")
ACTIONS = frozenset({"pull", "push", "delete", "*"})


@dataclass(frozen=True, slots=True)
class Access:
    type: str
    name: str
    actions: frozenset[str]

    def to_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def parse_scope(text: str) -> Access | None:
    """``repository:app/x:pull,push`` → Access; None for anything malformed."""
    kind, _, rest = text.partition(":")
    name, _, actions = rest.rpartition(":")
    if kind not in ("repository", "registry") or not name or not actions or len(text) > 600:
        return None
    acts = frozenset(a for a in actions.split(",") if a)
    if not acts:
        return None
    return Access(kind, name, acts)


BCRYPT_WORKERS = max(1, (os.cpu_count() or 2) // 2)
MAX_PENDING_LOGINS = 256
CACHE_TTL = 300.0
_CACHE_MAX = 4096


class Htpasswd:
    """Users from an htpasswd file with bcrypt hashes; loaded once.

    Timing reveals no user names: an unknown user is checked against a dummy hash of the highest cost in the
    file, as slow as a wrong password. A success is cached for ``CACHE_TTL`` seconds, keyed by a salted SHA-256
    of user and password (never the password), so a known login costs a hash lookup; :class:`Authorizer` answers
    those on the event loop and sends only cache misses to bcrypt, on ``BCRYPT_WORKERS`` threads of its own: a
    flood of bad logins queues among itself and never delays a cached valid one.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._salt = secrets.token_bytes(16)
        self._ok: dict[bytes, float] = {}
        self._lock = threading.Lock()
        cost = max((_cost(h) for h in self._users.values()), default=12)
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))

    @classmethod
    def load(cls, path: Path) -> Htpasswd:
        """:raises UsageError: missing or unreadable file, a line that is not ``user:bcrypt-hash``, no users."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"htpasswd file {path} does not exist: refusing to start",
                             hint="create it with 'htpasswd -cB FILE USER'") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read htpasswd file {path}: {getattr(exc, 'strerror', None) or exc}: "
                             "refusing to start") from exc
        users: dict[str, bytes] = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user:
                raise UsageError(f"{path}:{lineno}: expected user:hash")
            if not hashed.startswith(_BCRYPT_PREFIXES) or len(hashed) != 60:
                raise UsageError(f"{path}:{lineno}: user {user!r} has a non-bcrypt hash: refusing to start",
                                 hint="only bcrypt is accepted: 'htpasswd -B FILE USER'")
            users[user] = hashed.encode()
        if not users:
            raise UsageError(f"htpasswd file {path} has no users: refusing to start")
        return cls(users)

    def _key(self, user: str, password: str) -> bytes:
        return hashlib.sha256(self._salt + user.encode() + b"\0" + password.encode()).digest()

    def cached(self, user: str, password: str) -> bool:
        """Whether these credentials were verified within the TTL (cheap: no bcrypt)."""
        key = self._key(user, password)
        with self._lock:
            expiry = self._ok.get(key)
            return expiry is not None and expiry > time.monotonic()

    def verify(self, user: str, password: str) -> bool:
        """Blocking: bcrypt against the user's hash, or the dummy for an unknown user; caches a success."""
        hashed = self._users.get(user)
        try:
            ok = bcrypt.checkpw(password.encode(), hashed if hashed is not None else self._dummy)
        except ValueError:
            ok = False
        if ok and hashed is not None:
            now = time.monotonic()
            with self._lock:
                if len(self._ok) >= _CACHE_MAX:
                    self._ok = {k: t for k, t in self._ok.items() if t > now}
                    if len(self._ok) >= _CACHE_MAX:
                        self._ok.clear()
                self._ok[self._key(user, password)] = now + CACHE_TTL
            return True
        return False

    def check(self, user: str, password: str) -> bool:
        """Blocking: the cache, else bcrypt."""
        return self.cached(user, password) or self.verify(user, password)


def _cost(hashed: bytes) -> int:
    """The cost of a ``$2b$NN$…`` hash (bcrypt accepts 4–31)."""
    try:
        return min(max(int(hashed[4:6]), 4), 31)
    except ValueError:
        return 12


class TokenError(Exception):
    pass


# PyJWT's refusals → the reason a client sees (missing claims name the claim).
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidAlgorithmError, "unsupported token algorithm"),
    (jwt.InvalidSignatureError, "bad token signature"),
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "token audience mismatch"),
    (jwt.InvalidIssuerError, "token issuer mismatch"),
)
_MISSING = {"exp": "token expired", "aud": "token audience mismatch", "iss": "token issuer mismatch"}


class TokenIssuer:
    """Issues and verifies HS256 bearer tokens (PyJWT signs, checks the signature and the time, audience and
    issuer claims; the checks PyJWT leaves to its caller are made here before it runs)."""

    def __init__(self, key: bytes | None = None, *, service: str = "polyarch-registry",
                 issuer: str = "polyarch-registry", ttl: int = 300) -> None:
        self.key = key if key is not None else secrets.token_bytes(32)
        if len(self.key) < 32:
            raise UsageError("token signing key must have at least 32 bytes")
        self.kid = hashlib.sha256(b"polyarch-kid" + self.key).hexdigest()[:16]
        self.service = service
        self.issuer = issuer
        self.ttl = ttl

    def issue(self, subject: str, access: Sequence[Access], *, now: float | None = None) -> str:
        now = time.time() if now is None else now
        header = {"alg": "HS256", "typ": "JWT", "kid": self.kid}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "iat": int(now), "nbf": int(now),
                  "exp": int(now) + self.ttl, "jti": secrets.token_hex(8), "access": [a.to_claim() for a in access]}
        return self.sign(header, claims)

    def sign(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
        """A JWS of ``claims`` with exactly ``header`` (its ``alg`` is the algorithm used), under our key."""
        return jwt.encode(dict(claims), self.key, algorithm=str(header.get("alg", "HS256")), headers=dict(header))

    def verify(self, token: str) -> list[Access]:
        """The access list of a valid token. :raises TokenError: with the reason."""
        if len(token) > 16384:
            raise TokenError("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.InvalidTokenError, RecursionError):
            raise TokenError("malformed token") from None
        if header.get("alg") != "HS256":  # PyJWT refuses it too (algorithms=[HS256]); named here for the reply
            raise TokenError(f"unsupported token algorithm {str(header.get('alg'))[:20]!r}")
        if any(k in header for k in _KEY_HEADERS):
            raise TokenError("embedded token keys are not trusted")
        if header.get("kid") != self.kid:
            raise TokenError("unknown token key id")
        try:
            claims = jwt.decode(token, self.key, algorithms=["HS256"], audience=self.service, issuer=self.issuer,
                                leeway=LEEWAY, options={"require": ["exp"]})
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(_MISSING.get(exc.claim, f"token lacks {exc.claim!r}")) from None
        except jwt.InvalidTokenError as exc:
            reason = next((r for kind, r in _REASONS if isinstance(exc, kind)), "malformed token")
            raise TokenError(reason) from None
        except RecursionError:
            raise TokenError("malformed token") from None
        for name in ("exp", "nbf", "iat"):  # PyJWT takes int("123") too; a time is a JSON number
            value = claims.get(name)
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise TokenError("token expired" if name == "exp" else "token not yet valid")
        if "nbf" not in claims and claims.get("iat", 0) > time.time() + LEEWAY:  # iat stands for a missing nbf
            raise TokenError("token not yet valid")
        out = []
        for entry in claims.get("access") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("type"), str) \
                    and isinstance(entry.get("actions"), list):
                out.append(Access(entry["type"], entry["name"],
                                  frozenset(a for a in entry["actions"] if isinstance(a, str))))
        return out


def _basic(headers: Mapping[str, str]) -> tuple[str, str] | None:
    value = headers.get("authorization", "")
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(rest.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class Authorizer:
    """Decides whether a request may do what it asks; raises ApiError 401 with ``WWW-Authenticate`` if not."""

    def __init__(self, htpasswd: Htpasswd | None = None, tokens: TokenIssuer | None = None) -> None:
        if tokens is not None and htpasswd is None:
            raise UsageError("--token-auth needs --htpasswd: the token endpoint authenticates users with it")
        self.htpasswd = htpasswd
        self.tokens = tokens
        self._bcrypt = ThreadPoolExecutor(max_workers=BCRYPT_WORKERS, thread_name_prefix="registry-bcrypt")
        self._pending = 0  # logins waiting for or in bcrypt; over MAX_PENDING_LOGINS new ones get 429
        self._pending_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.htpasswd is not None

    async def check_basic(self, headers: Mapping[str, str]) -> str | None:
        """The user name of valid Basic credentials, else None."""
        if self.htpasswd is None:
            return None
        creds = _basic(headers)
        if creds is None:
            return None
        if self.htpasswd.cached(*creds):
            return creds[0]
        with self._pending_lock:
            if self._pending >= MAX_PENDING_LOGINS:
                raise ApiError("TOOMANYREQUESTS", "too many logins being checked; retry later", status=429,
                               headers={"Retry-After": "5"})
            self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(self._bcrypt, self.htpasswd.verify, *creds)
        finally:
            with self._pending_lock:
                self._pending -= 1
        return creds[0] if ok else None

    async def authorize(self, headers: Mapping[str, str], needed: Sequence[Access], base_url: str) -> None:
        if self.htpasswd is None:
            return
        if self.tokens is None:
            if await self.check_basic(headers) is None:
                raise ApiError("UNAUTHORIZED", "authentication required",
                               headers={"WWW-Authenticate": 'Basic realm="polyarch-registry"'})
            return
        scope = " ".join(a.scope() for a in needed)
        challenge = f'Bearer realm="{base_url}token",service="{self.tokens.service}"'
        if scope:
            challenge += f',scope="{scope}"'
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError("UNAUTHORIZED", "authentication required", headers={"WWW-Authenticate": challenge})
        try:
            granted = self.tokens.verify(token.strip())
        except TokenError as exc:
            raise ApiError("UNAUTHORIZED", str(exc),
                           headers={"WWW-Authenticate": challenge + ',error="invalid_token"'}) from None
        for need in needed:
            if not any(g.type == need.type and g.name == need.name and (need.actions <= g.actions or "*" in g.actions)
                       for g in granted):
                raise ApiError("UNAUTHORIZED", f"token does not grant {need.scope()}",
                               headers={"WWW-Authenticate": challenge + ',error="insufficient_scope"'})

    def can(self, headers: Mapping[str, str], need: Access) -> bool:
        """Whether an already-authenticated request also holds ``need`` (for cross-repo mounts)."""
        if self.tokens is None:
            return True
        _, _, token = headers.get("authorization", "").partition(" ")
        try:
            granted = self.tokens.verify(token.strip())
        except TokenError:
            return False
        return any(g.type == need.type and g.name == need.name and (need.actions <= g.actions or "*" in g.actions)
                   for g in granted)

    async def issue_token(self, headers: Mapping[str, str], scopes: Sequence[str], service: str,
                          *, read_only: bool) -> dict[str, Any]:
        if self.tokens is None:
            raise ApiError("UNSUPPORTED", "token authentication is not enabled", status=404)
        user = await self.check_basic(headers)
        if user is None:
            raise ApiError("UNAUTHORIZED", "bad or missing credentials",
                           headers={"WWW-Authenticate": 'Basic realm="polyarch-registry"'})
        if service and service != self.tokens.service:
            raise ApiError("DENIED", f"unknown service {service[:100]!r}", status=400)
        access = []
        for text in scopes:
            for part in text.split(" "):
                a = parse_scope(part)
                if a is None:
                    continue
                allowed = ACTIONS - {"push", "delete", "*"} if read_only else ACTIONS
                acts = a.actions & allowed
                if a.type == "registry":
                    acts = a.actions & {"*"} if a.name == "catalog" else frozenset()
                if acts:
                    access.append(Access(a.type, a.name, acts))
        token = self.tokens.issue(user, access)
        now = int(time.time())
        return {"token": token, "access_token": token, "expires_in": self.tokens.ttl,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
