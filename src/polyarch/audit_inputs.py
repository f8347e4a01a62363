"""Inputs of ``polyarch audit``: the hosts file, compose files and image lists, and asking a host over ssh.

**Hosts file** (YAML)::

    hosts:
      server: linux/amd64
      pi4: linux/arm64
      pi3: linux/arm/v7
      mini: ssh://admin@mini.lan        # asked: uname -s, uname -m, getconf LONG_BIT, /proc/cpuinfo
      nas: {platform: linux/arm64}

or the same without the ``hosts:`` key, or plain lines ``NAME PLATFORM-OR-SSH`` (``#`` starts a comment).

**Images**: a compose file (``services.*.image``, with ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``
and ``$$`` interpolated from the environment and a ``.env`` beside the file; ``platform:`` is honoured;
services with only ``build:`` are skipped and listed), or a list file of one reference per line.

The ssh client is ``ssh -o BatchMode=yes -o ConnectTimeout=10``; set ``POLYARCH_SSH`` to another command line
(for jump hosts or options; it receives ``[-p PORT] [USER@]HOST COMMAND``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyarch import platform as plat
from polyarch.audit import Host, ImageUse
from polyarch.errors import InvalidPlatform, NotFound, ParseError, PolyarchError, SourceSpan
from polyarch.platform import Platform

__all__ = [
    "PROBE_COMMAND",
    "HostSpec",
    "load_hosts",
    "load_images",
    "merge_uses",
    "platform_from_probe",
    "probe_host",
    "resolve_hosts",
    "ssh_argv",
]

PROBE_COMMAND = ("uname -s; uname -m; getconf LONG_BIT 2>/dev/null || echo 0; "
                 "grep -m2 -E '^(CPU architecture|model name)' /proc/cpuinfo 2>/dev/null || true")
MAX_INPUT = 4 << 20
_SSH_RE = re.compile(r"^ssh://(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)"
                     r"(?::(?P<port>\d{1,5}))?/?$")


@dataclass(frozen=True, slots=True)
class HostSpec:
    name: str
    platform: Platform | None = None
    ssh: str = ""  # ssh://[user@]host[:port]


def _read(path: Path, what: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT + 1)
    except FileNotFoundError:
        raise NotFound(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise NotFound(f"cannot read {what} {path}: {exc.strerror}") from exc
    if len(data) > MAX_INPUT:
        raise ParseError(f"{what} {path} is larger than {MAX_INPUT} bytes")
    return data.decode("utf-8", errors="replace")


def _yaml(text: str, path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        span = None
        if mark is not None:
            lines = text.splitlines()
            line = lines[mark.line] if mark.line < len(lines) else ""
            span = SourceSpan(str(path), mark.line + 1, mark.column + 1, 1, line)
        raise ParseError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", span) from None


def _host_value(name: str, value: Any, where: str) -> HostSpec:
    if isinstance(value, dict):
        ssh = value.get("ssh") or ""
        p = value.get("platform")
        if not isinstance(ssh, str) or (p is not None and not isinstance(p, str)):
            raise ParseError(f"{where}: host {name!r}: platform and ssh must be strings")
        if not p and not ssh:
            raise ParseError(f"{where}: host {name!r} has neither platform nor ssh")
        return HostSpec(name, _platform(p, where, name) if p else None, _ssh(ssh, where, name) if ssh else "")
    if not isinstance(value, str) or not value.strip():
        raise ParseError(f"{where}: host {name!r}: expected a platform (linux/arm64) or ssh://[user@]host")
    value = value.strip()
    if value.startswith("ssh://"):
        return HostSpec(name, None, _ssh(value, where, name))
    return HostSpec(name, _platform(value, where, name))


def _platform(text: str, where: str, name: str) -> Platform:
    try:
        return plat.parse(text)
    except InvalidPlatform as exc:
        raise ParseError(f"{where}: host {name!r}: {exc}", hint=exc.hint) from None


def _ssh(text: str, where: str, name: str) -> str:
    if not _SSH_RE.match(text):
        raise ParseError(f"{where}: host {name!r}: {text!r} is not ssh://[user@]host[:port]")
    return text


def load_hosts(path: Path) -> list[HostSpec]:
    """Parse a hosts file (YAML mapping, or ``NAME VALUE`` lines).

    :raises ParseError: naming the file and, for line files, the line.
    """
    text = _read(path, "hosts file")
    doc: Any = None
    try:
        doc = _yaml(text, path)
    except ParseError:
        if not _looks_like_lines(text):
            raise
    if isinstance(doc, dict):
        hosts = doc["hosts"] if isinstance(doc.get("hosts"), dict | list) else doc
        if isinstance(hosts, list):
            out = []
            for i, item in enumerate(hosts):
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise ParseError(f"{path}: hosts[{i}] must be a mapping with a name")
                out.append(_host_value(item["name"], {k: v for k, v in item.items() if k != "name"}, str(path)))
            specs = out
        elif isinstance(hosts, dict):
            specs = [_host_value(str(name), value, str(path)) for name, value in hosts.items()]
        else:
            raise ParseError(f"{path}: 'hosts' must be a mapping of host name to platform")
    else:
        specs = _host_lines(text, path)
    if not specs:
        raise ParseError(f"{path}: no hosts")
    names = [s.name for s in specs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ParseError(f"{path}: host {dup!r} is listed twice")
    return specs


def _looks_like_lines(text: str) -> bool:
    return all(len(line.split()) == 2 and not line.split()[0].endswith(":") for line in _content_lines(text))


def _content_lines(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def _host_lines(text: str, path: Path) -> list[HostSpec]:
    specs = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ParseError("expected 'NAME PLATFORM' or 'NAME ssh://[user@]host'",
                             SourceSpan(str(path), n, 1, len(raw), raw))
        specs.append(_host_value(parts[0], parts[1], f"{path}:{n}"))
    return specs


# --- images ------------------------------------------------------------------------------------------------

_VAR_RE = re.compile(r"\$(?:(?P<esc>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                     r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, env: dict[str, str], where: str) -> str:
    """Compose's variable interpolation (the common forms)."""
    def sub(m: re.Match[str]) -> str:
        if m.group("esc"):
            return "$"
        name = m.group("braced") or m.group("bare")
        value = env.get(name)
        op, arg = m.group("op"), m.group("arg") or ""
        if op in (":-", ":?") and not value:
            value = None
        if value is None:
            if op in ("-", ":-"):
                return arg
            if op in ("?", ":?"):
                raise ParseError(f"{where}: {name} is required: {arg or 'not set'}")
            return ""
        return value
    return _VAR_RE.sub(sub, text)


