"""``trajcorpus run`` from a terminal: the job runs in a child process group whose output this
process relays (see :func:`supervise_run` for why)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["supervise_run"]


def supervise_run(argv: Sequence[str], output: str, dataset: str, child_env: str) -> int:
    """Run the job in a child process group and relay its output.

    Why: Ctrl-C then reaches only this process, which stops the whole job group at once (no
    worker tracebacks), and a reader that goes away (``| head``) only makes this process drop
    the rest of the output: the job itself never writes to a closed pipe, so it never hangs.
    """
    env = {**os.environ, child_env: "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trajcorpus", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    relays = [threading.Thread(target=_relay, args=(pipe, fd), daemon=True)
              for pipe, fd in ((proc.stdout, 1), (proc.stderr, 2))]
    for t in relays:
        t.start()
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        _stop_group(proc)
        from .pipelines.inputs import TMP_DIR  # here: it imports the pipelines package

        staging = f"{output.rstrip('/')}/{TMP_DIR}/{dataset}"
        _say_line(f"trajcorpus: interrupted: the job was stopped; its staging folder {staging} "
                  f"was left and the next run of {dataset} into {output} cleans it")
        return 130
    for t in relays:
        t.join()
    return code


def _relay(pipe: Any, fd: int) -> None:
    """Copy the child's output to ``fd``; once ``fd`` is closed, keep draining, silently."""
    open_ = True
    while chunk := pipe.read1(65536):
        if open_:
            try:
                os.write(fd, chunk)
            except OSError:
                open_ = False


def _stop_group(proc: Any) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _say_line(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass
