"""One build shared by every pytest-xdist worker of a session (tests/conftest.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["session_base", "built_once"]


def session_base(basetemp: Path) -> Path:
    """The folder this session's workers share: above each xdist worker's own basetemp."""
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


def built_once(base: Path, name: str, build: Callable[[Path], dict]) -> dict:
    """``build(base / name)``'s JSON-able result, built by the first process that asks (under a
    file lock: the others wait) and read back from ``base / f"{name}.json"`` by every later one,
    a failed build's result included (so each asker fails with the same message). A build that
    died half-way (its test timed out) is not tried again: the later askers get an ``error``."""
    from filelock import FileLock

    result, folder = base / f"{name}.json", base / name
    with FileLock(str(base / f"{name}.lock")):
        if not result.exists():
            if folder.exists():
                done = {"error": f"{folder}: the shared build did not finish (the first test that "
                                 "asked for it failed or timed out)"}
            else:
                done = build(folder)
            result.write_text(json.dumps(done))
    return json.loads(result.read_text())
