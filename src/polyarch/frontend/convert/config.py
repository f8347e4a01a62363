"""Config-only instructions (ENV, LABEL, USER, EXPOSE, VOLUME, STOPSIGNAL, CMD, ENTRYPOINT, SHELL, HEALTHCHECK,
ONBUILD, MAINTAINER) and WORKDIR: each is a pure function ``(StageState, instruction) → StageState`` that changes
the image config and adds a history entry; WORKDIR also adds a ``Mkdir`` vertex."""

from __future__ import annotations

import posixpath
import re

from polyarch import ops
from polyarch.frontend.convert.imageconfig import DEFAULT_SHELL, go_quote_list
from polyarch.frontend.convert.state import (
    StageState,
    config_step,
    desc,
    error,
    expand,
    expand_list,
    layer_step,
    variables,
)
from polyarch.frontend.dockerfile import instructions as ins

__all__ = [
    "cmd", "entrypoint", "env", "expose", "healthcheck", "label", "maintainer", "numeric_user", "onbuild", "shell",
    "stopsignal", "user", "volume", "workdir",
]

_PORT_RE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/([A-Za-z]+))?$")
_SIGNAL_RE = re.compile(r"^(?:SIG)?[A-Z][A-Z0-9+-]*$|^\d+$")


def numeric_user(user: str) -> bool:
    return all(part.isdigit() for part in user.split(":"))


def _pairs(st: StageState, inst: ins.Env | ins.Label) -> tuple[list[tuple[str, str]], StageState]:
    """Expand every key and value in the scope as it was before the instruction."""
    scope = st.variables
    pairs = []
    for p in inst.pairs:
        key, st = expand(st, p.key, inst.src, scope)
        value, st = expand(st, p.value, inst.src, scope)
        pairs.append((key, value))
    return pairs, st


def env(st: StageState, inst: ins.Env) -> StageState:
    pairs, st = _pairs(st, inst)
    new_env = dict(st.cfg.env)
    new_env.update(pairs)
    return config_step(st, inst, "ENV " + " ".join(f"{k}={v}" for k, v in pairs), {"env": new_env},
                       variables=variables(st.args, new_env), config_tainted=st.config_tainted or st.inst_tainted)


def label(st: StageState, inst: ins.Label) -> StageState:
    pairs, st = _pairs(st, inst)
    labels = dict(st.cfg.labels)
    labels.update(pairs)
    return config_step(st, inst, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs), {"labels": labels})


def workdir(st: StageState, inst: ins.Workdir) -> StageState:
    path, st = expand(st, inst.path, inst.src)
    if not path.startswith("/"):
        path = posixpath.join(st.cfg.workdir or "/", path)
    path = posixpath.normpath(path)
    path = "/" + path.lstrip("/")
    config_tainted = st.config_tainted or st.inst_tainted
    workdir_tainted = st.inst_tainted or (st.workdir_tainted and not inst.path.startswith("/"))
    if path == "/":
        return config_step(st, inst, "WORKDIR /", {"workdir": path}, config_tainted=config_tainted,
                           workdir_tainted=workdir_tainted)
    user = st.cfg.user
    independent = not (workdir_tainted or st.user_tainted
                       or (user and not numeric_user(user) and st.tainted))
    vertex = ops.Mkdir(root=st.vertex, path=path, chown=user, platform_independent=independent,
                       description=desc(st, inst))
    return layer_step(st, inst, vertex, "WORKDIR " + path, suffix=False, cfg={"workdir": path},
                      config_tainted=config_tainted, workdir_tainted=workdir_tainted)


def user(st: StageState, inst: ins.User) -> StageState:
    name, st = expand(st, inst.user, inst.src)
    return config_step(st, inst, "USER " + name, {"user": name}, config_tainted=st.config_tainted or st.inst_tainted,
                       user_tainted=st.inst_tainted)


def expose(st: StageState, inst: ins.Expose) -> StageState:
    words, st = expand_list(st, " ".join(inst.ports), inst.src)
    ports = list(st.cfg.ports)
    for word in words:
        # [ip:][hostPort:]containerPort[/proto]: only the container port is exposed (--check warns about the rest)
        proto_sep = word.rfind("/")
        port_part = word if proto_sep < 0 else word[:proto_sep]
        m = _PORT_RE.match(port_part.rsplit(":", 1)[-1] + word[len(port_part):])
        if not m or (m.group(3) and m.group(3).lower() not in ("tcp", "udp", "sctp")):
            raise error(st, inst, f"invalid containerPort: {word}", word)
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if last < first or last > 65535:
            raise error(st, inst, f"invalid port range: {word}", word)
        proto = (m.group(3) or "tcp").lower()
        for port in range(first, last + 1):
            spec = f"{port}/{proto}"
            if spec not in ports:
                ports.append(spec)
    return config_step(st, inst, "EXPOSE " + " ".join(words), {"ports": tuple(ports)})


def volume(st: StageState, inst: ins.Volume) -> StageState:
    paths = []
    for p in inst.paths:
        if not inst.json_form:
            p, st = expand(st, p, inst.src)
        paths.append(p)
    volumes = list(st.cfg.volumes)
    for p in paths:
        if not p.strip():
            raise error(st, inst, "VOLUME specified can not be an empty string")
        if p not in volumes:
            volumes.append(p)
    return config_step(st, inst, "VOLUME [" + " ".join(paths) + "]", {"volumes": tuple(volumes)})


def stopsignal(st: StageState, inst: ins.StopSignal) -> StageState:
    sig, st = expand(st, inst.signal, inst.src)
    if not _SIGNAL_RE.match(sig):
        raise error(st, inst, f"invalid signal: {sig}", inst.signal)
    return config_step(st, inst, "STOPSIGNAL " + sig, {"stop_signal": sig})


def _command(st: StageState, command: ins.Command) -> tuple[str, ...]:
    if command.shell_form:
        return (*(st.cfg.shell or DEFAULT_SHELL), command.args[0])
    return command.args


def cmd(st: StageState, inst: ins.Cmd) -> StageState:
    value = _command(st, inst.command)
    return config_step(st, inst, "CMD " + go_quote_list(value), {"cmd": value}, cmd_set=True)


def entrypoint(st: StageState, inst: ins.Entrypoint) -> StageState:
    value = _command(st, inst.command)
    return config_step(st, inst, "ENTRYPOINT " + go_quote_list(value),
                       {"entrypoint": value, "cmd": st.cfg.cmd if st.cmd_set else None})


def shell(st: StageState, inst: ins.Shell) -> StageState:
    return config_step(st, inst, "SHELL [" + " ".join(inst.shell) + "]", {"shell": inst.shell})


def healthcheck(st: StageState, inst: ins.Healthcheck) -> StageState:
    hc: dict[str, object] = {"Test": list(inst.test)}
    for key, value in (("Interval", inst.interval), ("Timeout", inst.timeout),
                       ("StartPeriod", inst.start_period), ("StartInterval", inst.start_interval),
                       ("Retries", inst.retries)):
        if value:
            hc[key] = value
    return config_step(st, inst, "HEALTHCHECK " + inst.src.original[len(inst.src.keyword):].strip(),
                       {"healthcheck": hc})


def onbuild(st: StageState, inst: ins.Onbuild) -> StageState:
    return config_step(st, inst, "ONBUILD " + inst.expression, {"onbuild": (*st.cfg.onbuild, inst.expression)})


def maintainer(st: StageState, inst: ins.Maintainer) -> StageState:
    return config_step(st, inst, "MAINTAINER " + inst.maintainer, {"author": inst.maintainer})