def _dotenv(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = (folder / ".env").read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.removeprefix("export ").partition("=")
        out[k.strip()] = v.strip().strip("'\"")
    return out


def load_images(path: Path, env: dict[str, str] | None = None) -> tuple[list[ImageUse], list[str]]:
    """Image uses of a compose file or an image list; and services skipped (with why)."""
    text = _read(path, "file")
    doc: Any = None
    try:
        doc = _yaml(text, path)
    except ParseError:
        doc = None
    if isinstance(doc, dict) and "services" in doc:
        return _compose(doc, path, {**_dotenv(path.parent), **(env if env is not None else os.environ)})
    uses = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line.split()) != 1:
            raise ParseError("expected one image reference per line", SourceSpan(str(path), n, 1, len(raw), raw))
        _check_ref(line, f"{path}:{n}")
        uses.append(ImageUse(line, (f"{path.name}:{n}",)))
    return uses, []


def _check_ref(ref: str, where: str) -> None:
    from polyarch.errors import InvalidReference
    from polyarch.oci import reference

    try:
        reference.parse(ref)
    except InvalidReference as exc:
        raise ParseError(f"{where}: {exc}") from None


def _compose(doc: dict[str, Any], path: Path, env: dict[str, str]) -> tuple[list[ImageUse], list[str]]:
    services = doc.get("services")
    if not isinstance(services, dict):
        raise ParseError(f"{path}: services must be a mapping")
    uses: list[ImageUse] = []
    skipped: list[str] = []
    for name, svc in services.items():
        where = f"{path}: service {name}"
        if not isinstance(svc, dict):
            raise ParseError(f"{where} must be a mapping")
        image = svc.get("image")
        if image is None:
            skipped.append(f"{path.name}:{name}: no image (built by compose from {'build:' if 'build' in svc else 'nothing'})")
            continue
        if not isinstance(image, str):
            raise ParseError(f"{where}: image must be a string")
        ref = interpolate(image, env, where).strip()
        _check_ref(ref, where)
        pinned = None
        if svc.get("platform"):
            pinned = _platform(interpolate(str(svc["platform"]), env, where), where, str(name))
        uses.append(ImageUse(ref, (f"{path.name}:{name}",), pinned))
    return uses, skipped


