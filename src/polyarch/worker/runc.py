"""RUN steps in runc: an OCI runtime bundle generated from the step, ``runc run``, output streamed line by line.
The only module that spawns the container runtime.

API (for the solver)::

    runner = Runner(store_root, RuntimeOptions(...))  # runtime (default runc), network helper, binfmt dir
    runner.run(rootfs, StepSpec(...), on_output, secrets={"id": b"..."}, ssh={"default": "/path/sock"},
               cancel=cancel)   # cancel: polyarch.cancel.Cancel; cancelling it kills the running container
    run_step(rootfs, spec, on_output, store_root=..., ...)   # the same, one call

``StepSpec`` holds what defines a step (argv, env, user, workdir, network, mounts, platform, ``StepContext``);
secret values and ssh sockets are passed beside it so they can never end up in a cache key. Emulation is
checked first (``emulation.ensure_runnable``). A non-zero exit raises BuildError naming platform, stage,
instruction and exit code (``.step_exit_code`` set); a failure of the runtime itself (a mount it refused, a
command it could not exec) raises BuildError with the runtime's reason from its log (no ``.step_exit_code``);
a mount point the image does not allow (``mounts.MountSetup``) fails before the runtime starts. The container
is always deleted (``runc delete --force``), also on Ctrl-C.

Cancellation: when the caller's ``Cancel`` token is triggered, the container gets SIGKILL (``runc kill KILL``,
repeated until ``runc run`` returns: it may not have created the container yet); its init dies and with it the
container's pid namespace, so every process of the step (qemu included) ends; then the container is deleted,
mounts undone, the bundle removed, and ``Cancelled`` raised. ``runc run`` runs in its own process group, so a
terminal's ^C reaches polyarch only, never the step (the step stops because polyarch kills it).

Container (BuildKit's sandbox): own mount/pid/ipc/uts namespaces and, with ``network="default"``, its own
network namespace with outbound access through slirp4netns or pasta and no way to the host's loopback
(``worker.network``); ``"none"``: an empty one with loopback; ``"host"``: the host's (the caller checks the
``network.host`` entitlement). Mounts: /proc, /dev (tmpfs with the usual devices, /dev/pts, /dev/shm of
``shm_size`` bytes or 64 MiB, /dev/mqueue), /sys read-only, a generated /etc/resolv.conf and /etc/hosts (with the
step's ``extra_hosts``) read-only, then the step's ``--mount``s. rlimits: NOFILE at the host's hard limit, then
the step's ``ulimits``; ``cgroup_parent`` makes the container's cgroup ``<parent>/<container id>``. Docker's default capabilities, no_new_privs, Docker's default seccomp policy
(``worker.seccomp``), runc's masked and read-only /proc and /sys paths. ``security="insecure"`` (the caller
checks the ``security.insecure`` entitlement) lifts all of that but the namespaces: every capability, no
seccomp, nothing masked, /sys writable.

Containers and bundles are named ``polyarch-<pid>-<hex>``; the process's watcher (``worker.reap``) kills its
containers if it dies, and a new Runner first reaps what a dead builder left in the store.

Rootless mode (``worker.userns``): this process is uid 0 of the user's namespace and runc runs there as it runs
for root, with the same spec; runc notices the namespace and manages no cgroups it was not delegated, binds
the devices of /dev instead of making them. One difference: with ``network="host"`` the host's network namespace
is not the user namespace's, so /sys is a read-only recursive bind of the host's instead of a new sysfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyarch.cancel import Cancel
from polyarch.errors import BuildError, PolyarchError
from polyarch.platform import Platform

from .binfmt import BINFMT_DIR
from .emulation import ensure_runnable
from .mounts import Mount, MountSetup
from .network import StepNetwork
from .reap import container_id, reap_crashed, watch
from .seccomp import profile as seccomp_profile
from .securepath import secure_join
from .userns import in_user_namespace
from .users import resolve_user

__all__ = ["DEFAULT_PATH", "Runner", "RuntimeOptions", "StepContext", "StepSpec", "run_step", "runtime_binary",
           "runtime_version"]

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
CAP_NAMES = (  # by number
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
NETWORKS = ("default", "host", "none")
_LOG_LIMIT = 1 << 20
SECURITY = ("sandbox", "insecure")

OutputFn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class StepContext:
    """Where a step comes from, for error messages and progress."""

    platform: Platform
    stage: str = ""
    instruction: str = ""


@dataclass(frozen=True, slots=True)
class StepSpec:
    args: tuple[str, ...]
    context: StepContext
    env: tuple[str, ...] = ()
    user: str = ""
    workdir: str = "/"
    hostname: str = "buildkitsandbox"
    network: str = "default"
    mounts: tuple[Mount, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = field(default=())
    security: str = "sandbox"
    ulimits: tuple[tuple[str, int, int], ...] = ()  # (docker name, soft, hard), -1 = unlimited → OCI rlimits
    shm_size: int = 0  # bytes of /dev/shm; 0: 64 MiB
    cgroup_parent: str = ""  # ``/a/b``: the container's cgroup is ``/a/b/<container id>`` (cgroupfs)

    @property
    def platform(self) -> Platform:
        return self.context.platform


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """How RUN steps run on this host, chosen by the caller (the CLI reads them from the environment)."""

    runtime: str = "runc"  # the OCI runtime: a name on PATH or a path (``POLYARCH_RUNTIME``)
    net_helper: str = ""  # slirp4netns or pasta forced for network=default, else the first installed
    overlay_binds: bool = True  # read-write bind mounts of directories over overlayfs; False: on a copy
    binfmt_dir: Path = BINFMT_DIR  # where binfmt_misc is mounted (the emulation check reads it)


def runtime_binary(name: str = "runc") -> str:
    """The path of the OCI runtime ``name`` (a name on PATH or a path).

    :raises BuildError: it is not found.
    """
    name = name.strip() or "runc"
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"container runtime {name!r} not found",
                         hint="install runc (apt-get install runc) or set POLYARCH_RUNTIME")
    return path


def _all_capabilities() -> list[str]:
    """Every capability in this process's bounding set (``--security=insecure``: what runc can grant)."""
    bound = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                bound = int(line.split()[1], 16)
    return [f"CAP_{name}" for bit, name in enumerate(CAP_NAMES) if bound >> bit & 1]


def _hosts(hostname: str, extra: tuple[tuple[str, str], ...]) -> str:
    lines = [f"127.0.0.1\tlocalhost {hostname}", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{name}" for name, ip in extra]
    return "\n".join(lines) + "\n"


def _base_mounts(insecure: bool = False, shm_size: int = 0) -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}" if shm_size else "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev"] + ([] if insecure else ["ro"])},
    ]


def _rlimits(ulimits: tuple[tuple[str, int, int], ...]) -> list[dict[str, Any]]:
    """OCI rlimits: RLIMIT_NOFILE at the host's hard limit (at most 2^20), then the step's ``--ulimit``s."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else min(nofile, 1048576)
    limits = {"nofile": (nofile, nofile)}
    limits.update({name: (soft, hard) for name, soft, hard in ulimits})
    return [{"type": "RLIMIT_" + name.upper(), "soft": _rlim(soft), "hard": _rlim(hard)}
            for name, (soft, hard) in limits.items()]


def _rlim(value: int) -> int:
    return 2**64 - 1 if value < 0 else value  # -1: RLIM_INFINITY


def _sys_bind(insecure: bool) -> dict[str, Any]:
    """/sys as a recursive bind of the host's: what a user namespace may use when the step shares the host's
    network namespace (mounting a sysfs needs a network namespace the user namespace owns)."""
    return {"destination": "/sys", "type": "bind", "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev"] + ([] if insecure else ["ro"])}


def _env(spec: StepSpec, extra: Mapping[str, str], home: str) -> list[str]:
    env: dict[str, str] = {}
    for item in spec.env:
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("PATH", DEFAULT_PATH.partition("=")[2])
    env.setdefault("HOME", home)
    env.update(extra)
    return [f"{k}={v}" for k, v in env.items()]


class Runner:
    """Runs steps with runc; state and bundles live under the store root."""

    def __init__(self, store_root: Path | str, options: RuntimeOptions = RuntimeOptions()) -> None:
        self.store_root = Path(store_root)
        self.options = options
        self.runtime = runtime_binary(options.runtime)
        self.state = self.store_root / "runc-state"
        self.bundles = self.store_root / "bundles"
        for d in (self.state, self.bundles):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        reap_crashed(self.store_root, runtime=self.runtime)

    def run(self, rootfs: Path | str, spec: StepSpec, on_output: OutputFn, *,
            secrets: Mapping[str, bytes] | None = None, ssh: Mapping[str, str] | None = None,
            cancel: Cancel | None = None) -> None:
        """Run ``spec`` in ``rootfs`` (the mounted, writable rootfs of an active snapshot).

        :raises BuildError: the step failed (non-zero exit: ``.step_exit_code``), or could not be set up or
            started (the reason in the message).
        :raises Cancelled: ``cancel`` was triggered (before or while the step ran; its container is gone).
        """
        cancel = cancel or Cancel()
        cancel.check()
        if spec.network not in NETWORKS:
            raise BuildError(f"unknown network mode {spec.network!r}", hint="use default, host or none")
        if spec.security not in SECURITY:
            raise BuildError(f"unknown security mode {spec.security!r}", hint="use sandbox or insecure")
        ensure_runnable(spec.platform, binfmt_dir=self.options.binfmt_dir)
        rootfs = Path(rootfs)
        watch(self.store_root, self.state, self.runtime)
        cid = container_id(uuid.uuid4().hex[:12])
        bundle = self.bundles / cid
        bundle.mkdir(mode=0o700)
        try:
            with MountSetup(self.store_root, rootfs, bundle / "scratch", spec.platform, secrets or {}, ssh or {},
                            overlay_binds=self.options.overlay_binds) as setup, \
                    StepNetwork(spec.network, bundle, helper=self.options.net_helper) as net:
                config = self._config(rootfs, spec, setup, bundle, net)
                (bundle / "config.json").write_text(json.dumps(config, indent=1))
                code, failure = self._exec(cid, bundle, on_output, cancel)
            cancel.check()  # a killed step's exit code is not its failure
            if failure:
                raise BuildError(failure)
            if code != 0:
                ctx = spec.context
                where = f"[{ctx.platform}{' ' + ctx.stage if ctx.stage else ''}]"
                what = ctx.instruction or "RUN " + " ".join(spec.args)
                err = BuildError(f"{where} {what}: process did not complete successfully: exit code: {code}")
                err.step_exit_code = code  # type: ignore[attr-defined]
                raise err
        except OSError as exc:
            raise BuildError(f"cannot run the container: {exc}") from exc
        finally:
            shutil.rmtree(bundle, ignore_errors=True)

    def _config(self, rootfs: Path, spec: StepSpec, setup: MountSetup, bundle: Path,
                net: StepNetwork) -> dict[str, Any]:
        user = resolve_user(rootfs, spec.user)
        workdir = spec.workdir or "/"
        if not workdir.startswith("/"):
            workdir = "/" + workdir
        host_wd = secure_join(rootfs, workdir)
        if not os.path.isdir(host_wd):
            try:
                os.makedirs(host_wd, 0o755, exist_ok=True)
            except OSError as exc:
                raise BuildError(f"cannot create working directory {workdir}: {exc.strerror}") from exc
        insecure = spec.security == "insecure"
        mounts = _base_mounts(insecure, spec.shm_size)
        if net.namespace is None and in_user_namespace():  # rootless, host network: no sysfs of its own to mount
            mounts = [_sys_bind(insecure) if m["type"] == "sysfs" else m for m in mounts]
        for d in ("/proc", "/dev", "/sys"):
            setup.stub(d, is_dir=True, ordinary=True)  # no symlink there (see MountPoints.ensure)
        (bundle / "hosts").write_text(_hosts(spec.hostname, spec.extra_hosts))
        (bundle / "resolv.conf").write_text(net.resolv_conf)
        files = {"/etc/hosts": bundle / "hosts", "/etc/resolv.conf": bundle / "resolv.conf"}
        for dest, src in files.items():
            setup.stub(dest, is_dir=False)
            mounts.append({"destination": dest, "type": "bind", "source": os.fspath(src),
                           "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]})
        for m in spec.mounts:
            setup.add(m)
        mounts.extend(setup.oci_mounts)
        namespaces: list[dict[str, Any]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
        if net.namespace is not None:
            namespaces.append(net.namespace)
        caps = _all_capabilities() if insecure else list(CAPABILITIES)
        linux: dict[str, Any] = {"namespaces": namespaces, "resources": {"devices": [{"allow": False, "access": "rwm"}]}}
        if not insecure:
            linux.update(maskedPaths=MASKED, readonlyPaths=READONLY, seccomp=seccomp_profile(caps=caps))
        if spec.cgroup_parent:
            linux["cgroupsPath"] = f"{spec.cgroup_parent}/{bundle.name}"
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.additional_gids)},
                "args": list(spec.args),
                "env": _env(spec, setup.env, user.home),
                "cwd": workdir,
                "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                "rlimits": _rlimits(spec.ulimits),
                "noNewPrivileges": not insecure,
            },
            "root": {"path": os.fspath(rootfs), "readonly": False},
            "hostname": spec.hostname,
            "mounts": mounts,
            "linux": linux,
        }

    def _exec(self, cid: str, bundle: Path, on_output: OutputFn, cancel: Cancel) -> tuple[int, str]:
        """Run the container; returns its exit code and, when the runtime itself failed (it could not set up or
        start the container), the runtime's reason. Only the runtime writes its log (the container cannot reach
        the bundle), so the log tells its failures from the process's exit codes; the copy of the reason that
        the runtime also prints to stderr is not passed on as the step's output."""
        base = [self.runtime, "--root", os.fspath(self.state)]
        log = bundle / "runtime.log"
        log_fd = os.open(log, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            proc = subprocess.Popen([*base, "--log", os.fspath(log), "--log-format", "json", "run", "--bundle",
                                     os.fspath(bundle), cid], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, cwd=bundle, process_group=0)
        except BaseException:
            os.close(log_fd)
            raise
        try:
            with cancel.hook(lambda: _kill_until_gone(base, cid, proc)):
                code = self._stream(proc, log_fd, on_output)
            errors = _runtime_errors(log_fd) if code != 0 and not cancel.cancelled else []
            return code, "; ".join(errors)
        except BaseException:
            _kill_until_gone(base, cid, proc)
            raise
        finally:
            os.close(log_fd)
            if proc.stdout is not None:
                proc.stdout.close()
            subprocess.run([*base, "delete", "--force", cid], capture_output=True, timeout=60, check=False)

    @staticmethod
    def _stream(proc: subprocess.Popen[bytes], log_fd: int, on_output: OutputFn) -> int:
        """Pass the container's output on line by line until it ends; returns ``runc run``'s exit code."""
        assert proc.stdout is not None
        seen_size, runtime_lines = 0, set[str]()  # the log parsed again only when it grew
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            size = os.fstat(log_fd).st_size
            if size != seen_size:
                seen_size, runtime_lines = size, _lines(_runtime_errors(log_fd))
            # (a step line equal to one of the runtime's own error lines is its stderr copy: dropped)
            if line not in runtime_lines:
                on_output(line)
        return proc.wait()


def _kill_until_gone(base: list[str], cid: str, proc: subprocess.Popen[bytes], *, patience: float = 5.0) -> None:
    """SIGKILL the container until ``runc run`` returns (it may not have created the container yet when this
    starts); if it still runs after ``patience`` seconds, SIGKILL ``runc run`` itself (the watcher and the next
    start reap what that leaves)."""
    deadline = time.monotonic() + patience
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([*base, "kill", cid, "KILL"], capture_output=True, timeout=10, check=False)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.1)
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def _lines(messages: list[str]) -> set[str]:
    return {line for msg in messages for line in msg.splitlines()}


