"""Non-distributable ("foreign") layers, fetched from the ``urls`` of their descriptor.

An image names these URLs, so they are the image author's choice, not the user's: fetching them is off unless the
user allows it, as Docker's ``--allow-nondistributable-artifacts`` (``polyarch pull
--allow-nondistributable-artifacts``, or ``POLYARCH_ALLOW_NONDISTRIBUTABLE_ARTIFACTS=1`` for every command that
pulls, ``build`` included). Even then a URL is fetched only when:

- it is ``http`` or ``https`` and carries no user name or password; no credentials, proxy or cookie is sent;
- its host resolves only to addresses :func:`address_allowed` accepts (no loopback, link-local such as the cloud
  metadata service 169.254.169.254, unspecified, multicast or reserved address, also inside IPv4-mapped, 6to4,
  NAT64 or Teredo IPv6 forms); the connection goes to the address that was checked, so a second DNS answer cannot
  swap it; private LAN addresses are allowed (a local mirror of Windows base layers is legitimate);
- redirects stay on the same origin (scheme, host, port), a few hops at most;
- the body is at most the declared size (reading stops there), and the caller verifies the digest.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from polyarch.errors import DigestMismatch, RegistryError
from polyarch.oci.spec import Descriptor

if TYPE_CHECKING:
    from .sink import BlobSink

__all__ = ["ALLOW_ENV", "AddressPolicy", "address_allowed", "fetch_foreign"]

ALLOW_ENV = "POLYARCH_ALLOW_NONDISTRIBUTABLE_ARTIFACTS"  # read by the CLI (named in hints here)
MAX_REDIRECTS = 5
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], bool]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):  # NAT64, IPv4-compatible ::a.b.c.d
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def address_allowed(ip: IPAddress) -> bool:
    """Whether a foreign-layer fetch may connect to ``ip``: not loopback, link-local, unspecified, multicast,
    reserved or "this network" (0/8), nor an IPv6 form embedding such an IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local or not all(address_allowed(v4) for v4 in _embedded_ipv4(ip)):
            return False
    elif ip in _THIS_NETWORK:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip.is_reserved)


def _resolve(url: httpx.URL, allowed: AddressPolicy) -> str:
    """The address to connect to for ``url``, after checking every address its host resolves to."""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(url.host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise RegistryError(f"cannot resolve {url.host}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for text in addresses:
        if not allowed(ipaddress.ip_address(text.split("%", 1)[0])):
            raise RegistryError(f"{url.host} resolves to {text}, an address foreign layers may not be fetched from "
                                "(loopback, link-local, unspecified, multicast or reserved)")
    if not addresses:
        raise RegistryError(f"cannot resolve {url.host}")
    return addresses[0]


def _check_url(url: httpx.URL) -> None:
    if url.scheme not in ("http", "https"):
        raise RegistryError(f"scheme {url.scheme!r} is not http or https")
    if url.userinfo:
        raise RegistryError("URL carries credentials")
    if not url.host:
        raise RegistryError("URL has no host")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def _get(http: httpx.Client, url: httpx.URL, allowed: AddressPolicy) -> httpx.Response:
    """GET ``url`` at its checked address (Host header and TLS name stay the URL's), following same-origin
    redirects only. Returns a streamed 200 answer."""
    origin = _origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        _check_url(url)
        if _origin(url) != origin:
            raise RegistryError(f"redirect to another origin ({url.scheme}://{url.netloc.decode()}) refused")
        address = _resolve(url, allowed)
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        request = http.build_request("GET", url.copy_with(host=address), headers={"Host": url.netloc.decode()},
                                     extensions=extensions)
        resp = http.send(request, stream=True)
        location = resp.headers.get("location")
        if resp.status_code in (301, 302, 303, 307, 308) and location:
            resp.close()
            url = url.join(location)
            continue
        if resp.status_code != 200:
            resp.close()
            raise RegistryError(f"answered HTTP {resp.status_code}")
        return resp
    raise RegistryError("too many redirects")


def _copy(resp: httpx.Response, desc: Descriptor, sink: BlobSink) -> None:
    got = 0
    for chunk in resp.iter_raw():
        got += len(chunk)
        if got > desc.size:
            raise DigestMismatch(f"foreign layer {desc.digest}: more than the declared {desc.size} bytes")
        sink.write(chunk)
    if got < desc.size:
        raise RegistryError(f"foreign layer {desc.digest}: got {got} of the declared {desc.size} bytes")


def fetch_foreign(desc: Descriptor, sink_factory: Callable[[], BlobSink], *, verify: ssl.SSLContext | bool = True,
                  timeout: float = 60.0, allowed: AddressPolicy = address_allowed) -> BlobSink:
    """Fetch ``desc`` from the first of its ``urls`` that works into a fresh sink (returned; the caller commits
    it, which verifies the digest). ``allowed`` exists for tests; callers keep the default.

    :raises RegistryError: no URL could be fetched under the rules above (the reasons for each URL).
    """
    reasons: list[str] = []
    with httpx.Client(verify=verify, timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
                      follow_redirects=False, trust_env=False,
                      headers={"User-Agent": "polyarch", "Accept-Encoding": "identity"}) as http:
        for text in desc.urls:
            sink = sink_factory()
            try:
                resp = _get(http, httpx.URL(text), allowed)
                try:
                    _copy(resp, desc, sink)
                finally:
                    resp.close()
                return sink
            except (RegistryError, httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
                sink.abort()
                if isinstance(exc, DigestMismatch):
                    raise
                reasons.append(f"{text[:200]}: {exc}")
    raise RegistryError(f"foreign layer {desc.digest} could not be fetched from its urls: " + "; ".join(reasons))
