"""The hosts of ``polyarch audit``: the hosts file, and asking a host its platform over ssh.

**Hosts file** (YAML)::

    hosts:
      server: linux/amd64
      pi4: linux/arm64
      pi3: linux/arm/v7
      mini: ssh://admin@mini.lan        # asked: uname -s, uname -m, getconf LONG_BIT, /proc/cpuinfo
      nas: {platform: linux/arm64}

or the same without the ``hosts:`` key, or plain lines ``NAME PLATFORM-OR-SSH`` (``#`` starts a comment).

The ssh client is ``SshOptions.command``: ``ssh -o BatchMode=yes -o ConnectTimeout=10`` unless the caller gives
another command line (the CLI takes it from ``POLYARCH_SSH``, for jump hosts or options); it receives
``[-p PORT] [USER@]HOST COMMAND``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyarch import platform as plat
from polyarch.audit.model import Host
from polyarch.audit.textfile import parse_yaml, read_text
from polyarch.errors import InvalidPlatform, ParseError, PolyarchError, SourceSpan, UsageError
from polyarch.platform import Platform

__all__ = [
    "DEFAULT_SSH",
    "PROBE_COMMAND",
    "HostSpec",
    "SshOptions",
    "load_hosts",
    "platform_from_probe",
    "probe_host",
    "resolve_hosts",
    "ssh_argv",
]

PROBE_COMMAND = ("uname -s; uname -m; getconf LONG_BIT 2>/dev/null || echo 0; "
                 "grep -m2 -E '^(CPU architecture|model name)' /proc/cpuinfo 2>/dev/null || true")
DEFAULT_SSH = ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")
_SSH_RE = re.compile(r"^ssh://(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)"
                     r"(?::(?P<port>\d{1,5}))?/?$")


@dataclass(frozen=True, slots=True)
class SshOptions:
    """How hosts are asked: the ssh command line and the seconds to wait for each host."""

    command: tuple[str, ...] = DEFAULT_SSH
    timeout: float = 30.0

    @classmethod
    def from_setting(cls, command_line: str, timeout: float) -> SshOptions:
        """``command_line`` split as a shell would (empty: ``DEFAULT_SSH``).

        :raises UsageError: unbalanced quotes."""
        try:
            command = tuple(shlex.split(command_line))
        except ValueError as exc:
            raise UsageError(f"POLYARCH_SSH: {exc}") from None
        return cls(command or DEFAULT_SSH, timeout)


@dataclass(frozen=True, slots=True)
class HostSpec:
    name: str
    platform: Platform | None = None
    ssh: str = ""  # ssh://[user@]host[:port]


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
    text = read_text(path, "hosts file")
    doc: Any = None
    try:
        doc = parse_yaml(text, path)
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


def ssh_argv(target: str, command: tuple[str, ...] = DEFAULT_SSH) -> list[str]:
    """``command [-p PORT] [USER@]HOST PROBE_COMMAND`` for ``ssh://[user@]host[:port]``."""
    m = _SSH_RE.match(target)
    if m is None:
        raise ParseError(f"{target!r} is not ssh://[user@]host[:port]")
    host = m.group("host").strip("[]")
    dest = f"{m.group('user')}@{host}" if m.group("user") else host
    return [*command, *(["-p", m.group("port")] if m.group("port") else []), dest, PROBE_COMMAND]


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


def probe_host(target: str, ssh: SshOptions) -> Platform:
    """Ask a host its platform over ssh.

    :raises PolyarchError: when ssh fails or the answer cannot be read.
    """
    timeout = ssh.timeout
    argv = ssh_argv(target, ssh.command)
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


def resolve_hosts(specs: list[HostSpec], ssh: SshOptions) -> list[Host]:
    """Hosts with their platforms; those given as ssh targets are asked in parallel. A host that cannot be
    asked keeps ``platform=None`` and its error."""
    from concurrent.futures import ThreadPoolExecutor

    def one(spec: HostSpec) -> Host:
        if spec.platform is not None:
            return Host(spec.name, spec.platform, spec.ssh or "file")
        try:
            return Host(spec.name, probe_host(spec.ssh, ssh), spec.ssh)
        except PolyarchError as exc:
            return Host(spec.name, None, spec.ssh, exc.message)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(specs)))) as pool:
        return list(pool.map(one, specs))
