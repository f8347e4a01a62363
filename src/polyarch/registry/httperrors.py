"""Translate httpx exceptions and registry error answers into one-line ``RegistryError`` values.

Distribution error bodies look like ``{"errors":[{"code":"MANIFEST_UNKNOWN","message":"…","detail":…}]}``; the
first code and message are kept; at most 64 KiB of an error body is read. 401/403 name the registry and the scope that was refused.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import httpx

from polyarch.errors import RegistryError
from polyarch.oci.jsonutil import loads

from .bodies import SMALL_BODY, read_capped

__all__ = ["error_code", "status_error", "transport_error"]


def _error_body(resp: httpx.Response) -> bytes:
    """The error body, at most ``SMALL_BODY`` bytes: read now (capped) when ``resp`` is a streamed one."""
    try:
        return resp.content[:SMALL_BODY]
    except httpx.ResponseNotRead:
        pass
    try:
        return read_capped(resp, SMALL_BODY)[0]
    except (httpx.HTTPError, httpx.StreamError):
        return b""
    finally:
        resp.close()


def error_code(resp: httpx.Response) -> tuple[str, str]:
    """(code, message) from a distribution error body, or ("", "")."""
    body = _error_body(resp)
    try:
        errors = loads(body).get("errors") or []
        first = errors[0]
        return str(first.get("code") or ""), str(first.get("message") or "")[:200]
    except (ValueError, AttributeError, IndexError, TypeError, KeyError):
        return "", ""


def status_error(registry: str, resp: httpx.Response, what: str, scopes: Sequence[str]) -> RegistryError:
    code, message = error_code(resp)
    status = resp.status_code
    scope_text = " ".join(scopes) or "registry access"
    if status == 401:
        return RegistryError(f"{registry}: unauthorized: authentication required for {scope_text}",
                             status=status, code=code or "UNAUTHORIZED",
                             hint=f"run 'polyarch login {registry}', or check the user name and password")
    if status == 403:
        return RegistryError(f"{registry}: denied: access to {scope_text} is forbidden"
                             + (f" ({message})" if message else ""), status=status, code=code or "DENIED",
                             hint="the account lacks permission for this repository")
    if status == 404:
        label = {"MANIFEST_UNKNOWN": "manifest unknown", "BLOB_UNKNOWN": "blob unknown",
                 "NAME_UNKNOWN": "repository unknown"}.get(code, "not found")
        return RegistryError(f"{what}: {label} on {registry}", status=status, code=code or "NOT_FOUND")
    detail = f"{code}: {message}" if code else (message or resp.reason_phrase or "error")
    return RegistryError(f"{registry}: {what} failed with HTTP {status}: {detail}", status=status, code=code or None)


def _is_tls(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError) or "SSL" in str(cur) or "CERTIFICATE" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def transport_error(registry: str, exc: BaseException, *, attempts: int = 1) -> RegistryError:
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    reason = str(exc).strip() or type(exc).__name__
    if _is_tls(exc):
        if "WRONG_VERSION_NUMBER" in reason or "wrong version number" in reason:
            return RegistryError(f"TLS failure talking to {registry}: the server does not speak https ({reason})",
                                 hint=f"if it is a plain-http registry, pass --insecure-registry {registry}")
        return RegistryError(f"TLS failure talking to {registry}: {reason}",
                             hint=f"pass --tls-ca FILE (or set SSL_CERT_FILE) to trust its CA, or "
                                  f"--insecure-registry {registry} to skip verification")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return RegistryError(f"cannot reach registry {registry}{tries}: {reason}",
                             hint="check the registry address and that it is running")
    if isinstance(exc, httpx.TimeoutException):
        return RegistryError(f"registry {registry} timed out{tries} ({type(exc).__name__})")
    return RegistryError(f"connection to registry {registry} failed{tries}: {reason}")
