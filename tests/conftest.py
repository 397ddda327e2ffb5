from __future__ import annotations

import json
from pathlib import Path

import pytest

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