def _runtime_errors(log_fd: int) -> list[str]:
    """The messages of the error records in the runtime's JSON log (the first MiB of it)."""
    data = os.pread(log_fd, _LOG_LIMIT, 0)
    out: list[str] = []
    for raw in data.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "fatal"):
            msg = str(record.get("msg", "")).strip()
            if msg:
                out.append(msg)
    return out


def runtime_version(binary: str) -> str:
    """First line of ``runc --version`` ("runc version 1.1.5+ds1") for the runtime at ``binary``.

    :raises BuildError: the runtime does not run.
    """
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"container runtime {binary} does not run: {exc}") from exc
    return out.splitlines()[0].strip() if out else binary


def run_step(rootfs: Path | str, spec: StepSpec, on_output: OutputFn, *, store_root: Path | str,
             secrets: Mapping[str, bytes] | None = None, ssh: Mapping[str, str] | None = None,
             options: RuntimeOptions = RuntimeOptions(), cancel: Cancel | None = None) -> None:
    """One step with a fresh Runner (see Runner.run)."""
    try:
        Runner(store_root, options).run(rootfs, spec, on_output, secrets=secrets, ssh=ssh, cancel=cancel)
    except PolyarchError:
        raise
    except OSError as exc:
        raise BuildError(f"cannot run step: {exc}") from exc
