"""``registry serve --config registry.yaml``: distribution's ``config.yml`` shape, read into frozen ``ServeFile``.

Keys polyarch uses (where distribution has the concept, its key): ``http.addr`` (``:5000`` listens everywhere),
``http.tls.certificate``, ``http.tls.key``, ``http.tls.clientcas`` (one CA file), ``auth.htpasswd.path``,
``storage.delete.enabled``, ``storage.redirect.disable`` (plus polyarch's ``storage.redirect.minsize``: blobs
smaller than this many bytes are streamed, not redirected; default ``state.REDIRECT_MIN``, 0 redirects every blob as
distribution does), ``storage.maintenance.readonly.enabled``, and one storage
driver: ``storage.filesystem`` (the local store; its ``rootdirectory`` must be left out: the store is ``--root``)
or ``storage.s3.{regionendpoint, region, bucket, rootdirectory, accesskey, secretkey, secure, forcepathstyle,
chunksize}`` plus polyarch's ``storage.s3.{cafile, profile}`` and ``database`` (``sqlite``, the default: ``registry.db``
in the store; or ``postgresql://user:password@host:port/name``, which replicas share), and the pull-through mirror
``proxy.{remoteurl, username, password, ttl}`` (``ttl``: how long a cached tag is served before it is checked
against the upstream again, default 168h; 0: never) plus polyarch's ``proxy.allowpush``, and polyarch's
``limits.{uploadsperrepo, uploadsperclient, uploadttl}`` (open upload sessions per repository and per client address,
counted across replicas; idle sessions expire after ``uploadttl``, a duration). Keys of distribution
that do not apply here are
accepted and ignored (``version``, ``log``, ``storage.cache``, ``http.headers``, ``health``, …), so a registry:2
file keeps working; any other key is refused.

Precedence: the file, then ``REGISTRY_*`` environment variables (distribution's names: the key upper-cased with
``_`` for ``.``, e.g. ``REGISTRY_STORAGE_S3_BUCKET``), then the command's flags. Every bad value is one error
naming the file, the line and the key (``registry.yaml:12: storage.s3.secure: expected true or false``; the lines
come from PyYAML's composed nodes), or the variable (``REGISTRY_STORAGE_S3_SECURE: …``).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from polyarch.errors import UsageError

__all__ = ["ProxySettings", "S3Settings", "ServeFile", "check_database", "check_remote_url", "load_serve_file"]

MIN_CHUNK = 5 << 20
_IGNORED = ("version", "log", "loglevel", "storage.cache", "storage.maintenance.uploadpurging", "http.headers",
            "http.secret", "http.debug", "http.host", "http.prefix", "http.relativeurls", "http.draintimeout",
            "http.http2", "health", "notifications", "auth.htpasswd.realm", "storage.s3.v4auth",
            "storage.s3.encrypt", "storage.s3.multipartcopychunksize", "storage.s3.multipartcopymaxconcurrency",
            "storage.s3.multipartcopythresholdsize", "storage.s3.storageclass", "validation", "redis")


@dataclass(frozen=True, slots=True)
class S3Settings:
    bucket: str = ""
    region: str = "us-east-1"
    regionendpoint: str | None = None
    rootdirectory: str = ""
    accesskey: str | None = None
    secretkey: str | None = None
    secure: bool = True
    forcepathstyle: bool = False
    chunksize: int = 16 << 20
    cafile: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class ProxySettings:
    remoteurl: str  # http(s)://HOST[:PORT], no path
    username: str | None = None
    password: str | None = None
    ttl: float = 168 * 3600.0  # seconds; 0: a cached tag is never checked again
    allowpush: bool = False


@dataclass(frozen=True, slots=True)
class ServeFile:
    """What the configuration file and ``REGISTRY_*`` say; None: not said (the flag or default decides)."""

    addr: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    htpasswd: Path | None = None
    delete_enabled: bool | None = None
    read_only: bool | None = None
    redirect: bool = True
    redirect_min: int | None = None  # storage.redirect.minsize: smaller blobs are streamed, not redirected
    storage: str = "filesystem"
    s3: S3Settings | None = None
    database: str | None = None  # a postgresql:// URL; None: SQLite in the store
    proxy: ProxySettings | None = None  # a pull-through mirror
    max_uploads_per_repo: int | None = None  # limits.uploadsperrepo
    max_uploads_per_client: int | None = None  # limits.uploadsperclient
    upload_ttl: float | None = None  # limits.uploadttl, seconds


class _Bad(Exception):
    pass


def _text(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)) or str(v).strip() == "":
        raise _Bad("expected a non-empty string")
    return str(v).strip()


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise _Bad(f"expected true or false, got {str(v)[:40]!r}")


def _bytes(v: Any) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, str) and v.strip().isdigit())) or int(v) < 0:
        raise _Bad(f"expected a number of bytes, got {str(v)[:40]!r}")
    return int(v)


def _positive(v: Any) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, str) and v.strip().isdigit())) or int(v) < 1:
        raise _Bad(f"expected a whole number of at least 1, got {str(v)[:40]!r}")
    return int(v)


def _size(v: Any) -> int:
    n = _bytes(v)
    if n < MIN_CHUNK:
        raise _Bad(f"must be at least {MIN_CHUNK} (S3's smallest part), got {n}")
    return n


def _addr(v: Any) -> str:
    text = _text(v)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise _Bad(f"expected HOST:PORT or :PORT, got {text[:60]!r}")
    return f"{host or '0.0.0.0'}:{port}"


def _cas(v: Any) -> Path:
    items = v if isinstance(v, list) else [v]
    if len(items) != 1:
        raise _Bad("polyarch takes exactly one client CA file")
    return Path(_text(items[0]))


def _endpoint(v: Any) -> str:
    text = _text(v)
    if "://" in text and not text.startswith(("http://", "https://")):
        raise _Bad(f"expected an http:// or https:// URL or HOST[:PORT], got {text[:60]!r}")
    return text


_GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d))+$")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(v: Any) -> float:
    """Go's duration text (``168h``, ``1h30m``, ``90s``; also ``2d``) or ``0`` → seconds."""
    text = str(v).strip() if isinstance(v, (str, int)) and not isinstance(v, bool) else ""
    if text == "0":
        return 0.0
    if not _GO_DURATION.match(text):
        raise _Bad(f"expected a duration such as 168h, 30m or 90s, got {str(v)[:40]!r}")
    return sum(float(n) * _GO_UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)", text))


