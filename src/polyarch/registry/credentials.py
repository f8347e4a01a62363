"""Registry credentials from Docker's ``config.json`` and ``docker-credential-*`` helpers.

The file is ``config_path(docker_config)``: ``$DOCKER_CONFIG/config.json`` when the CLI was given ``DOCKER_CONFIG``,
else ``~/.docker/config.json``; read and written in Docker's format so
``docker login`` and ``polyarch login`` share it:

- ``auths``: ``{"host": {"auth": base64("user:password")}}`` (``identitytoken`` is a refresh token, used with the
  user name ``<token>`` as Docker does);
- ``credHelpers``: ``{"host": "NAME"}`` runs ``docker-credential-NAME`` for that host;
- ``credsStore``: ``"NAME"``, the helper for every other host.

Docker Hub is keyed ``https://index.docker.io/v1/`` as Docker writes it. Keys are matched after stripping the
scheme and path, so ``https://registry.example/`` and ``registry.example`` are the same host.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyarch.errors import RegistryError, UsageError
from polyarch.fsutil import atomic_write

__all__ = [
    "DOCKER_HUB_KEY",
    "Credential",
    "CredentialStore",
    "config_path",
    "server_key",
]

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
_HELPER_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Credential:
    username: str
    secret: str

    @property
    def is_identity_token(self) -> bool:
        return self.username == "<token>"

    def __repr__(self) -> str:  # never print a secret
        return f"Credential(username={self.username!r}, secret=***)"


def config_path(docker_config: str = "") -> Path:
    """Docker's ``config.json`` in the directory ``docker_config`` (Docker's ``DOCKER_CONFIG``), else in
    ``~/.docker``."""
    return (Path(docker_config) if docker_config else Path.home() / ".docker") / "config.json"


def _host_of(key: str) -> str:
    host = key.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix):]
    host = host.split("/", 1)[0].lower()
    return "docker.io" if host in _HUB_ALIASES else host


def server_key(registry: str) -> str:
    """The key Docker uses in ``auths`` for a registry host."""
    host = _host_of(registry)
    return DOCKER_HUB_KEY if host == "docker.io" else host


class CredentialStore:
    """Reads and writes credentials; one instance per process is enough (the file is re-read on each lookup)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_path()  # the caller passes the file it chose (see config_path)

    # --- file ----------------------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise RegistryError(f"cannot read {self.path}: {exc.strerror}") from exc
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise RegistryError(f"{self.path} is not valid JSON: {exc}",
                                hint="fix or remove the file, then run 'polyarch login' again") from exc
        if not isinstance(doc, dict):
            raise RegistryError(f"{self.path} must hold a JSON object")
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(self.path, json.dumps(doc, indent="\t").encode() + b"\n")
            os.chmod(self.path, 0o600)
        except OSError as exc:
            raise RegistryError(f"cannot write {self.path}: {exc.strerror}") from exc

    def _helper_for(self, doc: dict[str, Any], host: str) -> str | None:
        helpers = doc.get("credHelpers") or {}
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if isinstance(name, str) and name and _host_of(key) == host:
                    return name
        store = doc.get("credsStore")
        return store if isinstance(store, str) and store else None

    # --- lookup --------------------------------------------------------------------------------------------

    def get(self, registry: str) -> Credential | None:
        """Credentials for a registry host, or None for anonymous access."""
        host = _host_of(registry)
        doc = self._load()
        helper = self._helper_for(doc, host)
        if helper:
            cred = _helper_get(helper, server_key(host), self.path)
            if cred is not None:
                return cred
        auths = doc.get("auths") or {}
        if not isinstance(auths, dict):
            return None
        for key, entry in auths.items():
            if _host_of(key) != host or not isinstance(entry, dict):
                continue
            if entry.get("identitytoken"):
                return Credential("<token>", str(entry["identitytoken"]))
            if entry.get("auth"):
                return _decode_auth(str(entry["auth"]), key, self.path)
            if entry.get("username") and entry.get("password"):
                return Credential(str(entry["username"]), str(entry["password"]))
        return None

    def store(self, registry: str, cred: Credential) -> str:
        """Save credentials (through the helper when one is configured); returns where they went."""
        host = _host_of(registry)
        doc = self._load()
        helper = self._helper_for(doc, host)
        key = server_key(host)
        if helper:
            payload = {"ServerURL": key, "Username": cred.username, "Secret": cred.secret}
            _run_helper(helper, "store", json.dumps(payload), self.path)
            auths = doc.setdefault("auths", {})
            if isinstance(auths, dict):
                auths[key] = {}
                self._save(doc)
            return f"credential helper docker-credential-{helper}"
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            auths = doc["auths"] = {}
        for old in [k for k in auths if _host_of(k) == host]:
            del auths[old]
        token = base64.b64encode(f"{cred.username}:{cred.secret}".encode()).decode()
        auths[key] = {"auth": token}
        self._save(doc)
        return str(self.path)

    def erase(self, registry: str) -> bool:
        """Forget credentials for a registry; returns whether any were stored."""
        host = _host_of(registry)
        doc = self._load()
        found = False
        helper = self._helper_for(doc, host)
        if helper:
            try:
                _run_helper(helper, "erase", server_key(host), self.path)
                found = True
            except RegistryError:
                pass
        auths = doc.get("auths")
        if isinstance(auths, dict):
            for key in [k for k in auths if _host_of(k) == host]:
                del auths[key]
                found = True
            self._save(doc)
        return found


def _decode_auth(value: str, key: str, where: Path) -> Credential:
    try:
        text = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise RegistryError(f"invalid auth entry for {key!r} in {where}: not base64") from exc
    user, sep, secret = text.partition(":")
    if not sep:
        raise RegistryError(f"invalid auth entry for {key!r} in {where}: expected user:password")
    return Credential(user, secret)


def _run_helper(name: str, action: str, stdin: str, where: Path) -> str:
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UsageError(f"invalid credential helper name {name!r}")
    program = f"docker-credential-{name}"
    if shutil.which(program) is None:
        raise RegistryError(f"credential helper {program} is not installed",
                            hint=f"install it, or remove it from {where}")
    try:
        proc = subprocess.run([program, action], input=stdin.encode(), capture_output=True,
                              timeout=_HELPER_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RegistryError(f"credential helper {program} {action} failed: {exc}") from exc
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        detail = out or proc.stderr.decode(errors="replace").strip()
        raise RegistryError(f"credential helper {program} {action} failed: {detail[:200]}")
    return out


def _helper_get(name: str, server: str, where: Path) -> Credential | None:
    try:
        out = _run_helper(name, "get", server, where)
    except RegistryError as exc:
        if "not found" in exc.message.lower():
            return None
        raise
    try:
        doc = json.loads(out)
        user, secret = doc.get("Username") or "", doc.get("Secret") or ""
    except (ValueError, AttributeError) as exc:
        raise RegistryError(f"credential helper docker-credential-{name} returned invalid JSON") from exc
    if not secret:
        return None
    return Credential(str(user), str(secret))
