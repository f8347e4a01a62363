"""The image configuration a stage accumulates: a small mutable builder, private to the frontend, that turns
into a frozen ``polyarch.oci.spec.ImageConfig`` (``freeze``). History strings follow BuildKit's."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from polyarch.oci.spec import ContainerConfig, History, ImageConfig
from polyarch.platform import Platform

__all__ = ["DEFAULT_PATH", "DEFAULT_SHELL", "HISTORY_COMMENT", "ConfigState", "go_quote_list"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")
HISTORY_COMMENT = "buildkit.dockerfile.v0"


def go_quote_list(items: Sequence[str]) -> str:
    """Go's ``%q`` of a []string: ``["a" "b c"]``."""
    return "[" + " ".join(json.dumps(i, ensure_ascii=False) for i in items) + "]"


class ConfigState:
    """Mutable while one stage is dispatched; ``freeze`` gives the value."""

    def __init__(self, base: ImageConfig | None, platform: Platform) -> None:
        cc = base.config if base is not None else ContainerConfig()
        self.platform = platform
        self.env: dict[str, str] = {}
        for item in cc.env:
            k, _, v = item.partition("=")
            self.env[k] = v
        if "PATH" not in self.env:
            self.env["PATH"] = DEFAULT_PATH
        self.user = cc.user
        self.workdir = cc.working_dir
        self.cmd: tuple[str, ...] | None = cc.cmd
        self.entrypoint: tuple[str, ...] | None = cc.entrypoint
        self.labels: dict[str, str] = dict(cc.labels)
        self.ports: list[str] = list(cc.exposed_ports)
        self.volumes: list[str] = list(cc.volumes)
        self.stop_signal = cc.stop_signal
        self.healthcheck: Mapping[str, Any] | None = cc.healthcheck
        self.shell: tuple[str, ...] = cc.shell
        self.base_onbuild: tuple[str, ...] = cc.on_build
        self.onbuild: list[str] = []
        self.author = base.author if base is not None else ""
        self.history: list[History] = list(base.history) if base is not None else []
        self.diff_ids = base.diff_ids if base is not None else ()
        self.extra: Mapping[str, Any] = {}

    def copy(self) -> ConfigState:
        new = ConfigState.__new__(ConfigState)
        for key, value in self.__dict__.items():
            setattr(new, key, value.copy() if isinstance(value, dict | list) else value)
        new.onbuild = []  # a child stage starts with no ONBUILD of its own (BuildKit resets it)
        new.base_onbuild = ()
        return new

    def env_list(self) -> tuple[str, ...]:
        return tuple(f"{k}={v}" for k, v in self.env.items())

    def add_history(self, created_by: str, *, layer: bool) -> History:
        entry = History(created_by=created_by, comment=HISTORY_COMMENT, empty_layer=not layer)
        self.history.append(entry)
        return entry

    def freeze(self) -> ImageConfig:
        cc = ContainerConfig(
            user=self.user,
            exposed_ports=tuple(self.ports),
            env=self.env_list(),
            entrypoint=self.entrypoint,
            cmd=self.cmd,
            volumes=tuple(self.volumes),
            working_dir=self.workdir,
            labels=dict(self.labels),
            stop_signal=self.stop_signal,
            healthcheck=dict(self.healthcheck) if self.healthcheck is not None else None,
            on_build=tuple(self.onbuild),
            shell=self.shell,
        )
        p = self.platform
        cfg = ImageConfig(architecture=p.architecture, os=p.os, variant=p.variant, author=self.author,
                          config=cc, diff_ids=self.diff_ids, history=tuple(self.history))
        return replace(cfg, extra=dict(self.extra)) if self.extra else cfg
