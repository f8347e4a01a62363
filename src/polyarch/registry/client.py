"""OCI distribution client on httpx: one synchronous ``httpx.Client`` shared by the threads of a pool.

- **Endpoints** (see ``endpoints``): ``docker.io`` is ``registry-1.docker.io`` (or a mirror, for pulls); per-host
  rules (``ClientOptions.hosts``: http, insecure, CAs, mirror); loopback registries speak plain http; other hosts
  https with verification, unless listed in ``ClientOptions.insecure`` or inside ``insecure_networks``: https
  without verification, falling back to http. ``SSL_CERT_FILE`` (read by the ssl module) and
  ``ClientOptions.ca_file`` (``--tls-ca``) add trusted CAs; a host's own CAs are trusted for it alone. The options
  are built by the CLI; each host's route is worked out once per client. The verified TLS context (the system's
  CAs: tens of milliseconds to load) is made on the first verified https request (or token request, or read of
  ``ssl_context``), so a client that only talks plain http (loopback registries, http token realms) never loads
  it; a ``--tls-ca`` file that cannot be loaded still fails when the client is made.
- **Observer**: retries (with their reason) and blob transfers are reported to ``observer``
  (``observer.TransferObserver``); the client never prints.
- **Auth**: anonymous first; a 401 teaches the challenge, then basic or bearer (see ``auth``) is sent proactively.
- **Redirects** are followed here, not by httpx: the Authorization header goes only to the registry's own origin,
  so a blob GET redirected to S3 never carries credentials.
- **Retries**: connection errors, 429 (``Retry-After``) and 5xx are retried with jittered exponential backoff, a
  bounded number of times; blob downloads resume with ``Range`` after a mid-body failure; chunked uploads resume
  from the upload status the registry reports, else restart in a new session.
- **Foreign layers** (``urls`` of a non-distributable layer the registry lacks) are fetched only with
  ``allow_nondistributable`` (``--allow-nondistributable-artifacts``), under the rules of ``foreign``.
- **Blobs** move through ``blobs`` (download with resume, upload with mount/chunks), which sees this client only
  through its ``RegistrySession`` protocol.
- **Errors** are one-line ``RegistryError`` values (status, distribution code) translated at this boundary.
- **Bodies** are read raw (``Accept-Encoding: identity``) and capped: manifests at 4 MiB, token answers at 1 MiB,
  anything else read whole (errors, upload answers) at 64 KiB (see ``bodies``).
"""

from __future__ import annotations

import random
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, InvalidManifest, RegistryError
from polyarch.libpatches import raise_httpcore_read_size
from polyarch.oci.jsonutil import loads
from polyarch.oci.reference import Reference
from polyarch.oci.spec import MANIFEST_ACCEPT, Descriptor

from . import auth
from .blobs import READ_CHUNK, fetch_blob, push_blob
from .bodies import buffered, read_capped
from .credentials import Credential, CredentialStore
from .endpoints import ClientOptions, Endpoint, Route, route_for
from .httperrors import status_error, transport_error
from .observer import NULL_OBSERVER, Retry, TransferObserver, describe_failure
from .sink import BlobSink

__all__ = ["FetchedManifest", "RegistryClient"]

MAX_MANIFEST = 4 << 20
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    raw: bytes
    media_type: str
    digest: Digest

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _load_cas(ctx: ssl.SSLContext, paths: Sequence[str]) -> None:
    """:raises RegistryError: a CA file cannot be loaded (named)."""
    for path in paths:
        try:
            ctx.load_verify_locations(path)
        except (OSError, ssl.SSLError) as exc:
            raise RegistryError(f"cannot load CA file {path}: {exc}") from exc


