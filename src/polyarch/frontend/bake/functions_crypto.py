"""buildx's hashing, encoding, UUID and network functions (go-cty-funcs' crypto, encoding, uuid and cidr).

* ``md5`` ``sha1`` ``sha256`` ``sha512``: the lowercase hex digest of the string's UTF-8 bytes.
* ``bcrypt(s[, cost])``: a ``$2a$`` hash (cost 4–31, default 10; a fresh salt each call).
* ``rsadecrypt(b64, pem)``: PKCS #1 v1.5 decryption with an RSA private key in PEM.
* ``urlencode``: Go's ``url.QueryEscape`` (space → ``+``; letters, digits and ``-_.~`` kept).
* ``uuidv4()``, ``uuidv5(namespace, name)`` (namespace ``dns``, ``url``, ``oid``, ``x500`` or a UUID).
* ``cidrhost(prefix, n)`` (negative n counts from the end), ``cidrnetmask(prefix)`` (IPv4),
  ``cidrsubnet(prefix, newbits, netnum)``, ``cidrsubnets(prefix, newbits…)`` (consecutive, aligned).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

from .functions import FuncError, to_num, to_str

__all__ = ["CRYPTO_FUNCTIONS"]


def _digest(name: str) -> Callable[[Any], str]:
    def f(s: Any) -> str:
        return hashlib.new(name, to_str(s).encode("utf-8")).hexdigest()

    return f


def _bcrypt(s: Any, *cost: Any) -> str:
    import bcrypt

    if len(cost) > 1:
        raise FuncError(f"bcrypt() takes at most 2 arguments, got {1 + len(cost)}")
    rounds = int(to_num(cost[0])) if cost else 10
    if not 4 <= rounds <= 31:
        raise FuncError(f"invalid bcrypt cost {rounds} (allowed 4 to 31)")
    secret = to_str(s).encode("utf-8")
    if len(secret) > 72:
        raise FuncError("password length exceeds 72 bytes")
    return bcrypt.hashpw(secret, bcrypt.gensalt(rounds=rounds, prefix=b"2a")).decode()


def _rsadecrypt(ciphertext: Any, key: Any) -> str:
    try:
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:  # pragma: no cover - cryptography ships with the test environment
        raise FuncError("rsadecrypt needs the 'cryptography' package") from None
    try:
        data = base64.b64decode(to_str(ciphertext), validate=True)
    except ValueError:
        raise FuncError("failed to decode input: not valid base64") from None
    try:
        private = load_pem_private_key(to_str(key).encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise FuncError(f"invalid private key: {exc}") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise FuncError("invalid private key: not an RSA key")
    try:
        return private.decrypt(data, padding.PKCS1v15()).decode("utf-8")
    except ValueError:
        raise FuncError("failed to decrypt") from None


_NAMESPACES = {"dns": uuid.NAMESPACE_DNS, "url": uuid.NAMESPACE_URL, "oid": uuid.NAMESPACE_OID,
               "x500": uuid.NAMESPACE_X500}


def _uuidv5(namespace: Any, name: Any) -> str:
    ns_text = to_str(namespace)
    ns = _NAMESPACES.get(ns_text)
    if ns is None:
        try:
            ns = uuid.UUID(ns_text)
        except ValueError:
            raise FuncError(f"uuidv5() doesn't support namespace {ns_text} (invalid UUID)") from None
    return str(uuid.uuid5(ns, to_str(name)))


def _network(prefix: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    text = to_str(prefix)
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise FuncError(f"invalid CIDR expression: {exc}") from None


def _cidrhost(prefix: Any, hostnum: Any) -> str:
    net = _network(prefix)
    n = int(to_num(hostnum))
    index = n if n >= 0 else net.num_addresses + n
    if not 0 <= index < net.num_addresses:
        raise FuncError(f"prefix of {net.prefixlen} does not accommodate a host numbered {n}")
    return str(net.network_address + index)


def _cidrnetmask(prefix: Any) -> str:
    net = _network(prefix)
    if net.version != 4:
        raise FuncError("only IPv4 networks are supported")
    return str(net.netmask)


def _subnet(net: ipaddress.IPv4Network | ipaddress.IPv6Network, newbits: int, netnum: int) -> str:
    if newbits < 0:
        raise FuncError("newbits must be non-negative")
    length = net.prefixlen + newbits
    if length > net.max_prefixlen:
        raise FuncError(f"insufficient address space to extend prefix of {net.prefixlen} by {newbits}")
    if not 0 <= netnum < (1 << newbits):
        raise FuncError(f"prefix extension of {newbits} does not accommodate a subnet numbered {netnum}")
    start = int(net.network_address) + (netnum << (net.max_prefixlen - length))
    return str(ipaddress.ip_network((start, length)))


def _cidrsubnet(prefix: Any, newbits: Any, netnum: Any) -> str:
    return _subnet(_network(prefix), int(to_num(newbits)), int(to_num(netnum)))


def _cidrsubnets(prefix: Any, *newbits: Any) -> list[str]:
    net = _network(prefix)
    out: list[str] = []
    cursor = int(net.network_address)
    end = int(net.broadcast_address)
    for raw in newbits:
        bits = int(to_num(raw))
        if bits < 1:
            raise FuncError("must extend prefix by at least one bit")
        length = net.prefixlen + bits
        if length > net.max_prefixlen:
            raise FuncError(f"would extend prefix to {length} bits, which is too long for this address family")
        size = 1 << (net.max_prefixlen - length)
        cursor = -(-cursor // size) * size  # aligned to the subnet's own size
        if cursor + size - 1 > end:
            raise FuncError(f"not enough remaining address space for a subnet with a prefix of {length} bits "
                            f"after {out[-1] if out else net}")
        out.append(str(ipaddress.ip_network((cursor, length))))
        cursor += size
    return out


CRYPTO_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "bcrypt": _bcrypt,
    "cidrhost": _cidrhost,
    "cidrnetmask": _cidrnetmask,
    "cidrsubnet": _cidrsubnet,
    "cidrsubnets": _cidrsubnets,
    "md5": _digest("md5"),
    "rsadecrypt": _rsadecrypt,
    "sha1": _digest("sha1"),
    "sha256": _digest("sha256"),
    "sha512": _digest("sha512"),
    "urlencode": lambda s: urllib.parse.quote_plus(to_str(s), safe=""),
    "uuidv4": lambda: str(uuid.uuid4()),
    "uuidv5": _uuidv5,
}