def merge_uses(uses: list[ImageUse]) -> list[ImageUse]:
    """One row per (image, pinned platform), listing every service that uses it, first-seen order."""
    merged: dict[tuple[str, Platform | None], ImageUse] = {}
    for u in uses:
        key = (u.ref, u.pinned)
        if key in merged:
            merged[key] = ImageUse(u.ref, merged[key].services + u.services, u.pinned)
        else:
            merged[key] = u
    return list(merged.values())


# --- ssh ---------------------------------------------------------------------------------------------------

def ssh_argv(target: str) -> list[str]:
    m = _SSH_RE.match(target)
    if m is None:
        raise ParseError(f"{target!r} is not ssh://[user@]host[:port]")
    base = shlex.split(os.environ.get("POLYARCH_SSH", "")) or \
        ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    host = m.group("host").strip("[]")
    dest = f"{m.group('user')}@{host}" if m.group("user") else host
    return [*base, *(["-p", m.group("port")] if m.group("port") else []), dest, PROBE_COMMAND]


def platform_from_probe(output: str) -> Platform:
    """The platform a container engine on that host would report, from the probe's output (containerd's rules).

    ``aarch64`` with a 32-bit userland (Raspberry Pi OS with its 64-bit kernel) is ``arm`` at the CPU's level;
    an ARM11 (Pi Zero/1) that reports ``CPU architecture: 7`` with an ``ARMv6-compatible`` model is v6.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if len(lines) < 3:
        raise PolyarchError(f"unexpected answer from the host: {output.strip()[:200]!r}")
    os_name, machine, bits = lines[0].lower(), lines[1], lines[2]
    cpu_arch = model = ""
    for line in lines[3:]:
        if line.startswith("CPU architecture"):
            cpu_arch = line.partition(":")[2].strip()
        elif line.startswith("model name"):
            model = line.partition(":")[2].strip().lower()
    if cpu_arch.startswith("7") and model.startswith("armv6-compatible"):
        cpu_arch = "6"
    try:
        p = plat.parse(f"{os_name}/{machine}")
    except InvalidPlatform as exc:
        raise PolyarchError(f"host reports an unknown platform: {exc}") from None
    if p.architecture == "arm64" and bits == "32":
        p = Platform(p.os, "arm", "v8")
    if p.architecture == "arm" and cpu_arch[:1] in ("5", "6", "7", "8"):
        p = Platform(p.os, "arm", "v" + cpu_arch[:1])
    return p


def probe_host(target: str, *, timeout: float = 30.0) -> Platform:
    """Ask a host its platform over ssh.

    :raises PolyarchError: when ssh fails or the answer cannot be read.
    """
    argv = ssh_argv(target)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise PolyarchError(f"cannot run {argv[0]!r} to ask {target}",
                            hint="install an ssh client, or write the host's platform in the hosts file") from None
    except subprocess.TimeoutExpired:
        raise PolyarchError(f"{target} did not answer within {timeout:.0f}s") from None
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise PolyarchError(f"ssh {target} failed: {err}")
    return platform_from_probe(proc.stdout)


def resolve_hosts(specs: list[HostSpec], *, timeout: float = 30.0) -> list[Host]:
    """Hosts with their platforms; those given as ssh targets are asked in parallel. A host that cannot be
    asked keeps ``platform=None`` and its error."""
    from concurrent.futures import ThreadPoolExecutor

    def one(spec: HostSpec) -> Host:
        if spec.platform is not None:
            return Host(spec.name, spec.platform, spec.ssh or "file")
        try:
            return Host(spec.name, probe_host(spec.ssh, timeout=timeout), spec.ssh)
        except PolyarchError as exc:
            return Host(spec.name, None, spec.ssh, exc.message)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(specs)))) as pool:
        return list(pool.map(one, specs))