class RegistryClient:
    """Talks to any number of registries; thread-safe. Close it (or use ``with``) to release connections."""

    def __init__(self, options: ClientOptions | None = None, credentials: CredentialStore | None = None, *,
                 observer: TransferObserver | None = None) -> None:
        """``options``: default ``ClientOptions()``; ``credentials``: default Docker's ``~/.docker/config.json``
        (the CLI passes the store ``DOCKER_CONFIG`` names); ``observer`` hears of retries and blob transfers (the
        CLI's progress output; default: nobody)."""
        self.options = options or ClientOptions()
        self.observer: TransferObserver = observer or NULL_OBSERVER
        raise_httpcore_read_size(READ_CHUNK)
        self.credentials = credentials if credentials is not None else CredentialStore()
        limits = httpx.Limits(max_connections=max(8, self.options.parallel * 2),
                              max_keepalive_connections=max(8, self.options.parallel * 2))
        timeout = httpx.Timeout(self.options.timeout, connect=min(self.options.timeout, 15.0))
        if self.options.ca_file:  # a bad --tls-ca fails here, even if no https request is ever made
            _load_cas(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), [self.options.ca_file])
        self._ssl: ssl.SSLContext | None = None  # the verified context, made on first use (``ssl_context``)
        self._client_args: dict[str, Any] = {
            "timeout": timeout, "limits": limits, "follow_redirects": False, "trust_env": False,
            "headers": {"User-Agent": "polyarch", "Accept-Encoding": "identity"}}  # bodies are read raw and capped
        self._http: httpx.Client | None = None  # verifying, made with the context
        # https without verification (insecure hosts), and every plain http URL: no TLS there, nothing to verify
        self._http_noverify = httpx.Client(verify=False, **self._client_args)
        self._http_ca: dict[tuple[str, ...], httpx.Client] = {}  # per-host CAs of the config file
        self._registries: dict[str, Endpoint] = {}
        self._routes: dict[tuple[str, bool], Route] = {}
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, Digest], set[str]] = {}
        self.sleep: Callable[[float], None] = time.sleep

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The TLS trust of this client (system CAs, ``SSL_CERT_FILE``, ``--tls-ca``), made on first use."""
        with self._lock:
            return self._verified()[0]

    def _verified(self) -> tuple[ssl.SSLContext, httpx.Client]:
        """The verified context and its client, made now if not yet (call with ``_lock`` held)."""
        if self._ssl is None or self._http is None:
            ctx = ssl.create_default_context()  # honours SSL_CERT_FILE / SSL_CERT_DIR
            _load_cas(ctx, [self.options.ca_file] if self.options.ca_file else [])
            self._ssl, self._http = ctx, httpx.Client(verify=ctx, **self._client_args)
        return self._ssl, self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http_noverify.close()
        for http in self._http_ca.values():
            http.close()

    def _http_for(self, ca: tuple[str, ...]) -> httpx.Client:
        """The verifying client trusting ``ca`` on top of this client's trust (made on first use)."""
        with self._lock:
            if not ca:
                return self._verified()[1]
            http = self._http_ca.get(ca)
            if http is None:
                ctx = ssl.create_default_context()
                _load_cas(ctx, [*([self.options.ca_file] if self.options.ca_file else []), *ca])
                http = self._http_ca[ca] = httpx.Client(verify=ctx, **self._client_args)
            return http

    def _http_to(self, url: str | httpx.URL, ca: tuple[str, ...] = ()) -> httpx.Client:
        """The client for ``url``: a plain http URL has no TLS to verify, so it never needs the verified context
        (unless its host has CAs of its own: their files are loaded, and a bad one fails, as for https)."""
        return self._http_noverify if not ca and httpx.URL(url).scheme == "http" else self._http_for(ca)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- endpoints ---------------------------------------------------------------------------------------

    def endpoint(self, domain: str, *, push: bool = False) -> Endpoint:
        route = self._routes.get((domain, push))
        if route is None:  # once per host: the rules may resolve the name (insecure networks)
            route = self._routes[(domain, push)] = route_for(self.options, domain, push=push)
        with self._lock:
            reg = self._registries.get(route.base)
            if reg is None:
                cred = self.credentials.get(route.cred_host)
                fetcher = self._token_fetcher(route.cred_host)
                reg = Endpoint(route.cred_host, route.base, route.verify,
                               auth.Authenticator(route.cred_host, cred, fetcher), ca=route.ca)
                self._registries[route.base] = reg
            return reg

    def _token_fetcher(self, name: str) -> auth.TokenFetcher:
        def fetch(ch: auth.Challenge, scopes: Sequence[str], cred: Credential | None) -> tuple[str, float]:
            return auth.fetch_token(self._http_to(ch.realm), name, ch, scopes, cred)

        return fetch

    # --- the one request path ------------------------------------------------------------------------------

    def backoff(self, attempt: int, retry_after: str | None = None, *, registry: str = "", what: str = "",
                reason: str = "") -> None:
        """Sleep before retry number ``attempt`` (jittered exponential, or the server's ``Retry-After``), after
        telling the observer why."""
        delay = min(self.options.max_backoff, self.options.backoff * (2 ** (attempt - 1)))
        delay *= 0.5 + random.random() / 2
        if retry_after:
            try:
                delay = min(max(float(retry_after), 0.0), self.options.max_backoff * 3)
            except ValueError:
                pass
        self.observer.retrying(Retry(registry, what, attempt, self.options.retries, delay, reason or "failed"))
        self.sleep(delay)

    def _send(self, reg: Endpoint, method: str, url: str | httpx.URL, headers: dict[str, str],
              authorization: str | None, body: Any, stream: bool) -> httpx.Response:
        """One logical request, following redirects and dropping credentials when the origin changes. Unless
        ``stream``, the answer holds at most 64 KiB of its body (see :mod:`.bodies`)."""
        base_origin = _origin(httpx.URL(reg.base))
        target = httpx.URL(url)
        for _ in range(10):
            same = _origin(target) == base_origin
            hdrs = dict(headers)
            if authorization and same:
                hdrs["Authorization"] = authorization
            http = self._http_noverify if (same and not reg.verify) else self._http_to(target, reg.ca if same else ())
            request = http.build_request(method, target, headers=hdrs, content=body)
            resp = http.send(request, stream=True)
            location = resp.headers.get("location")
            if resp.status_code in (301, 302, 303, 307, 308) and location and method in ("GET", "HEAD"):
                resp.close()
                target = resp.url.join(location)
                if target.scheme not in ("http", "https"):
                    raise RegistryError(f"{reg.name}: redirect to unsupported URL scheme {target.scheme!r}")
                continue
            return resp if stream else buffered(resp)
        raise RegistryError(f"{reg.name}: too many redirects for {url}")

    def call(self, reg: Endpoint, method: str, url: str | httpx.URL, *, scopes: Sequence[str],
             headers: dict[str, str] | None = None, body: Callable[[], Any] | None = None,
             stream: bool = False, retry: bool = True) -> httpx.Response:
        """Send with auth and retries; returns the final response (any status) for the caller to judge."""
        attempt = 0
        reauthed = False
        if not reg.verify and reg.base.startswith("http://"):  # downgraded insecure registry: keep URLs in step
            host = reg.base.removeprefix("http://")
            url = str(url).replace(f"https://{host}/", f"http://{host}/", 1)
        while True:
            authorization = reg.authenticator.header(scopes)
            try:
                resp = self._send(reg, method, url, headers or {}, authorization, body() if body else None, stream)
            except httpx.TransportError as exc:
                host = reg.base.split("://", 1)[1]
                if not reg.verify and isinstance(exc, httpx.ConnectError) and str(url).startswith(f"https://{host}/"):
                    # an --insecure-registry without TLS: fall back to plain http, as docker does; a request of
                    # another thread that was already on its way when the endpoint switched follows it
                    reg.base = f"http://{host}"
                    url = str(url).replace(f"https://{host}/", f"{reg.base}/", 1)
                    continue
                if retry and attempt < self.options.retries:
                    attempt += 1
                    self.backoff(attempt, registry=reg.name, what=f"{method} {httpx.URL(url).path}",
                                 reason=describe_failure(exc))
                    continue
                raise transport_error(reg.name, exc, attempts=attempt + 1) from exc
            if resp.status_code == 401 and not reauthed:
                challenge = resp.headers.get("www-authenticate", "")
                resp.close()
                reauthed = True
                had = reg.authenticator.challenge is not None
                if reg.authenticator.learn(challenge) is None:
                    raise status_error(reg.name, resp, f"{method} {httpx.URL(url).path}", scopes)
                if had:
                    reg.authenticator.invalidate(scopes)
                continue
            if retry and resp.status_code in RETRY_STATUSES and attempt < self.options.retries:
                retry_after = resp.headers.get("retry-after")
                resp.close()
                attempt += 1
                self.backoff(attempt, retry_after, registry=reg.name, what=f"{method} {httpx.URL(url).path}",
                             reason=f"{resp.status_code} {resp.reason_phrase}".strip())
                continue
            return resp

    def fail(self, reg: Endpoint, resp: httpx.Response, what: str, scopes: Sequence[str]) -> RegistryError:
        """The error for a failed answer (reads at most 64 KiB of its body) and closes it."""
        try:
            return status_error(reg.name, resp, what, scopes)
        finally:
            resp.close()

    # --- registry-level ------------------------------------------------------------------------------------

    def ping(self, domain: str, credential: Credential | None = None) -> None:
        """Check the registry answers ``/v2/``; with ``credential``, check that it accepts it.

        :raises RegistryError: unreachable, TLS failure, or credentials refused (401).
        """
        reg = self.endpoint(domain, push=True)
        if credential is not None:
            reg = Endpoint(reg.name, reg.base, reg.verify,
                           auth.Authenticator(reg.name, credential, self._token_fetcher(reg.name)), ca=reg.ca)
        resp = self.call(reg, "GET", f"{reg.base}/v2/", scopes=())
        if resp.status_code != 200:
            raise self.fail(reg, resp, "login", ())
        if credential is not None:
            with self._lock:
                self._registries[reg.base] = reg

    # --- manifests -----------------------------------------------------------------------------------------

    def get_manifest(self, ref: Reference, *, accept: str = MANIFEST_ACCEPT) -> FetchedManifest:
        """Fetch a manifest or index by tag or digest; verifies the digest when pinned.

        :raises RegistryError: not found (404 MANIFEST_UNKNOWN) and other failures.
        """
        reg = self.endpoint(ref.domain)
        scopes = [auth.scope_for(ref.path, "pull")]
        url = f"{reg.base}/v2/{ref.path}/manifests/{ref.identifier}"
        resp = self.call(reg, "GET", url, scopes=scopes, headers={"Accept": accept}, stream=True)
        try:
            if resp.status_code != 200:
                raise self.fail(reg, resp, f"manifest {ref}", scopes)
            data, more = read_capped(resp, MAX_MANIFEST)
            if more:
                raise RegistryError(f"manifest {ref} is larger than {MAX_MANIFEST} bytes")
        except httpx.HTTPError as exc:
            raise transport_error(reg.name, exc) from exc
        finally:
            resp.close()
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        algorithm = ref.digest.algorithm if ref.digest else "sha256"
        digest = Digest.of(data, algorithm)
        if ref.digest is not None and digest != ref.digest:
            raise DigestMismatch(f"{ref}: registry sent a manifest hashing to {digest}")
        header = resp.headers.get("docker-content-digest")
        if ref.digest is None and header and header.startswith(f"{algorithm}:") and header != str(digest):
            raise DigestMismatch(f"{ref}: manifest hashes to {digest}, registry says {header}")
        if not media_type or media_type in ("application/json", "text/plain", "application/octet-stream"):
            try:
                sniffed = loads(data).get("mediaType")
            except (ValueError, AttributeError):
                sniffed = None
            media_type = sniffed if isinstance(sniffed, str) else ""
            if not media_type:
                raise InvalidManifest(f"{ref}: manifest has no media type")
        self.note_seen(ref, digest)
        return FetchedManifest(data, media_type, digest)

    def head_manifest(self, ref: Reference, *, push: bool = False) -> Descriptor | None:
        reg = self.endpoint(ref.domain, push=push)
        scopes = [auth.scope_for(ref.path, "pull,push" if push else "pull")]
        url = f"{reg.base}/v2/{ref.path}/manifests/{ref.identifier}"
        resp = self.call(reg, "HEAD", url, scopes=scopes, headers={"Accept": MANIFEST_ACCEPT})
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self.fail(reg, resp, f"manifest {ref}", scopes)
        header = resp.headers.get("docker-content-digest", "")
        if not Digest.is_valid(header):
            return None
        return Descriptor(resp.headers.get("content-type", "").split(";")[0],
                          Digest.parse(header), int(resp.headers.get("content-length") or 0))

    def list_tags(self, ref: Reference, *, max_pages: int = 100) -> list[str]:
        """Every tag of ``ref``'s repository (``/v2/NAME/tags/list``, following ``Link`` pages), sorted.

        :raises RegistryError: the repository is unknown or the registry refuses.
        """
        reg = self.endpoint(ref.domain)
        scopes = [auth.scope_for(ref.path, "pull")]
        url: str | httpx.URL = f"{reg.base}/v2/{ref.path}/tags/list"
        tags: set[str] = set()
        for _ in range(max_pages):
            resp = self.call(reg, "GET", url, scopes=scopes, stream=True)
            try:
                if resp.status_code != 200:
                    raise self.fail(reg, resp, f"tags of {ref.name}", scopes)
                data, more = read_capped(resp, MAX_MANIFEST)
            except httpx.HTTPError as exc:
                raise transport_error(reg.name, exc) from exc
            finally:
                resp.close()
            try:
                page = loads(data).get("tags") if not more else None
            except (ValueError, AttributeError):
                page = None
            if not isinstance(page, list | type(None)) or more:
                raise RegistryError(f"{reg.name}: invalid tag list for {ref.name}")
            tags.update(t for t in page or [] if isinstance(t, str))
            link = resp.headers.get("link", "")
            if 'rel="next"' not in link or "<" not in link:
                return sorted(tags)
            url = httpx.URL(reg.base).join(link[link.index("<") + 1:link.index(">")])
        raise RegistryError(f"{reg.name}: tag list of {ref.name} has more than {max_pages} pages")

    def put_manifest(self, ref: Reference, raw: bytes, media_type: str) -> Digest:
        """PUT exact bytes under ``ref.identifier`` (tag or digest); checks the digest the registry reports."""
        reg = self.endpoint(ref.domain, push=True)
        scopes = [auth.scope_for(ref.path, "pull,push")]
        url = f"{reg.base}/v2/{ref.path}/manifests/{ref.identifier}"
        resp = self.call(reg, "PUT", url, scopes=scopes, headers={"Content-Type": media_type}, body=lambda: raw)
        if resp.status_code not in (200, 201, 202):
            raise self.fail(reg, resp, f"push manifest {ref}", scopes)
        digest = Digest.of(raw, ref.digest.algorithm if ref.digest else "sha256")
        header = resp.headers.get("docker-content-digest")
        if header and header.startswith(f"{digest.algorithm}:") and header != str(digest):
            raise DigestMismatch(f"{ref}: registry stored the manifest as {header}, expected {digest}")
        self.note_seen(ref, digest)
        return digest

    # --- blobs ---------------------------------------------------------------------------------------------

    def note_seen(self, ref: Reference, digest: Digest) -> None:
        """Remember that ``digest`` exists in ``ref``'s repository (for cross-repo mounts)."""
        with self._lock:
            self._seen.setdefault((ref.domain, digest), set()).add(ref.path)

    def seen_in(self, domain: str, digest: Digest) -> list[str]:
        with self._lock:
            return sorted(self._seen.get((domain, digest), ()))

    def blob_size(self, ref: Reference, digest: Digest, *, push: bool = False) -> int | None:
        """HEAD a blob: its size, or None when the repository does not have it."""
        reg = self.endpoint(ref.domain, push=push)
        scopes = [auth.scope_for(ref.path, "pull,push" if push else "pull")]
        resp = self.call(reg, "HEAD", f"{reg.base}/v2/{ref.path}/blobs/{digest}", scopes=scopes)
        resp.close()
        if resp.status_code in (404, 401, 403) and push:
            return None
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self.fail(reg, resp, f"blob {digest}", scopes)
        self.note_seen(ref, digest)
        try:
            return int(resp.headers.get("content-length") or -1)
        except ValueError:
            return -1

    def fetch_blob(self, ref: Reference, desc: Descriptor, sink_factory: Callable[[], BlobSink]) -> None:
        """Stream a blob into a fresh sink, verifying digest and size; resumes with Range after a failure.

        Falls back to the descriptor's ``urls`` (without credentials) when the registry does not have the blob.
        """
        fetch_blob(self, ref, desc, sink_factory)

    def push_blob(self, ref: Reference, desc: Descriptor, opener: Callable[[], AbstractContextManager[Path]], *,
                  mount_from: Sequence[str] = ()) -> str:
        """Make ``desc`` exist in ``ref``'s repository: ``exists``, ``mounted`` or ``uploaded``.

        ``opener`` gives a local file with the blob; it is called only when an upload is needed.
        """
        return push_blob(self, ref, desc, opener, mount_from=mount_from)
