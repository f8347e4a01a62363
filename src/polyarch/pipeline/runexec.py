"""Adapter: the solver's ``ExecRunner`` seam → the worker's runc ``Runner`` (``polyarch.worker.runc``).

Maps an ``ops.Exec`` and the host paths of its mounted inputs to a ``StepSpec`` with worker mount values; a
non-zero exit becomes ``BuildError("process did not complete successfully: exit code: N")`` (the solver adds
platform, stage, instruction and Dockerfile line). Secret values and ssh sockets come from the command line
(``--secret``/``--ssh``), never from the graph. The build's ``Cancel`` token goes on to the runner: triggering it
kills the running container and raises ``Cancelled``.

The build's RUN options (``ops.RunOptions``: ``--add-host``, ``--ulimit``, ``--shm-size``, ``--cgroup-parent``)
travel in the vertex and become the step's /etc/hosts lines, rlimits, /dev/shm size and cgroup parent.

Entitlements (buildx's ``--allow``): ``parse_allow`` checks the flag values; ``check_entitlements`` is called on
the planned graph before any step runs and refuses a RUN on the host network (``RUN --network=host`` or the
build's ``--network host``) without ``network.host`` and ``RUN --security=insecure`` without
``security.insecure``, with BuildKit's message ("network.host is not allowed").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from polyarch import ops
from polyarch.cancel import Cancel
from polyarch.errors import BuildError, UsageError
from polyarch.solver.executor import ExecRunner

if TYPE_CHECKING:
    from polyarch.worker.runc import Runner, RuntimeOptions

__all__ = ["ENTITLEMENTS", "check_entitlements", "make_runner", "parse_allow"]

ENTITLEMENTS = ("network.host", "security.insecure")


def parse_allow(values: Iterable[str]) -> frozenset[str]:
    """``--allow`` values (comma-separated or repeated) → entitlements.

    :raises UsageError: an unknown entitlement."""
    out: set[str] = set()
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            if item not in ENTITLEMENTS:
                raise UsageError(f"invalid entitlement: {item}", hint="use " + " or ".join(ENTITLEMENTS))
            out.add(item)
    return frozenset(out)


def check_entitlements(roots: Iterable[ops.Vertex], network: str, allow: frozenset[str]) -> None:
    """Refuse a graph whose RUN steps need an entitlement ``allow`` lacks (``network``: the build's --network).

    :raises BuildError: "network.host is not allowed" / "security.insecure is not allowed"."""
    for v in ops.walk(roots):
        if not isinstance(v, ops.Exec):
            continue
        needed = []
        if (network if v.network == "default" else v.network) == "host":
            needed.append("network.host")
        if v.security == "insecure":
            needed.append("security.insecure")
        for ent in needed:
            if ent not in allow:
                where = f" ({v.description})" if getattr(v, "description", "") else ""
                raise BuildError(f"{ent} is not allowed{where}", hint=f"pass --allow {ent} if you trust this build")


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
                ssh: Mapping[str, str] | None = None,
                options: Callable[[], RuntimeOptions] | None = None) -> ExecRunner:
    """A runner bound to ``store_root``. The runtime is set up by the first RUN step: its modules
    (``worker.runc``, mounts, network, seccomp) load then, ``options()`` is called then (default: runc), the
    binary is looked up then; a build without a RUN step never loads them."""
    holder: list[Runner] = []

    def run(vertex: ops.Exec, rootfs: Path, sources: Mapping[int, Path], on_output: Callable[[str], None], *,
            cancel: Cancel) -> None:
        from polyarch.worker.runc import Runner, RuntimeOptions, StepContext, StepSpec

        if not holder:
            holder.append(Runner(store_root, options() if options is not None else RuntimeOptions()))
        spec = StepSpec(args=vertex.args, context=StepContext(vertex.platform), env=vertex.env, user=vertex.user,
                        workdir=vertex.cwd or "/", network=vertex.network, security=vertex.security,
                        mounts=_mounts(vertex, sources),  # type: ignore[arg-type]
                        extra_hosts=vertex.options.extra_hosts, ulimits=vertex.options.ulimits,
                        shm_size=vertex.options.shm_size, cgroup_parent=vertex.options.cgroup_parent)
        try:
            holder[0].run(rootfs, spec, on_output, secrets=secrets or {}, ssh=ssh or {}, cancel=cancel)
        except BuildError as exc:
            code = getattr(exc, "step_exit_code", None)
            if code is None:
                raise
            raise BuildError(f"process did not complete successfully: exit code: {code}") from exc

    return run
