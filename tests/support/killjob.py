"""SIGKILL a job's process group at a chosen moment (the fault and resume tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable


def kill_group_when(proc: subprocess.Popen, ready: Callable[[], bool], what: str,
                    timeout: float = 300) -> None:
    """Poll ``ready()`` while ``proc`` (started with ``start_new_session=True``) runs, then
    SIGKILL its process group: the job and anything it started, nothing else. Fails if the job
    ends first or ``what`` does not happen within ``timeout`` seconds."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, f"the job ended before {what}"
            assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
