"""Adapter: the solver's ``ExecRunner`` seam → the worker's runc ``Runner`` (``polyarch.worker.runc``).

Maps an ``ops.Exec`` and the host paths of its mounted inputs to a ``StepSpec`` with worker mount values; a
non-zero exit becomes ``BuildError("process did not complete successfully: exit code: N")`` (the solver adds
platform, stage, instruction and Dockerfile line). Secret values and ssh sockets come from the command line
(``--secret``/``--ssh``), never from the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from polyarch import ops
from polyarch.errors import BuildError
from polyarch.solver.executor import ExecRunner

__all__ = ["make_runner"]


def _mounts(vertex: ops.Exec, sources: Mapping[int, Path]) -> tuple[object, ...]:
    from polyarch.worker import mounts as wm

    out: list[object] = []
    for i, m in enumerate(vertex.mounts):
        if m.type == "bind":
            src = sources.get(i)
            if src is None:
                raise BuildError(f"RUN --mount=type=bind,target={m.target}: no source")
            out.append(wm.BindMount(m.target, src, readwrite=not m.readonly))
        elif m.type == "cache":
            out.append(wm.CacheMount(m.target, m.id, m.sharing or "shared",
                                     0o755 if m.mode is None else m.mode, m.uid or 0, m.gid or 0, m.readonly))
        elif m.type == "tmpfs":
            out.append(wm.TmpfsMount(m.target, m.size))
        elif m.type == "secret":
            out.append(wm.SecretMount(m.id, m.target, m.env, m.required, 0o400 if m.mode is None else m.mode,
                                      m.uid or 0, m.gid or 0))
        elif m.type == "ssh":
            out.append(wm.SshMount(m.id or "default", m.target, m.required, 0o600 if m.mode is None else m.mode,
                                   m.uid or 0, m.gid or 0))
        else:
            raise BuildError(f"unknown RUN --mount type {m.type!r}")
    return tuple(out)


def make_runner(store_root: Path, *, secrets: Mapping[str, bytes] | None = None,
                ssh: Mapping[str, str] | None = None) -> ExecRunner:
    """A runner bound to ``store_root``; the runtime binary is looked up on first use."""
    from polyarch.worker.runc import Runner, StepContext, StepSpec

    holder: list[Runner] = []

    def run(vertex: ops.Exec, rootfs: Path, sources: Mapping[int, Path], on_output: Callable[[str], None]) -> None:
        if not holder:
            holder.append(Runner(store_root))
        spec = StepSpec(args=vertex.args, context=StepContext(vertex.platform), env=vertex.env, user=vertex.user,
                        workdir=vertex.cwd or "/", network=vertex.network,
                        mounts=_mounts(vertex, sources))  # type: ignore[arg-type]
        try:
            holder[0].run(rootfs, spec, on_output, secrets=secrets or {}, ssh=ssh or {})
        except BuildError as exc:
            code = getattr(exc, "step_exit_code", None)
            if code is None:
                raise
            raise BuildError(f"process did not complete successfully: exit code: {code}") from exc

    return run
