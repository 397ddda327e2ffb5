"""DQN Replay checkpoint layouts that Dopamine's own runs do not produce but damaged or partial
copies do: a final checkpoint of another capacity, and one whose place in the add stream cannot
be known (found by mutation testing: docs/mutation-testing.md). Truth: the fixture's
ground_truth.json and the arrays written here."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_source_dqn_replay import FIX, copy_run, gt_of, unit_of
from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources.dqn_replay import DqnReplaySource


def _load(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.load(f)


def _save(path: Path, array: np.ndarray) -> None:
    with gzip.open(path, "wb") as f:
        np.save(f, array)


def test_a_final_checkpoint_of_another_capacity_is_named(tmp_path):
    logs = copy_run(tmp_path) / "replay_logs"
    capacity = len(_load(logs / "$store$_action_ckpt.1.gz"))
    for name in ("action", "reward", "terminal"):
        path = logs / f"$store$_{name}_ckpt.2.gz"
        _save(path, _load(path)[:capacity - 5])
    src = DqnReplaySource(str(logs.parent))
    with pytest.raises(SourceError) as err:
        list(src.read_unit(unit_of(src, 2)))
    assert str(err.value) == (f"{logs}/$store$_action_ckpt.2.gz: length mismatch: "
                              f"{capacity - 5} slots but checkpoint 1 has {capacity}")


def test_a_final_checkpoint_after_one_of_unknown_place(tmp_path):
    """Checkpoint 0's files under suffix 1 (the first present, not suffix 0, below capacity:
    its place is unknown), then the final checkpoint 2: its leading slots are rejected, the
    episodes that start in it are read."""
    run = tmp_path / "Breakout" / "1"
    shutil.copytree(FIX / "Breakout" / "1", run)
    logs = run / "replay_logs"
    for f in logs.glob("*_ckpt.1.gz"):
        f.unlink()
    for f in logs.glob("*_ckpt.0.gz"):
        f.rename(logs / f.name.replace("_ckpt.0.gz", "_ckpt.1.gz"))
    src = DqnReplaySource(str(run))
    items = list(src.read_unit(unit_of(src, 2)))
    rejected = [r for r in items if isinstance(r, Rejected)]
    assert len(rejected) == 1 and rejected[0].location.endswith("ckpt 2 slot 0")
    assert rejected[0].reason.endswith("continue an episode whose start is not in the data "
                                       "(its position in the add stream is unknown)")
    starts = {g["start_index"] for g in gt_of("Breakout")["episodes"] if g["checkpoint"] == 2}
    episodes = [e for e in items if isinstance(e, Episode)]
    got = [e.source["segments"][0]["first_index"] for e in episodes]
    assert got and set(got) <= starts
    # slots 0.. in order, none recovered: an episode's place is its first slot
    assert [e.order for e in episodes] == [(2, i) for i in got]
    assert not any("recovered_undeclared_slots" in e.source for e in episodes)


def test_without_recovery_the_final_checkpoint_starts_at_its_slot_0(tmp_path):
    run = copy_run(tmp_path)
    src = DqnReplaySource(str(run), options={"recover_undeclared": False})
    episodes = [e for e in src.read_unit(unit_of(src, 2)) if isinstance(e, Episode)]
    got = [e.source["segments"][0]["first_index"] for e in episodes]
    assert got and [e.order for e in episodes] == [(2, i) for i in got]
    assert not any("recovered_undeclared_slots" in e.source for e in episodes)
