"""The image configuration a stage accumulates, as a frozen value (``ConfigState``): each instruction makes a new
one (``dataclasses.replace``); ``freeze`` gives the ``polyarch.oci.spec.ImageConfig``. History strings follow
BuildKit's."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from polyarch.oci.spec import ContainerConfig, History, ImageConfig
from polyarch.platform import Platform

__all__ = ["DEFAULT_PATH", "DEFAULT_SHELL", "HISTORY_COMMENT", "ConfigState", "go_quote_list", "history_entry"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")
HISTORY_COMMENT = "buildkit.dockerfile.v0"


def go_quote_list(items: Sequence[str]) -> str:
    """Go's ``%q`` of a []string: ``["a" "b c"]``."""
    return "[" + " ".join(json.dumps(i, ensure_ascii=False) for i in items) + "]"


def history_entry(created_by: str, *, layer: bool) -> History:
    """One history entry as BuildKit writes it (``empty_layer`` for config-only instructions)."""
    return History(created_by=created_by, comment=HISTORY_COMMENT, empty_layer=not layer)


@dataclass(frozen=True, slots=True)
class ConfigState:
    """The run-time config of a stage so far (its history is kept beside it, see ``freeze``). ``env`` and ``labels`` are dicts built for this value
    and never changed after (insertion order is the image's order); every other field is immutable."""

    platform: Platform
    env: Mapping[str, str]
    user: str
    workdir: str
    cmd: tuple[str, ...] | None
    entrypoint: tuple[str, ...] | None
    labels: Mapping[str, str]
    ports: tuple[str, ...]
    volumes: tuple[str, ...]
    stop_signal: str
    healthcheck: Mapping[str, Any] | None
    shell: tuple[str, ...]
    base_onbuild: tuple[str, ...]  # the base image's (or parent stage's) ONBUILD triggers, run after FROM
    onbuild: tuple[str, ...]  # this stage's own ONBUILD instructions
    author: str
    diff_ids: tuple[str, ...]  # the base image's

    @classmethod
    def start(cls, base: ImageConfig | None, platform: Platform) -> ConfigState:
        """The config a stage starts with: the base image's (or an empty one), PATH defaulted."""
        cc = base.config if base is not None else ContainerConfig()
        env: dict[str, str] = {}
        for item in cc.env:
            k, _, v = item.partition("=")
            env[k] = v
        if "PATH" not in env:
            env["PATH"] = DEFAULT_PATH
        return cls(platform=platform, env=env, user=cc.user, workdir=cc.working_dir, cmd=cc.cmd,
                   entrypoint=cc.entrypoint, labels=dict(cc.labels), ports=tuple(cc.exposed_ports),
                   volumes=tuple(cc.volumes), stop_signal=cc.stop_signal, healthcheck=cc.healthcheck,
                   shell=cc.shell, base_onbuild=cc.on_build, onbuild=(),
                   author=base.author if base is not None else "",
                   diff_ids=base.diff_ids if base is not None else ())

    def child(self) -> ConfigState:
        """The config of a stage built ``FROM`` this one: no ONBUILD of its own (BuildKit resets it); this
        stage's ONBUILD instructions become the child's triggers."""
        return replace(self, base_onbuild=self.onbuild, onbuild=())

    def env_list(self) -> tuple[str, ...]:
        return tuple(f"{k}={v}" for k, v in self.env.items())

    def freeze(self, history: tuple[History, ...]) -> ImageConfig:
        cc = ContainerConfig(
            user=self.user,
            exposed_ports=self.ports,
            env=self.env_list(),
            entrypoint=self.entrypoint,
            cmd=self.cmd,
            volumes=self.volumes,
            working_dir=self.workdir,
            labels=dict(self.labels),
            stop_signal=self.stop_signal,
            healthcheck=dict(self.healthcheck) if self.healthcheck is not None else None,
            on_build=self.onbuild,
            shell=self.shell,
        )
        p = self.platform
        return ImageConfig(architecture=p.architecture, os=p.os, variant=p.variant, author=self.author,
                           config=cc, diff_ids=self.diff_ids, history=history)
