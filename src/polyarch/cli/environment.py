"""The process environment, read once: every variable polyarch honours, as one frozen ``Environment``.

``main`` reads ``os.environ`` here once per invocation; ``AppContext.env`` holds the result and commands pass
typed values down (``ClientOptions``, ``RuntimeOptions``, a snapshotter name, an epoch, a credentials file). No
module outside ``polyarch.cli`` reads the environment (``tests/test_environment_reads.py`` checks it).

Variables (unset and empty mean the same):

- ``SOURCE_DATE_EPOCH``: build and import clamp times to it (``build_epoch``, ``import_epoch``).
- ``XDG_DATA_HOME``: the store is ``$XDG_DATA_HOME/polyarch`` for a non-root user (``default_root``);
  ``POLYARCH_ROOT`` and ``POLYARCH_DEBUG`` are the defaults of ``--root`` and ``--debug`` (``cli.main``).
- ``POLYARCH_SNAPSHOTTER`` (overlay, copy, auto), ``POLYARCH_RUNTIME`` (the OCI runtime), ``POLYARCH_NET_HELPER``
  (slirp4netns or pasta), ``POLYARCH_BINFMT_DIR``: how RUN steps run (``runtime_options``).
- ``POLYARCH_ARM_VARIANT`` (host variant on an arm CPU /proc/cpuinfo does not name), ``POLYARCH_GZIP=zlib`` (gzip
  through zlib instead of isal, for bench/): process-wide, applied by ``apply_process_settings``.
- ``DOCKER_CONFIG``; ``POLYARCH_INSECURE_REGISTRIES``, ``POLYARCH_DOCKERHUB_MIRROR``, ``POLYARCH_REGISTRY_RETRIES``,
  ``POLYARCH_REGISTRY_TIMEOUT``, ``POLYARCH_REGISTRY_BACKOFF``, ``POLYARCH_ALLOW_NONDISTRIBUTABLE_ARTIFACTS``: the
  registry client (``client_options``, ``credentials``).
- ``POLYARCH_CONFIG``, ``XDG_CONFIG_HOME``: where polyarch's configuration file is (``config_location``; the file
  itself is read by ``cli/config.py``).
- ``POLYARCH_CONFIG_DIR`` (else ``$XDG_CONFIG_HOME/polyarch``, else ``~/.config/polyarch``): polyarch's per-user
  state directory, where ``builders.json`` keeps the builder instances (``state_dir``); ``POLYARCH_BUILDER``: the
  builder ``build`` and ``bake`` use when ``--builder`` is not given (``builder``).
- ``REGISTRY_*`` (distribution's names, e.g. ``REGISTRY_STORAGE_S3_BUCKET``): values of ``registry serve``'s
  configuration file, overriding the file (``registry_vars``; validated by ``cli/registry_config.py``).
- ``SUDO_USER``: under ``sudo``, doctor and builds say that root's store and credentials are used (``sudo_user``).
- ``POLYARCH_SSH``: the ssh command line builder nodes are reached with (``ssh``; default ``ssh -o BatchMode=yes
  -o ConnectTimeout=10``), as for ``polyarch audit``'s hosts. ``XDG_RUNTIME_DIR``, else ``XDG_CACHE_HOME`` (default
  ``~/.cache``): where the ssh master sockets shared by node connections are (``ssh_control_dir``).

A bad value fails the command that uses it, with one ``error:`` line naming the variable, as it always did; a
command that does not use a variable never fails because of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyarch.registry.credentials import CredentialStore
    from polyarch.registry.endpoints import ClientOptions, HostConfig
    from polyarch.worker.runc import RuntimeOptions

__all__ = ["Environment"]

_YES = ("1", "true", "yes", "on")
_NUMBERS = {"retries": ("POLYARCH_REGISTRY_RETRIES", int), "timeout": ("POLYARCH_REGISTRY_TIMEOUT", float),
            "backoff": ("POLYARCH_REGISTRY_BACKOFF", float)}


def _hosts(text: str) -> frozenset[str]:
    return frozenset(h.strip().lower() for h in text.replace(",", " ").split() if h.strip())


@dataclass(frozen=True, slots=True)
class Environment:
    """What the environment says, as read at start-up (strings kept as given where a command validates them)."""

    debug: bool = False  # POLYARCH_DEBUG: anything but "", "0" and "false"
    data_home: str = ""  # XDG_DATA_HOME
    source_date_epoch: str = ""  # SOURCE_DATE_EPOCH, validated by build_epoch / import_epoch
    gzip: str = ""  # POLYARCH_GZIP ("zlib" selects zlib)
    arm_variant: str = ""  # POLYARCH_ARM_VARIANT
    snapshotter: str = ""  # POLYARCH_SNAPSHOTTER, validated by the snapshot store
    runtime: str = "runc"  # POLYARCH_RUNTIME
    net_helper: str = ""  # POLYARCH_NET_HELPER
    binfmt_dir: Path = Path("/proc/sys/fs/binfmt_misc")  # POLYARCH_BINFMT_DIR
    docker_config: str = ""  # DOCKER_CONFIG
    insecure_registries: frozenset[str] = frozenset()  # POLYARCH_INSECURE_REGISTRIES (comma or space separated)
    dockerhub_mirror: str = ""  # POLYARCH_DOCKERHUB_MIRROR
    registry_numbers: tuple[tuple[str, str], ...] = ()  # (variable, text) of the registry's number settings
    allow_nondistributable: bool = False  # POLYARCH_ALLOW_NONDISTRIBUTABLE_ARTIFACTS in 1, true, yes, on
    config_file: str = ""  # POLYARCH_CONFIG
    config_home: str = ""  # XDG_CONFIG_HOME
    config_dir: str = ""  # POLYARCH_CONFIG_DIR
    builder: str = ""  # POLYARCH_BUILDER
    ssh: str = ""  # POLYARCH_SSH: the ssh command line for builder nodes (shell words)
    runtime_dir: str = ""  # XDG_RUNTIME_DIR
    cache_home: str = ""  # XDG_CACHE_HOME
    registry_vars: tuple[tuple[str, str], ...] = ()  # every REGISTRY_* variable, sorted (registry serve --config)
    euid: int | None = field(default=None, compare=False)  # the process's user when read (paths stay the user's inside rootless mode's namespace)
    sudo_user: str = ""  # SUDO_USER: the user who ran ``sudo polyarch`` (doctor and builds say whose store is used)

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> Environment:
        """Every variable of the module doc from ``environ`` (``os.environ`` in ``main``)."""
        def get(name: str) -> str:
            return environ.get(name, "").strip()

        return cls(
            debug=environ.get("POLYARCH_DEBUG", "") not in ("", "0", "false"),
            data_home=environ.get("XDG_DATA_HOME", ""),
            source_date_epoch=get("SOURCE_DATE_EPOCH"),
            gzip=environ.get("POLYARCH_GZIP", ""),
            arm_variant=environ.get("POLYARCH_ARM_VARIANT", ""),
            snapshotter=get("POLYARCH_SNAPSHOTTER"),
            runtime=get("POLYARCH_RUNTIME") or "runc",
            net_helper=get("POLYARCH_NET_HELPER"),
            binfmt_dir=Path(environ.get("POLYARCH_BINFMT_DIR") or "/proc/sys/fs/binfmt_misc"),
            docker_config=environ.get("DOCKER_CONFIG", ""),
            insecure_registries=_hosts(environ.get("POLYARCH_INSECURE_REGISTRIES", "")),
            dockerhub_mirror=get("POLYARCH_DOCKERHUB_MIRROR"),
            registry_numbers=tuple((var, environ[var]) for var, _ in _NUMBERS.values() if environ.get(var)),
            allow_nondistributable=get("POLYARCH_ALLOW_NONDISTRIBUTABLE_ARTIFACTS").lower() in _YES,
            config_file=get("POLYARCH_CONFIG"),
            config_home=environ.get("XDG_CONFIG_HOME", ""),
            config_dir=get("POLYARCH_CONFIG_DIR"),
            builder=get("POLYARCH_BUILDER"),
            ssh=get("POLYARCH_SSH"),
            runtime_dir=get("XDG_RUNTIME_DIR"),
            cache_home=get("XDG_CACHE_HOME"),
            registry_vars=tuple(sorted((k, v) for k, v in environ.items() if k.startswith("REGISTRY_") and v)),
            euid=os.geteuid(),
            sudo_user=get("SUDO_USER"),
        )

    def is_root(self) -> bool:
        """Was polyarch started by root? (not: is it uid 0 now; rootless mode makes it 0 in its namespace)"""
        return (os.geteuid() if self.euid is None else self.euid) == 0

    # --- the store ---------------------------------------------------------------------------------------------

    def default_root(self) -> Path:
        """The store without ``--root``/``POLYARCH_ROOT``: ``/var/lib/polyarch`` for root, else
        ``$XDG_DATA_HOME/polyarch`` (default ``~/.local/share/polyarch``)."""
        if self.is_root():
            return Path("/var/lib/polyarch")
        return (Path(self.data_home) if self.data_home else Path.home() / ".local" / "share") / "polyarch"

    def config_location(self) -> tuple[Path, bool]:
        """polyarch's configuration file and whether it was asked for (``POLYARCH_CONFIG``: it must exist); else
        ``/etc/polyarch/config.toml`` for root, ``$XDG_CONFIG_HOME/polyarch/config.toml`` (default
        ``~/.config/polyarch/config.toml``) for other users."""
        if self.config_file:
            return Path(self.config_file), True
        if self.is_root():
            return Path("/etc/polyarch/config.toml"), False
        return (Path(self.config_home) if self.config_home else Path.home() / ".config") / "polyarch" / "config.toml", \
            False

    def state_dir(self) -> Path:
        """polyarch's per-user state directory (builder instances): ``POLYARCH_CONFIG_DIR``, else
        ``$XDG_CONFIG_HOME/polyarch`` (default ``~/.config/polyarch``), for root too (builders are per user)."""
        if self.config_dir:
            return Path(self.config_dir)
        return (Path(self.config_home) if self.config_home else Path.home() / ".config") / "polyarch"

    def ssh_control_dir(self) -> Path:
        """Where node connections keep their ssh master sockets: ``$XDG_RUNTIME_DIR/polyarch/ssh``, else
        ``$XDG_CACHE_HOME/polyarch/ssh`` (default ``~/.cache/polyarch/ssh``); ``nodes/sshmux.py`` makes it 0700."""
        if self.runtime_dir:
            return Path(self.runtime_dir) / "polyarch" / "ssh"
        return (Path(self.cache_home) if self.cache_home else Path.home() / ".cache") / "polyarch" / "ssh"

    # --- reproducibility -----------------------------------------------------------------------------------------

    def build_epoch(self) -> int | None:
        """``SOURCE_DATE_EPOCH`` for ``build`` and ``bake``: any integer, or None.

        :raises UsageError: it is not an integer.
        """
        from polyarch.errors import UsageError

        raw = self.source_date_epoch
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            raise UsageError(f"SOURCE_DATE_EPOCH={raw!r} is not an integer number of seconds") from None

    def import_epoch(self) -> int | None:
        """``SOURCE_DATE_EPOCH`` for ``import``: a whole, non-negative number of seconds, or None.

        :raises PolyarchError: it is not one.
        """
        from polyarch.errors import PolyarchError

        value = self.source_date_epoch
        if not value:
            return None
        try:
            epoch = int(value)
        except ValueError:
            raise PolyarchError(f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds") from None
        if epoch < 0:
            raise PolyarchError(f"SOURCE_DATE_EPOCH={value!r} is negative")
        return epoch

    # --- process-wide settings ----------------------------------------------------------------------------------

    def apply_process_settings(self) -> None:
        """Hand the two process-wide facts to their owners: the arm variant fallback of ``platform.host()`` and
        the gzip implementation. Cheap: imports nothing when neither variable is set."""
        if self.arm_variant:
            from polyarch.platform import set_arm_variant_fallback

            set_arm_variant_fallback(self.arm_variant)
        if self.gzip == "zlib":
            from polyarch.content.compression import select_gzip

            select_gzip("zlib")

    # --- the worker ---------------------------------------------------------------------------------------------

    def snapshotter_driver(self) -> str | None:
        """The snapshot driver asked for (``SnapshotStore(driver=...)`` validates it), None for automatic."""
        return self.snapshotter or None

    def runtime_options(self) -> RuntimeOptions:
        """How RUN steps run: runtime, network helper, binfmt_misc dir, overlay or copy for read-write binds."""
        from polyarch.worker.runc import RuntimeOptions

        return RuntimeOptions(runtime=self.runtime, net_helper=self.net_helper,
                              overlay_binds=self.snapshotter != "copy", binfmt_dir=self.binfmt_dir)

    # --- registries ---------------------------------------------------------------------------------------------

    def client_options(self, *, insecure: tuple[str, ...] = (), ca_file: str = "",
                       allow_nondistributable: bool = False, hosts: tuple[HostConfig, ...] = (),
                       insecure_networks: tuple[str, ...] = ()) -> ClientOptions:
        """Registry client options: the environment's, plus the command line's and the configuration file's
        (``insecure`` hosts add to the environment's, ``allow_nondistributable`` can only turn fetching on;
        ``hosts`` and ``insecure_networks`` come from the configuration file and docker's daemon.json).

        :raises RegistryError: a number setting is not a number.
        """
        from polyarch.errors import RegistryError
        from polyarch.registry.endpoints import ClientOptions

        opts = ClientOptions(insecure=self.insecure_registries | frozenset(h.lower() for h in insecure),
                             mirror=self.dockerhub_mirror, ca_file=ca_file, hosts=hosts,
                             insecure_networks=insecure_networks,
                             allow_nondistributable=self.allow_nondistributable or allow_nondistributable)
        given = dict(self.registry_numbers)
        for key, (var, conv) in _NUMBERS.items():
            if var in given:
                try:
                    opts = replace(opts, **{key: conv(given[var])})
                except ValueError:
                    raise RegistryError(f"invalid {var}={given[var]!r}: expected a number") from None
        return opts

    def credentials(self) -> CredentialStore:
        """Docker's credentials file: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
        from polyarch.registry.credentials import CredentialStore, config_path

        return CredentialStore(config_path(self.docker_config))
