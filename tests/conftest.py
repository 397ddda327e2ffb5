from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests are deterministic by default ("ci": the examples derive from each test's source,
# no example database), so the suite fails only on a code change. "search" is the randomised hunt
# run by hand (docs/mutation-testing.md): HYPOTHESIS_PROFILE=search. Loaded here, before any test
# module builds its own settings(...), which inherit from the loaded profile.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("search", derandomize=False, max_examples=1000, deadline=None,
                          print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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


# The demo configs a finished demo output holds for the tests that only read one (the docs'
# snippets, the trainer-facing info): written once per session by the demo entry point, as
# `make demo` does (both formats), with one in-process worker.
DEMO_CONFIGS = ("demo-minari", "demo-d4rl", "demo-dqn-replay", "demo-rlu-atari", "demo-rlds",
                "demo-hf-image-parquet")
ONE_WORKER = ("--direct_num_workers=1", "--direct_running_mode=in_memory")


@dataclasses.dataclass(frozen=True)
class DemoWorkspace:
    path: Path  # a fresh-clone look-alike: catalog.yaml, tests/, pyproject.toml, .venv
    stdout: str  # what the demo printed

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


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory) -> DemoWorkspace:
    ws = tmp_path_factory.mktemp("demo-workspace")
    for name in ("catalog.yaml", "tests", "pyproject.toml"):
        (ws / name).symlink_to(REPO / name)
    (ws / ".venv").symlink_to(sys.prefix)  # the docs' `.venv/bin/python ...` commands
    proc = subprocess.run(
        [sys.executable, "-m", "trajcorpus.pipelines.demo", "--output", "demo-out", "--only",
         *DEMO_CONFIGS, "--quiet", *ONE_WORKER],
        cwd=ws, env=child_env(), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return DemoWorkspace(ws, proc.stdout)


def pytest_collection_modifyitems(items) -> None:
    """The first test that asks for the shared demo output pays for building it (a minute on an
    idle 2-core machine, up to ten at a load of 10): its hang guard counts that too."""
    for item in items:
        if "demo_workspace" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(1800))