def _ttl(v: Any) -> float:
    seconds = _duration(v)
    if seconds <= 0:
        raise _Bad("must be longer than 0")
    return seconds


def remote_url(v: Any) -> str:
    """``http(s)://HOST[:PORT]`` without path, query or user, without a trailing ``/``."""
    text = _text(v).rstrip("/")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise _Bad(f"expected an http:// or https:// URL, got {text[:60]!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or \
            parts.fragment or parts.username is not None or (port is not None and not 0 < port < 65536):
        raise _Bad(f"expected http(s)://HOST[:PORT] (no path, no user), got {text[:60]!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def check_remote_url(flag: str) -> str:
    """The ``--proxy-remote-url`` flag's value as ``remote_url`` reads it. :raises UsageError:"""
    try:
        return remote_url(flag)
    except _Bad as exc:
        raise UsageError(f"invalid --proxy-remote-url: {exc}") from None


def database_url(v: Any) -> str | None:
    """``sqlite`` → None (the default database); a ``postgresql://`` or ``postgres://`` URL as given."""
    text = _text(v)
    if text.lower() == "sqlite":
        return None
    if not text.startswith(("postgresql://", "postgres://")):
        raise _Bad("expected sqlite or a postgresql://USER[:PASSWORD]@HOST[:PORT]/NAME URL")
    return text


_KEYS: dict[str, Callable[[Any], Any]] = {
    "database": database_url,
    "http.addr": _addr, "http.tls.certificate": lambda v: Path(_text(v)), "http.tls.key": lambda v: Path(_text(v)),
    "http.tls.clientcas": _cas, "auth.htpasswd.path": lambda v: Path(_text(v)),
    "storage.delete.enabled": _bool, "storage.redirect.disable": _bool, "storage.redirect.minsize": _bytes,
    "storage.maintenance.readonly.enabled": _bool,
    "storage.s3.regionendpoint": _endpoint, "storage.s3.region": _text, "storage.s3.bucket": _text,
    "storage.s3.rootdirectory": lambda v: str(v).strip() if v is not None else "",
    "storage.s3.accesskey": _text, "storage.s3.secretkey": _text, "storage.s3.secure": _bool,
    "storage.s3.forcepathstyle": _bool, "storage.s3.chunksize": _size, "storage.s3.cafile": _text,
    "storage.s3.profile": _text,
    "proxy.remoteurl": remote_url, "proxy.username": _text, "proxy.password": _text, "proxy.ttl": _duration,
    "proxy.allowpush": _bool,
    "limits.uploadsperrepo": _positive, "limits.uploadsperclient": _positive, "limits.uploadttl": _ttl,
}
_SECTIONS = ("storage.filesystem", "storage.s3")  # may be empty mappings


def _ignored(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in _IGNORED)


@dataclass(frozen=True, slots=True)
class _Said:
    """One key's value and where it was said: ``registry.yaml:12`` or a ``REGISTRY_*`` variable's name."""

    value: Any
    place: str


def _walk(loader: Any, node: Any, prefix: str, out: dict[str, _Said], lines: dict[str, int], path: Path) -> None:
    """Flatten a composed mapping node into dotted keys, each with the line of its key (``lines`` also gets the
    line of every section)."""
    import yaml

    loader.flatten_mapping(node)  # ``<<`` merge keys, as safe_load does
    for key_node, value_node in node.value:
        k = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        key = f"{prefix}{k}".lower() if isinstance(k, str) else f"{prefix}{k!r}"
        lines.setdefault(key, line)
        if _ignored(key):
            continue
        if isinstance(value_node, yaml.MappingNode) and key not in _KEYS:
            if not value_node.value and key in _SECTIONS:
                out[key] = _Said({}, f"{path}:{line}")
            _walk(loader, value_node, key + ".", out, lines, path)
        elif key == "storage.filesystem.rootdirectory":
            raise UsageError(f"{path}:{line}: {key}: not used by polyarch", hint="the store is --root (POLYARCH_ROOT)")
        elif key in _KEYS or key in _SECTIONS:
            out[key] = _Said(loader.construct_object(value_node, deep=True), f"{path}:{line}")
        else:
            raise UsageError(f"{path}:{line}: {key}: unknown key")


def _read(path: Path) -> tuple[dict[str, _Said], dict[str, int]]:
    """The file's keys (each with its ``path:line``) and the line of every key and section."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read --config {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    flat: dict[str, _Said] = {}
    lines: dict[str, int] = {}
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return flat, lines
        if not isinstance(node, yaml.MappingNode):
            raise UsageError(f"{path}:{node.start_mark.line + 1}: expected a mapping of keys at the top")
        _walk(loader, node, "", flat, lines, path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UsageError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
    return flat, lines


def _env_keys() -> dict[str, str]:
    return {("REGISTRY_" + k.upper().replace(".", "_")): k for k in _KEYS}


def load_serve_file(path: Path | None, environ: tuple[tuple[str, str], ...] = ()) -> ServeFile:
    """The file at ``path`` (None: no file) overlaid with ``REGISTRY_*`` variables. :raises UsageError: one line
    naming the file, line and key (``registry.yaml:12: storage.s3.bucket: …``) or the variable."""
    raw: dict[str, _Said] = {}
    lines: dict[str, int] = {}
    if path is not None:
        raw, lines = _read(path)
    names = _env_keys()
    for var, value in environ:
        if var in names:
            raw[names[var]] = _Said(value, var)

    def place(*keys: str) -> str:
        """Where the first of ``keys`` that was said (a key or a section of the file) was said."""
        for key in keys:
            if key in raw:
                return raw[key].place
            if path is not None and key in lines:
                return f"{path}:{lines[key]}"
        return str(path) if path is not None else "environment"

    values: dict[str, Any] = {}
    for key, said in raw.items():
        if key in _SECTIONS:
            if said.value not in (None, {}) and not isinstance(said.value, Mapping):
                raise UsageError(f"{said.place}: {key}: expected a mapping")
            values[key] = True
            continue
        try:
            values[key] = _KEYS[key](said.value)
        except _Bad as exc:
            where = f"{said.place}: {key}" if path is not None and said.place.startswith(f"{path}:") else said.place
            raise UsageError(f"{where}: {exc}") from None
    drivers = sorted({k.split(".")[1] for k in values if k.startswith(("storage.s3", "storage.filesystem"))})
    if len(drivers) > 1:
        second = max((f"storage.{d}" for d in drivers), key=lambda k: lines.get(k, 0))
        raise UsageError(f"{place(second)}: storage: more than one driver configured ({', '.join(drivers)})")
    out = ServeFile(addr=values.get("http.addr"), tls_cert=values.get("http.tls.certificate"),
                    tls_key=values.get("http.tls.key"), tls_client_ca=values.get("http.tls.clientcas"),
                    htpasswd=values.get("auth.htpasswd.path"), delete_enabled=values.get("storage.delete.enabled"),
                    read_only=values.get("storage.maintenance.readonly.enabled"),
                    redirect=not values.get("storage.redirect.disable", False),
                    redirect_min=values.get("storage.redirect.minsize"), database=values.get("database"),
                    max_uploads_per_repo=values.get("limits.uploadsperrepo"),
                    max_uploads_per_client=values.get("limits.uploadsperclient"),
                    upload_ttl=values.get("limits.uploadttl"))
    proxy = {k.removeprefix("proxy."): v for k, v in values.items() if k.startswith("proxy.")}
    if proxy:
        if "remoteurl" not in proxy:
            raise UsageError(f"{place('proxy', *(f'proxy.{k}' for k in proxy))}: proxy.remoteurl: required by the "
                             "other proxy keys")
        if ("username" in proxy) != ("password" in proxy):
            raise UsageError(f"{place('proxy.username', 'proxy.password')}: proxy.username and proxy.password go "
                             "together")
        out = replace(out, proxy=ProxySettings(**proxy))
    if drivers == ["s3"]:
        s3 = {k.removeprefix("storage.s3."): v for k, v in values.items() if k.startswith("storage.s3.")}
        if not s3.get("bucket"):
            where = f"{place('storage.s3')}: storage.s3.bucket" if path else "REGISTRY_STORAGE_S3_BUCKET"
            raise UsageError(f"{where}: required by the s3 driver")
        if ("accesskey" in s3) != ("secretkey" in s3):
            raise UsageError(f"{place('storage.s3.accesskey', 'storage.s3.secretkey')}: storage.s3.accesskey and "
                             "storage.s3.secretkey go together")
        out = replace(out, storage="s3", s3=S3Settings(**s3))
    return out


def check_database(flag: str) -> str | None:
    """The ``--database`` flag's value as ``database_url`` reads it. :raises UsageError:"""
    try:
        return database_url(flag)
    except _Bad as exc:
        raise UsageError(f"invalid --database: {exc}") from None
