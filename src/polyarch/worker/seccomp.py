"""The default seccomp profile of RUN steps: Docker's default policy, as a table, turned into the OCI
``linux.seccomp`` section for the host's architecture.

API::

    profile(machine=None, caps=CAPABILITIES) -> dict      # OCI seccomp for os.uname().machine (or ``machine``)

Policy (Docker's ``profiles/seccomp/default.json``): every syscall not listed fails with EPERM; the ``ALLOW``
list below is allowed everywhere; a few are allowed only on some architectures; some only when the container
holds a capability (RUN holds Docker's default set, so e.g. ``unshare``, ``mount``, ``setns``, ``keyctl``,
``add_key`` and ``bpf`` fail); ``clone`` may not create namespaces; ``clone3`` answers ENOSYS (so libcs fall back
to ``clone``, whose flags can be checked); ``personality`` only takes the harmless personas.

QEMU user emulation runs inside the container (binfmt flag F), so an emulated step's syscalls are the host's:
the profile is always the host architecture's (with its 32-bit compat ABIs), whatever the step's platform.
runc skips names its libseccomp does not know, so one table serves every kernel.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

__all__ = ["profile"]

EPERM = 1
ENOSYS = 38
CLONE_NAMESPACES = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET

ALLOW = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32 clock_adjtime
clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1
epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2
fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat
fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait
futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid
getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom
getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set
io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall
mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at
nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc
pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
sched_get_priority_min sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity
sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid
setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socket
socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs
sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill
truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice
wait4 waitid waitpid write writev
ptrace process_vm_readv process_vm_writev
""".split()

# Docker's arch names → the syscalls only they get
BY_ARCH: dict[str, tuple[str, ...]] = {
    "amd64": ("arch_prctl", "modify_ldt"),
    "x32": ("arch_prctl", "modify_ldt"),
    "x86": ("modify_ldt",),
    "arm": ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"),
    "arm64": ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"),
    "ppc64le": ("sync_file_range2", "swapcontext"),
    "s390x": ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    "riscv64": ("riscv_flush_icache",),
}

# capability → the syscalls it unlocks (Docker's table)
BY_CAP: dict[str, tuple[str, ...]] = {
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_ADMIN": ("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
                      "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
                      "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
                      "umount2", "unshare"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}

PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE, both, query

# uname -m → (Docker's arch names, libseccomp architectures): the native ABI and its compat ones
MACHINES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "x86_64": (("amd64", "x86", "x32"), ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    "aarch64": (("arm64", "arm"), ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")),
    "armv7l": (("arm",), ("SCMP_ARCH_ARM",)),
    "armv6l": (("arm",), ("SCMP_ARCH_ARM",)),
    "ppc64le": (("ppc64le",), ("SCMP_ARCH_PPC64LE",)),
    "s390x": (("s390x",), ("SCMP_ARCH_S390X", "SCMP_ARCH_S390")),
    "riscv64": (("riscv64",), ("SCMP_ARCH_RISCV64",)),
    "i686": (("x86",), ("SCMP_ARCH_X86",)),
}


def _rule(names: Iterable[str], action: str = "SCMP_ACT_ALLOW", *, args: list[dict[str, Any]] | None = None,
          errno: int | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": sorted(set(names)), "action": action}
    if args:
        rule["args"] = args
    if errno is not None:
        rule["errnoRet"] = errno
    return rule


def profile(machine: str | None = None, caps: Iterable[str] = ()) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` section for a container holding ``caps``, on ``machine`` (default: this host)."""
    machine = machine or os.uname().machine
    arches, scmp = MACHINES.get(machine, ((), ()))
    held = set(caps)
    allowed = set(ALLOW)
    for arch in arches:
        allowed.update(BY_ARCH.get(arch, ()))
    for cap in held:
        allowed.update(BY_CAP.get(cap, ()))
    rules = [_rule(allowed)]
    rules += [_rule(["personality"], args=[{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]) for p in PERSONAS]
    if "CAP_SYS_ADMIN" not in held:
        index = 1 if machine == "s390x" else 0  # s390's clone takes the stack first
        rules.append(_rule(["clone"], args=[{"index": index, "value": CLONE_NAMESPACES, "valueTwo": 0,
                                             "op": "SCMP_CMP_MASKED_EQ"}]))
        rules.append(_rule(["clone3"], "SCMP_ACT_ERRNO", errno=ENOSYS))
    out: dict[str, Any] = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM, "syscalls": rules}
    if scmp:
        out["architectures"] = list(scmp)
    return out
