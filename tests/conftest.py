from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from support.golden import ONE_WORKER, recorded, snapshot
from support.once import built_once, session_base

# Property tests are deterministic by default ("ci": the examples derive from each test's source,
# no example database), so the suite fails only on a code change. "search" is the randomised hunt
# run by hand (docs/mutation-testing.md): HYPOTHESIS_PROFILE=search. Loaded here, before any test
# module builds its own settings(...), which inherit from the loaded profile.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("search", derandomize=False, max_examples=1000, deadline=None,
                          print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

if os.environ.get("TRAJCORPUS_CPUTIME"):  # each test's wall and CPU time to that file
    from support.cputime import pytest_runtest_protocol  # noqa: F401  (a hook, by its name)

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def gcs():
    """A real local GCS emulator for the whole session; yields the Emulator handle."""
    from support.gcs import Emulator

    emu = Emulator()
    yield emu
    emu.stop()


def ground_truth(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# The session's demo output: exactly the configs of the golden record (every demo entry of
# catalog.yaml), written once by the demo entry point as `make demo` does (both formats), with one
# in-process worker. tests/test_golden_demo.py compares the snapshot taken right after the build;
# the docs' snippets, the cards and the trainer-facing info read the folder.
DEMO_CONFIGS = tuple(sorted(recorded()["configs"]))


@dataclasses.dataclass(frozen=True)
class DemoWorkspace:
    path: Path  # a fresh-clone look-alike: catalog.yaml, tests/, pyproject.toml, .venv
    stdout: str  # what the demo printed
    snapshot: dict  # support.golden.snapshot of demo-out as built, before any test touched it

    @property
    def out(self) -> Path:
        """``demo-out`` inside it. Read it only: other test modules share it."""
        return self.path / "demo-out"


def child_env() -> dict:
    """The environment of a child Python that runs this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("TRAJCORPUS_RUN_CHILD", None)
    return env


def _build_demo_workspace(ws: Path) -> dict:
    ws.mkdir()
    for name in ("catalog.yaml", "tests", "pyproject.toml"):
        (ws / name).symlink_to(REPO / name)
    (ws / ".venv").symlink_to(sys.prefix)  # the docs' `.venv/bin/python ...` commands
    proc = subprocess.run(
        [sys.executable, "-m", "trajcorpus.pipelines.demo", "--output", "demo-out", "--only",
         *DEMO_CONFIGS, "--quiet", *ONE_WORKER],
        cwd=ws, env=child_env(), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr[-3000:]}
    return {"stdout": proc.stdout,
            "snapshot": snapshot(ws / "demo-out", list(DEMO_CONFIGS), recorded())}


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory) -> DemoWorkspace:
    """Built once per session: under pytest-xdist the first worker to ask builds it in the
    session's shared temporary folder while the others wait, then all read it."""
    base = session_base(tmp_path_factory.getbasetemp())
    result = built_once(base, "demo-workspace", _build_demo_workspace)
    assert "error" not in result, result.get("error")
    return DemoWorkspace(base / "demo-workspace", result["stdout"], result["snapshot"])


# How the suite stays short: `make test` runs it on 2 pytest-xdist workers (`-n 2`; pyproject's
# `--dist loadfile --no-loadscope-reorder`), which take whole modules in the order set below.
# - A module runs whole on one worker, so a module-scoped fixture (a module's shared job runs) is
#   built once. Share a run between the tests of a module with a module-scoped fixture; do not add
#   session fixtures that build (each worker would build them again), except through a file lock
#   as `demo_workspace` does (support/once.py).
# - The demo output (`demo_workspace`) is the one build shared across modules and workers: a test
#   that needs a demo config's output reads it there instead of building the config again. Its
#   builder, tests/test_golden_demo.py, is scheduled first; the modules that read it come last, so
#   the other worker does not wait for it. Its readers get the build's time in their hang guard.
# - A job run whose runner is not what the test is about uses one in-process worker (ONE_WORKER);
#   the multi-processing and Dask runners keep their own tests.
BUILDER = "tests/test_golden_demo.py"


def pytest_collection_modifyitems(items) -> None:
    """The order for xdist (above). The test that first asks for the shared demo output pays for
    building it (a few minutes on an idle 2-core machine, up to half an hour at a load of 10), or
    waits for another worker's build: its hang guard counts that too."""
    readers = set()
    for item in items:
        if "demo_workspace" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(1800))
            readers.add(item.nodeid.split("::")[0])

    def rank(item) -> int:
        module = item.nodeid.split("::")[0]
        return 0 if module == BUILDER else 2 if module in readers else 1

    items.sort(key=rank)  # stable: the collection order within each rank
