"""Each test's wall and CPU time (docs/benchmarks.md, "Test suite time"): with
``TRAJCORPUS_CPUTIME=FILE`` in the environment, tests/conftest.py takes this hook, which appends
one JSON line per test (setup, call and teardown) to FILE; bench/suite_time.py sums them.

CPU is this process's (every thread) plus that of the children it waited for (the job's worker
processes, the CLI and doc snippets run as subprocesses, Dask clusters). On a machine shared with
other work, wall time stretches with the load while CPU time barely moves, so it is CPU that
compares two versions of the suite. Under pytest-xdist each worker appends its own lines.
"""

from __future__ import annotations

import json
import os
import resource
import time

import pytest

__all__ = ["pytest_runtest_protocol"]


def _cpu() -> tuple[float, float]:
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    path = os.environ.get("TRAJCORPUS_CPUTIME")
    wall, (me, kids) = time.time(), _cpu()
    yield
    if path:
        me2, kids2 = _cpu()
        with open(path, "a") as f:
            f.write(json.dumps({"test": item.nodeid, "wall": time.time() - wall,
                                "self": me2 - me, "children": kids2 - kids,
                                "worker": os.environ.get("PYTEST_XDIST_WORKER", "-")}) + "\n")
