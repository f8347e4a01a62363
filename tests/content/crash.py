"""Crash helpers of the store tests: kill a polyarch command while one of the store's batches is open."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from polyarch.content.store import BATCH_PREFIX


def kill_mid_batch(tmp_path: Path, command: list[str]) -> Path:
    """Run ``polyarch --root R COMMAND`` and SIGKILL it while a batch of the store is open (its marker exists in
    ``ingest/``); retried on a fresh store up to 5 times when the command wins the race. Returns the store R."""
    for attempt in range(5):
        root = tmp_path / f"dest{attempt}"
        proc = subprocess.Popen([sys.executable, "-m", "polyarch", "--root", str(root), *command],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            ingest = root / "ingest"
            if ingest.is_dir() and any(p.name.startswith(BATCH_PREFIX) for p in ingest.iterdir()):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return root
            time.sleep(0.002)
        proc.wait()
    raise AssertionError(f"`polyarch {command[0]}` always finished before it could be killed")
