"""RUN: the argument vector (shell form, exec form, heredocs), the mounts (``--mount=``), the environment, and the
``Exec`` vertex — a pure function ``(StageState, Run) → StageState``."""

from __future__ import annotations

from dataclasses import replace

from polyarch import ops
from polyarch.errors import ParseError
from polyarch.frontend.convert.heredocs import heredoc_file
from polyarch.frontend.convert.imageconfig import DEFAULT_SHELL
from polyarch.frontend.convert.state import StageState, desc, error, expand, layer_step, reference
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.dockerfile.mounts import parse_mount, resolve_target

__all__ = ["run", "run_args", "run_env"]


def run_args(st: StageState, inst: ins.Run) -> tuple[tuple[str, ...], tuple[ops.ExecMount, ...]]:
    """The argv of a RUN and the extra mounts a heredoc script needs.

    Shell form → ``SHELL + [script]``, not expanded (the shell does that). ``RUN <<EOF`` alone → the body is the
    script (a body starting with ``#!`` is written, not expanded, to a file named by the heredoc in its own
    scratch tree, mounted read-only at ``/dev/pipes/`` and executed). A command with heredocs → the shell gets
    the command line followed by the heredoc bodies, as a shell heredoc.
    """
    cmd = inst.command
    if not cmd.shell_form:
        return cmd.args, ()
    shell = st.cfg.shell or DEFAULT_SHELL
    script = cmd.args[0]
    if not inst.heredocs:
        return (*shell, script), ()
    if len(inst.heredocs) == 1 and script.strip() == inst.heredocs[0].word:
        h = inst.heredocs[0]
        if h.content.startswith("#!"):
            name = heredoc_file(st, inst, h)
            files = ops.InlineFiles(files=(ops.InlineFile(name, h.content, 0o755),))
            target = f"/dev/pipes/{name}"
            return (target,), (ops.ExecMount("bind", target=target, source=files, selector=name, readonly=True),)
        return (*shell, h.content), ()
    body = script + "\n" + "".join(h.content + h.name + "\n" for h in inst.heredocs)
    return (*shell, body.rstrip("\n")), ()


def run_env(st: StageState) -> tuple[tuple[str, ...], list[str]]:
    """The environment of a RUN (ENV, then ARGs not shadowed by it) and the ARG part shown in its history."""
    env = list(st.cfg.env_list())
    shown = []
    for k, v in st.args.items():
        if v is not None and k not in st.cfg.env:
            env.append(f"{k}={v}")
            shown.append(f"{k}={v}")
    return tuple(env), shown


def _mount(st: StageState, inst: ins.Run, spec: str, index: int) -> tuple[ops.ExecMount, StageState]:
    """One ``--mount``: each option's value expanded in the stage scope, then validated (BuildKit's order); the
    target resolved against the working directory."""
    box = [st]

    def expand_value(value: str) -> str:
        out, box[0] = expand(box[0], value, inst.src)
        return out

    try:
        m = parse_mount(spec, expand_value, ssh_index=index)
        target = m.target if m.type in ("secret", "ssh") else resolve_target(m.target, st.cfg.workdir)
    except ParseError as exc:
        if exc.span is not None:
            raise
        raise error(box[0], inst, f"--mount: {exc.message}", spec) from None
    st = box[0]
    source: ops.Vertex | None = None
    if m.from_:
        source, tainted, st = reference(st, m.from_, inst)
        if tainted and not st.inst_tainted:
            st = replace(st, inst_tainted=True)
    elif m.type == "bind":
        source = st.ctx.inputs.context
    capture = st.progress.capture.mount(m.type, m.id, m.required, inst.src.start_line)
    if capture is not st.progress.capture:
        st = replace(st, progress=st.progress.with_capture(capture))
    return ops.ExecMount(type=m.type, target=target, source=source, selector=m.source, readonly=m.readonly,
                         id=m.id, sharing=m.sharing, mode=m.mode, uid=m.uid, gid=m.gid, required=m.required,
                         env=m.env, size=m.size), st


def run(st: StageState, inst: ins.Run) -> StageState:
    capture = st.progress.capture.use(k for k, v in st.args.items() if v is not None)
    if capture is not st.progress.capture:
        st = replace(st, progress=st.progress.with_capture(capture))
    args, extra = run_args(st, inst)
    mounts = list(extra)
    for i, raw in enumerate(inst.mounts):
        mount, st = _mount(st, inst, raw, i)
        mounts.append(mount)
    env, shown = run_env(st)
    tainted = st.tainted or st.config_tainted or st.inst_tainted
    vertex = ops.Exec(root=st.vertex, args=args, env=env, cwd=st.cfg.workdir or "/", user=st.cfg.user,
                      network=inst.network or "default", security=inst.security or "sandbox",
                      mounts=tuple(mounts), platform=st.platform, options=st.ctx.inputs.run_options,
                      emulated=not st.ctx.inputs.is_native(st.platform), description=desc(st, inst))
    prefix = f"|{len(shown)} " + " ".join(shown) + " " if shown else ""
    return layer_step(st, inst, vertex, "RUN " + prefix + " ".join(args), tainted=tainted)
