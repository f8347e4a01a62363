"""Config-only instructions (ENV, ARG, LABEL, USER, EXPOSE, VOLUME, STOPSIGNAL, CMD, ENTRYPOINT, SHELL,
HEALTHCHECK, ONBUILD, MAINTAINER) and WORKDIR: they change the image config carried along a stage and add a
history entry; WORKDIR also adds a ``Mkdir`` vertex. Plain functions of the ``dispatch.StageDispatch`` they serve."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from polyarch import ops
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.imageconfig import DEFAULT_SHELL, go_quote_list
from polyarch.frontend.scope import TARGET_ARGS

if TYPE_CHECKING:
    from polyarch.frontend.dispatch import StageDispatch

__all__ = ["CONFIG_HANDLERS", "Handler", "numeric_user"]

Handler = Callable[["StageDispatch", Any, int], "tuple[ops.Vertex | None, object]"]

_PORT_RE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/([A-Za-z]+))?$")
_SIGNAL_RE = re.compile(r"^(?:SIG)?[A-Z][A-Z0-9+-]*$|^\d+$")


def numeric_user(user: str) -> bool:
    return all(part.isdigit() for part in user.split(":"))


def env(sd: StageDispatch, inst: ins.Env, number: int) -> tuple[None, object]:
    scope = sd.scope()
    pairs = [(sd.x(p.key, inst.src, scope), sd.x(p.value, inst.src, scope)) for p in inst.pairs]
    for key, value in pairs:
        sd.cfg.env[key] = value
    sd._scope = None
    sd.config_tainted |= sd.inst_tainted
    return sd._config("ENV " + " ".join(f"{k}={v}" for k, v in pairs))

def arg(sd: StageDispatch, inst: ins.Arg, number: int) -> tuple[None, object]:
    """Declare build args for the stage; history gets ``ARG NAME[=default as written]``."""
    shown = []
    for decl in inst.args:
        if decl.name in sd.ctx.build_args:
            value: str | None = sd.ctx.build_args[decl.name]
        elif decl.default is not None:
            sd.inst_tainted = False
            value = sd.x(decl.default, inst.src)
            if sd.inst_tainted:
                sd.tainted_args.add(decl.name)
        elif decl.name in sd.pd.global_declared:
            value = sd.pd.global_env.get(decl.name)
            if decl.name in sd.pd.global_tainted:
                sd.tainted_args.add(decl.name)
        else:
            value = sd.pd.auto.get(decl.name)
            if decl.name in TARGET_ARGS:
                sd.tainted_args.add(decl.name)
        sd.args[decl.name] = value
        sd._scope = None
        sd.ctx.capture.declare(decl.name, value, inst.comments, inst.src.start_line)
        shown.append(decl.name if decl.default is None else f"{decl.name}={decl.default}")
    if any(d.name in sd.tainted_args for d in inst.args):
        sd.config_tainted = True
    # the history line is the declaration as written (Docker's classic builder): a --build-arg value, or a default
    # expanded from one, never reaches it (BuildKit writes the value here; RUN lines show it in both, see _run)
    return sd._config("ARG " + " ".join(shown))

def label(sd: StageDispatch, inst: ins.Label, number: int) -> tuple[None, object]:
    scope = sd.scope()
    pairs = [(sd.x(p.key, inst.src, scope), sd.x(p.value, inst.src, scope)) for p in inst.pairs]
    sd.cfg.labels.update(pairs)
    return sd._config("LABEL " + " ".join(f"{k}={v}" for k, v in pairs))

def workdir(sd: StageDispatch, inst: ins.Workdir, number: int) -> tuple[ops.Vertex | None, object]:
    path = sd.x(inst.path, inst.src)
    if not path.startswith("/"):
        path = posixpath.join(sd.cfg.workdir or "/", path)
    path = posixpath.normpath(path)
    path = "/" + path.lstrip("/")
    sd.cfg.workdir = path
    sd.config_tainted |= sd.inst_tainted
    sd.workdir_tainted = sd.inst_tainted or (sd.workdir_tainted and not inst.path.startswith("/"))
    if path == "/":
        return sd._config("WORKDIR /")
    user = sd.cfg.user
    independent = not (sd.workdir_tainted or sd.user_tainted
                       or (user and not numeric_user(user) and sd.tainted))
    vertex = ops.Mkdir(root=sd.vertex, path=path, chown=user, platform_independent=independent,
                       description=sd.desc(number, inst))
    return sd._layer(vertex, "WORKDIR " + path, suffix=False)

def user(sd: StageDispatch, inst: ins.User, number: int) -> tuple[None, object]:
    sd.cfg.user = sd.x(inst.user, inst.src)
    sd.config_tainted |= sd.inst_tainted
    sd.user_tainted = sd.inst_tainted
    return sd._config("USER " + sd.cfg.user)

def expose(sd: StageDispatch, inst: ins.Expose, number: int) -> tuple[None, object]:
    words = sd.xs(" ".join(inst.ports), inst.src)
    for word in words:
        m = _PORT_RE.match(word)
        if not m or (m.group(3) and m.group(3).lower() not in ("tcp", "udp", "sctp")):
            raise sd.error(inst, f"invalid containerPort: {word}", word)
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if last < first or last > 65535:
            raise sd.error(inst, f"invalid port range: {word}", word)
        proto = (m.group(3) or "tcp").lower()
        for port in range(first, last + 1):
            spec = f"{port}/{proto}"
            if spec not in sd.cfg.ports:
                sd.cfg.ports.append(spec)
    return sd._config("EXPOSE " + " ".join(words))

def volume(sd: StageDispatch, inst: ins.Volume, number: int) -> tuple[None, object]:
    paths = [sd.x(p, inst.src) if not inst.json_form else p for p in inst.paths]
    for p in paths:
        if not p.strip():
            raise sd.error(inst, "VOLUME specified can not be an empty string")
        if p not in sd.cfg.volumes:
            sd.cfg.volumes.append(p)
    return sd._config("VOLUME [" + " ".join(paths) + "]")

def stopsignal(sd: StageDispatch, inst: ins.StopSignal, number: int) -> tuple[None, object]:
    sig = sd.x(inst.signal, inst.src)
    if not _SIGNAL_RE.match(sig):
        raise sd.error(inst, f"invalid signal: {sig}", inst.signal)
    sd.cfg.stop_signal = sig
    return sd._config("STOPSIGNAL " + sig)

def _command(sd: StageDispatch, cmd: ins.Command) -> tuple[str, ...]:
    if cmd.shell_form:
        return (*(sd.cfg.shell or DEFAULT_SHELL), cmd.args[0])
    return cmd.args

def cmd(sd: StageDispatch, inst: ins.Cmd, number: int) -> tuple[None, object]:
    sd.cfg.cmd = _command(sd, inst.command)
    sd.cmd_set = True
    return sd._config("CMD " + go_quote_list(sd.cfg.cmd))

def entrypoint(sd: StageDispatch, inst: ins.Entrypoint, number: int) -> tuple[None, object]:
    sd.cfg.entrypoint = _command(sd, inst.command)
    if not sd.cmd_set:
        sd.cfg.cmd = None
    return sd._config("ENTRYPOINT " + go_quote_list(sd.cfg.entrypoint))

def shell(sd: StageDispatch, inst: ins.Shell, number: int) -> tuple[None, object]:
    sd.cfg.shell = inst.shell
    return sd._config("SHELL [" + " ".join(inst.shell) + "]")

def healthcheck(sd: StageDispatch, inst: ins.Healthcheck, number: int) -> tuple[None, object]:
    hc: dict[str, object] = {"Test": list(inst.test)}
    for key, value in (("Interval", inst.interval), ("Timeout", inst.timeout),
                       ("StartPeriod", inst.start_period), ("StartInterval", inst.start_interval),
                       ("Retries", inst.retries)):
        if value:
            hc[key] = value
    sd.cfg.healthcheck = hc
    return sd._config("HEALTHCHECK " + inst.src.original[len(inst.src.keyword):].strip())

def onbuild(sd: StageDispatch, inst: ins.Onbuild, number: int) -> tuple[None, object]:
    sd.cfg.onbuild.append(inst.expression)
    return sd._config("ONBUILD " + inst.expression)

def maintainer(sd: StageDispatch, inst: ins.Maintainer, number: int) -> tuple[None, object]:
    sd.cfg.author = inst.maintainer
    return sd._config("MAINTAINER " + inst.maintainer)


CONFIG_HANDLERS: dict[type, Handler] = {
    ins.Env: env,
    ins.Arg: arg,
    ins.Label: label,
    ins.Workdir: workdir,
    ins.User: user,
    ins.Expose: expose,
    ins.Volume: volume,
    ins.StopSignal: stopsignal,
    ins.Cmd: cmd,
    ins.Entrypoint: entrypoint,
    ins.Shell: shell,
    ins.Healthcheck: healthcheck,
    ins.Onbuild: onbuild,
    ins.Maintainer: maintainer,
}
