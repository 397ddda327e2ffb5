from __future__ import annotations

import json
import os
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
