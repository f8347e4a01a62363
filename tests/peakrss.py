"""Run a command and measure its own peak RSS.

``ru_maxrss`` of a child started straight from the test process is useless here: Linux keeps the larger of the
old and the new memory high-water mark across execve(2), and a child forked (or vforked) from pytest starts with
pytest's whole RSS (hundreds of MiB after a long run). So the command is forked from a small spawner process
instead, whose copy of memory is a few MiB, and the spawner reports what wait4(2) says of it.

API::

    run_peak_rss(argv, timeout=120, stdin=…, stdout=…, stderr=…, env=…, cwd=…) -> (exit code, peak RSS bytes)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

__all__ = ["run_peak_rss"]

_SPAWNER = r"""
import os, sys
report = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(report)
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(report, b"%d %d" % (os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024))
"""


def run_peak_rss(argv: list[str], *, timeout: float = 120, stdin: bytes | None = None,
                 **popen: Any) -> tuple[int, int]:
    """Run ``argv`` to its end; its exit code (negative: killed by that signal) and its peak RSS in bytes.

    :raises subprocess.TimeoutExpired: it ran longer than ``timeout`` (it is killed first).
    """
    r, w = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _SPAWNER, str(w), *argv], pass_fds=(w,),
                                start_new_session=True, stdin=subprocess.PIPE if stdin is not None else None,
                                **popen)
        os.close(w)
        w = -1
        try:
            proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        code, rss = os.read(r, 64).split()
        return int(code), int(rss)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
