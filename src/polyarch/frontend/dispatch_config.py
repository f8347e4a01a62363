"""Config-only instructions (ENV, ARG, LABEL, USER, EXPOSE, VOLUME, STOPSIGNAL, CMD, ENTRYPOINT, SHELL,
HEALTHCHECK, ONBUILD, MAINTAINER) and WORKDIR: they change the image config carried along a stage and add a
history entry; WORKDIR also adds a ``Mkdir`` vertex. Mixed into ``dispatch.StageDispatch``."""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING

from polyarch import ops
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.imageconfig import DEFAULT_SHELL, go_quote_list
from polyarch.frontend.scope import TARGET_ARGS

if TYPE_CHECKING:
    from polyarch.frontend.dispatch import StageDispatch

__all__ = ["ConfigHandlers", "numeric_user"]

_PORT_RE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/([A-Za-z]+))?$")
_SIGNAL_RE = re.compile(r"^(?:SIG)?[A-Z][A-Z0-9+-]*$|^\d+$")


def numeric_user(user: str) -> bool:
    return all(part.isdigit() for part in user.split(":"))


class ConfigHandlers:
    """Handlers named ``_<instruction>``; ``self`` is the ``StageDispatch`` they are mixed into."""

    def _env(self: StageDispatch, inst: ins.Env, number: int) -> tuple[None, object]:
        scope = self.scope()
        pairs = [(self.x(p.key, inst.src, scope), self.x(p.value, inst.src, scope)) for p in inst.pairs]
        for key, value in pairs:
            self.cfg.env[key] = value
        self._scope = None
        self.config_tainted |= self.inst_tainted
        return self._config("ENV " + " ".join(f"{k}={v}" for k, v in pairs))

    def _arg(self: StageDispatch, inst: ins.Arg, number: int) -> tuple[None, object]:
        shown = []
        for decl in inst.args:
            if decl.name in self.ctx.build_args:
                value: str | None = self.ctx.build_args[decl.name]
            elif decl.default is not None:
                self.inst_tainted = False
                value = self.x(decl.default, inst.src)
                if self.inst_tainted:
                    self.tainted_args.add(decl.name)
            elif decl.name in self.pd.global_declared:
                value = self.pd.global_env.get(decl.name)
                if decl.name in self.pd.global_tainted:
                    self.tainted_args.add(decl.name)
            else:
                value = self.pd.auto.get(decl.name)
                if decl.name in TARGET_ARGS:
                    self.tainted_args.add(decl.name)
            self.args[decl.name] = value
            self._scope = None
            self.ctx.capture.declare(decl.name, value, inst.comments, inst.src.start_line)
            shown.append(decl.name if value is None else f"{decl.name}={value}")
        if any(d.name in self.tainted_args for d in inst.args):
            self.config_tainted = True
        return self._config("ARG " + " ".join(shown))

    def _label(self: StageDispatch, inst: ins.Label, number: int) -> tuple[None, object]:
        scope = self.scope()
        pairs = [(self.x(p.key, inst.src, scope), self.x(p.value, inst.src, scope)) for p in inst.pairs]
        self.cfg.labels.update(pairs)
        return self._config("LABEL " + " ".join(f"{k}={v}" for k, v in pairs))

    def _workdir(self: StageDispatch, inst: ins.Workdir, number: int) -> tuple[ops.Vertex | None, object]:
        path = self.x(inst.path, inst.src)
        if not path.startswith("/"):
            path = posixpath.join(self.cfg.workdir or "/", path)
        path = posixpath.normpath(path)
        path = "/" + path.lstrip("/")
        self.cfg.workdir = path
        self.config_tainted |= self.inst_tainted
        self.workdir_tainted = self.inst_tainted or (self.workdir_tainted and not inst.path.startswith("/"))
        if path == "/":
            return self._config("WORKDIR /")
        user = self.cfg.user
        independent = not (self.workdir_tainted or self.user_tainted
                           or (user and not numeric_user(user) and self.tainted))
        vertex = ops.Mkdir(root=self.vertex, path=path, chown=user, platform_independent=independent,
                           description=self.desc(number, inst))
        return self._layer(vertex, "WORKDIR " + path, suffix=False)

    def _user(self: StageDispatch, inst: ins.User, number: int) -> tuple[None, object]:
        self.cfg.user = self.x(inst.user, inst.src)
        self.config_tainted |= self.inst_tainted
        self.user_tainted = self.inst_tainted
        return self._config("USER " + self.cfg.user)

    def _expose(self: StageDispatch, inst: ins.Expose, number: int) -> tuple[None, object]:
        words = self.xs(" ".join(inst.ports), inst.src)
        for word in words:
            m = _PORT_RE.match(word)
            if not m or (m.group(3) and m.group(3).lower() not in ("tcp", "udp", "sctp")):
                raise self.error(inst, f"invalid containerPort: {word}", word)
            first, last = int(m.group(1)), int(m.group(2) or m.group(1))
            if last < first or last > 65535:
                raise self.error(inst, f"invalid port range: {word}", word)
            proto = (m.group(3) or "tcp").lower()
            for port in range(first, last + 1):
                spec = f"{port}/{proto}"
                if spec not in self.cfg.ports:
                    self.cfg.ports.append(spec)
        return self._config("EXPOSE " + " ".join(words))

    def _volume(self: StageDispatch, inst: ins.Volume, number: int) -> tuple[None, object]:
        paths = [self.x(p, inst.src) if not inst.json_form else p for p in inst.paths]
        for p in paths:
            if not p.strip():
                raise self.error(inst, "VOLUME specified can not be an empty string")
            if p not in self.cfg.volumes:
                self.cfg.volumes.append(p)
        return self._config("VOLUME [" + " ".join(paths) + "]")

    def _stopsignal(self: StageDispatch, inst: ins.StopSignal, number: int) -> tuple[None, object]:
        sig = self.x(inst.signal, inst.src)
        if not _SIGNAL_RE.match(sig):
            raise self.error(inst, f"invalid signal: {sig}", inst.signal)
        self.cfg.stop_signal = sig
        return self._config("STOPSIGNAL " + sig)

    def _command(self: StageDispatch, cmd: ins.Command) -> tuple[str, ...]:
        if cmd.shell_form:
            return (*(self.cfg.shell or DEFAULT_SHELL), cmd.args[0])
        return cmd.args

    def _cmd(self: StageDispatch, inst: ins.Cmd, number: int) -> tuple[None, object]:
        self.cfg.cmd = self._command(inst.command)
        self.cmd_set = True
        return self._config("CMD " + go_quote_list(self.cfg.cmd))

    def _entrypoint(self: StageDispatch, inst: ins.Entrypoint, number: int) -> tuple[None, object]:
        self.cfg.entrypoint = self._command(inst.command)
        if not self.cmd_set:
            self.cfg.cmd = None
        return self._config("ENTRYPOINT " + go_quote_list(self.cfg.entrypoint))

    def _shell(self: StageDispatch, inst: ins.Shell, number: int) -> tuple[None, object]:
        self.cfg.shell = inst.shell
        return self._config("SHELL [" + " ".join(inst.shell) + "]")

    def _healthcheck(self: StageDispatch, inst: ins.Healthcheck, number: int) -> tuple[None, object]:
        hc: dict[str, object] = {"Test": list(inst.test)}
        for key, value in (("Interval", inst.interval), ("Timeout", inst.timeout),
                           ("StartPeriod", inst.start_period), ("StartInterval", inst.start_interval),
                           ("Retries", inst.retries)):
            if value:
                hc[key] = value
        self.cfg.healthcheck = hc
        return self._config("HEALTHCHECK " + inst.src.original[len(inst.src.keyword):].strip())

    def _onbuild(self: StageDispatch, inst: ins.Onbuild, number: int) -> tuple[None, object]:
        self.cfg.onbuild.append(inst.expression)
        return self._config("ONBUILD " + inst.expression)

    def _maintainer(self: StageDispatch, inst: ins.Maintainer, number: int) -> tuple[None, object]:
        self.cfg.author = inst.maintainer
        return self._config("MAINTAINER " + inst.maintainer)
