"""D4RL reader against the fixture's ground_truth.json (computed from the live rollouts)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import ground_truth
from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source

FILE = "mujoco/d4rl/hopper-mixed-v2.hdf5"
GT = "mujoco/d4rl/hopper-mixed-v2.ground_truth.json"


def _read(uri, **options) -> list[Episode | Rejected]:
    return list(open_source("d4rl", str(uri), options=options).read())


def _rejects(items) -> list[Rejected]:
    return [x for x in items if isinstance(x, Rejected)]


@pytest.fixture(scope="module")
def gt(fixtures) -> dict:
    return ground_truth(fixtures / GT)


def check_against_ground_truth(episodes: list[Episode], gt: dict, file_index: int = 0) -> None:
    assert not _rejects(episodes)
    assert len(episodes) == gt["n_episodes"]
    assert sum(e.length for e in episodes) == gt["total_steps"]
    for ep, g in zip(episodes, gt["episodes"], strict=True):
        assert ep.order == (file_index, g["flat_start"])
        assert ep.episode_id == f"hopper-mixed-v2/{g['flat_start']}"
        assert ep.source["rows"] == [g["flat_start"], g["flat_start"] + g["length"]]
        assert ep.length == g["length"]
        # rewards are stored as float32, each within 2**-24 relative of the env's float64 reward,
        # so the return is within 2**-24 * sum|r| of the float64 ground truth (plus float64
        # summation noise). Measured on this fixture: errors up to 3.0e-6, at most 23% of the
        # bound, while one reward lost or off by a step moves a return by >= 0.047
        bound = 2.0 ** -24 * float(np.abs(ep.rewards).sum(dtype=np.float64)) + 1e-9
        assert abs(ep.return_ - g["return"]) <= bound, (g["index"], ep.return_ - g["return"])
        assert ep.is_terminal == g["d4rl_last_terminal"] == g["terminated"]
        assert ep.is_truncated == g["d4rl_last_timeout"] == g["truncated"]
        assert not ep.source["partial"]
        obs = ep.observations["observation"]
        assert obs.shape == (g["length"], gt["obs_dim"]) and obs.dtype == np.float32
        assert ep.actions.shape == (g["length"], gt["action_dim"])
        assert ep.actions.dtype == np.float32 and ep.action_kind == "continuous"
        assert ep.rewards.dtype == np.float32
        # Hopper-v5 reset: height 1.25 + U(-5e-3, 5e-3), every other coordinate within 5e-3
        assert abs(obs[0, 0] - 1.25) <= 5e-3 + 1e-6 and np.all(np.abs(obs[0, 1:]) <= 5e-3 + 1e-6)


def test_matches_ground_truth(fixtures, gt):
    src = open_source("d4rl", str(fixtures / FILE))
    items = list(src.read())
    check_against_ground_truth(items, gt)
    assert {(e.task, e.agent) for e in items} == {("hopper-mixed-v2", "ARS-mixed")}
    assert [u.key for u in src.units()] == ["hopper-mixed-v2/rows 0-10754"]


@pytest.mark.parametrize("rows", [997, 250])
def test_small_units_stitch_episodes_across_unit_boundaries(fixtures, gt, rows):
    src = open_source("d4rl", str(fixtures / FILE), options={"rows_per_unit": rows})
    assert len(src.units()) == -(-gt["total_steps"] // rows)
    check_against_ground_truth(list(src.read()), gt)


def test_gcs_matches_ground_truth(gcs, fixtures, gt):
    uri = gcs.upload(fixtures / FILE, "test_source_d4rl/hopper-mixed-v2.hdf5")
    items = _read(uri, rows_per_unit=4000)
    check_against_ground_truth(items, gt)
    assert items[0].source["uri"] == uri


def test_folder_of_files_task_option_and_templates(fixtures, gt, tmp_path):
    data = (fixtures / FILE).read_bytes()
    (tmp_path / "a.hdf5").write_bytes(data)
    (tmp_path / "b.hdf5").write_bytes(data)
    src = open_source("d4rl", str(tmp_path), options={"task": "hopper"},
                      task_template="mujoco/{task}", agent_template="{algorithm}@{file}")
    items = list(src.read())
    assert len(items) == 2 * gt["n_episodes"]
    assert [e.order[0] for e in items] == [0] * 40 + [1] * 40
    assert {e.task for e in items} == {"mujoco/hopper"}
    assert [e.agent for e in items[39:41]] == ["ARS-mixed@a", "ARS-mixed@b"]


# -- rewriting the file: a D4RL file is flat, so edits are rewrites of its arrays ----------------
def _rewrite(src: Path, dst: Path, edit) -> Path:
    with h5py.File(src, "r") as f:
        arrays = {}
        f.visititems(lambda k, o: arrays.__setitem__(k, o[()]) if isinstance(o, h5py.Dataset)
                     else None)
    edit(arrays)
    with h5py.File(dst, "w") as f:
        for k, v in arrays.items():
            f[k] = v
    return dst


def test_final_partial_trajectory(fixtures, gt, tmp_path):
    cut = 20
    n = gt["total_steps"] - cut

    def drop_tail(a):
        for k in list(a):
            if getattr(a[k], "ndim", 0) >= 1 and a[k].shape[0] == gt["total_steps"]:
                a[k] = a[k][:n]

    path = _rewrite(fixtures / FILE, tmp_path / "cut.hdf5", drop_tail)
    last = gt["episodes"][-1]
    items = _read(path, rows_per_unit=3000)
    assert len(items) == 40 and not _rejects(items)
    tail = items[-1]
    assert tail.length == last["length"] - cut and tail.source["partial"] is True
    assert tail.is_truncated and not tail.is_terminal
    assert tail.source["rows"] == [last["flat_start"], n]

    items = _read(path, partial_tail="reject")
    (bad,) = _rejects(items)
    assert bad.location == f"{path} @ offset {last['flat_start']} [rows {last['flat_start']}:{n}]"
    assert "neither terminals nor timeouts" in bad.reason and bad.task == "cut"


def test_missing_key(fixtures, tmp_path):
    path = _rewrite(fixtures / FILE, tmp_path / "nokey.hdf5", lambda a: a.pop("rewards"))
    (bad,) = _read(path)
    assert isinstance(bad, Rejected) and bad.kind == "unit"
    assert bad.message.startswith(f"{path} [rewards]: missing dataset")
    with pytest.raises(SourceError, match=r"nokey\.hdf5 \[rewards\]: missing dataset"):
        list(open_source("d4rl", str(path)).episodes())


def test_mismatched_lengths(fixtures, tmp_path):
    def shorten(a):
        a["actions"] = a["actions"][:-5]

    path = _rewrite(fixtures / FILE, tmp_path / "short.hdf5", shorten)
    with pytest.raises(SourceError) as e:
        list(open_source("d4rl", str(path)).episodes())
    assert str(e.value) == (f"{path} [actions]: per-step arrays differ in length (observations "
                            "has 10754, actions has 10749, rewards has 10754, terminals has "
                            "10754, timeouts has 10754 rows)")


def test_nan_reward_rejects_only_its_episode(fixtures, gt, tmp_path):
    g = gt["episodes"][3]

    def poison(a):
        a["rewards"][g["flat_start"] + 2] = np.nan

    path = _rewrite(fixtures / FILE, tmp_path / "nan.hdf5", poison)
    items = _read(path)
    (bad,) = _rejects(items)
    assert len(items) == 40
    a, b = g["flat_start"], g["flat_start"] + g["length"]
    assert bad.location == f"{path} @ offset {a} [rows {a}:{b}]"
    assert "'rewards'" in bad.reason and "non-finite value nan at step 2" in bad.reason


def test_not_hdf5_and_missing_file(tmp_path):
    (tmp_path / "junk.hdf5").write_bytes(b"definitely not HDF5")
    with pytest.raises(SourceError, match=r"junk\.hdf5: not a readable HDF5 file"):
        open_source("d4rl", str(tmp_path / "junk.hdf5")).units()
    with pytest.raises(SourceError, match=r"absent\.hdf5: file not found"):
        open_source("d4rl", str(tmp_path / "absent.hdf5")).units()
    with pytest.raises(SourceError, match="no .hdf5 file found"):
        open_source("d4rl", str(tmp_path / "nothing-here")).units()
