"""Minari reader against the fixtures' ground_truth.json (computed from the live rollouts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from conftest import ground_truth
from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source

ROOT_REL = "mujoco/minari/trajcorpus-fixtures"
DATASETS = {  # folder -> (env id, dataset id)
    "hopper/mixed-v0": ("Hopper-v5", "trajcorpus-fixtures/hopper/mixed-v0"),
    "hopper/mixed-arrow-v0": ("Hopper-v5", "trajcorpus-fixtures/hopper/mixed-arrow-v0"),
    "halfcheetah/mixed-v0": ("HalfCheetah-v5", "trajcorpus-fixtures/halfcheetah/mixed-v0"),
}


def _read(uri: str, **options) -> list[Episode | Rejected]:
    return list(open_source("minari", str(uri), options=options).read())


def _episodes(items) -> list[Episode]:
    bad = [x for x in items if isinstance(x, Rejected)]
    assert not bad, bad
    return items


@pytest.fixture(scope="module")
def root(fixtures) -> Path:
    return fixtures / ROOT_REL


@pytest.fixture(scope="module")
def by_dataset(root) -> dict[str, list[Episode]]:
    """The whole root read once; episodes grouped by their dataset folder."""
    out: dict[str, list[Episode]] = {}
    for ep in _episodes(_read(root)):
        folder = ep.agent.removeprefix("trajcorpus-fixtures/")
        out.setdefault(folder, []).append(ep)
    return out


def check_against_ground_truth(episodes: list[Episode], gt: dict, env_id: str,
                               dataset_id: str) -> None:
    assert len(episodes) == gt["n_episodes"]
    assert sum(e.length for e in episodes) == gt["total_steps"]
    for ep, g in zip(episodes, gt["episodes"], strict=True):
        assert ep.order == (g["index"],)  # collection order = integer id, not h5py's listing
        assert ep.episode_id == f"{dataset_id}/episode_{g['index']}"
        assert ep.task == env_id and ep.agent == dataset_id
        assert ep.length == g["length"]
        assert ep.return_ == pytest.approx(g["return"], rel=1e-9, abs=1e-9)
        assert (ep.is_terminal, ep.is_truncated) == (g["terminated"], g["truncated"])
        obs = ep.observations["observation"]
        assert ep.observation_kinds == {"observation": "continuous"}
        assert obs.shape == (g["length"], g["obs_dim"]) and obs.dtype == np.dtype(gt["obs_dtype"])
        assert ep.actions.shape == (g["length"], g["action_dim"])
        assert ep.actions.dtype == np.float32 and ep.action_kind == "continuous"
        assert np.all(ep.actions >= np.array(g["action_low"], dtype=np.float32))
        assert np.all(ep.actions <= np.array(g["action_high"], dtype=np.float32))
        assert ep.rewards.dtype == np.float32 and ep.rewards.shape == (g["length"],)
        assert ep.source["final_observation"]["row"] == g["length"]
        assert ep.source["final_observation"]["kept"] is False


@pytest.mark.parametrize("folder", sorted(DATASETS))
def test_each_dataset_matches_ground_truth(root, by_dataset, folder):
    env_id, dataset_id = DATASETS[folder]
    gt = ground_truth(root / folder / "ground_truth.json")
    check_against_ground_truth(by_dataset[folder], gt, env_id, dataset_id)


def test_root_reads_every_dataset_in_unit_order(root):
    src = open_source("minari", str(root))
    keys = [u.key for u in src.units()]
    assert keys == [f"{DATASETS[f][1]}/episodes 0-39" for f in sorted(DATASETS)]
    assert [u.index for u in src.units()] == [0, 1, 2]


def test_one_dataset_folder_and_unit_chunking(root, by_dataset):
    small = _episodes(_read(root / "hopper/mixed-v0", episodes_per_unit=7))
    assert len(open_source("minari", str(root / "hopper/mixed-v0"),
                           options={"episodes_per_unit": 7}).units()) == 6  # ceil(40 / 7)
    whole = by_dataset["hopper/mixed-v0"]
    assert [e.episode_id for e in small] == [e.episode_id for e in whole]
    assert all(np.array_equal(a.observations["observation"], b.observations["observation"])
               for a, b in zip(small, whole, strict=True))


def test_arrow_backend_equals_hdf5_backend(by_dataset):
    """The two copies hold bit-identical rollouts (the generator asserted it)."""
    for a, b in zip(by_dataset["hopper/mixed-v0"], by_dataset["hopper/mixed-arrow-v0"],
                    strict=True):
        assert np.array_equal(a.observations["observation"], b.observations["observation"])
        assert np.array_equal(a.actions, b.actions) and np.array_equal(a.rewards, b.rewards)
        assert a.return_ == b.return_


def test_reset_observation_and_dropped_final_observation(fixtures, by_dataset):
    """obs[0] is the reset state: Hopper-v5 resets qpos = init_qpos + U(-5e-3, 5e-3) (init height
    1.25), qvel = U(-5e-3, 5e-3). The D4RL copy of the same rollouts (a separate file) holds the
    reset observation at flat_start and the dropped final one as next_observations of the last row.
    """
    gt = ground_truth(fixtures / "mujoco/d4rl/hopper-mixed-v2.ground_truth.json")
    with h5py.File(fixtures / "mujoco/d4rl/hopper-mixed-v2.hdf5", "r") as f:
        d4_obs, d4_next = f["observations"][()], f["next_observations"][()]
    for ep, g in zip(by_dataset["hopper/mixed-v0"], gt["episodes"], strict=True):
        first = ep.observations["observation"][0]
        assert abs(first[0] - 1.25) <= 5e-3 and np.all(np.abs(first[1:]) <= 5e-3 + 1e-12)
        assert np.array_equal(first.astype(np.float32), d4_obs[g["flat_start"]])
        with h5py.File(ep.source["final_observation"]["uri"], "r") as f:
            final = f[ep.source["final_observation"]["key"]][ep.source["final_observation"]["row"]]
        assert np.array_equal(final.astype(np.float32), d4_next[g["flat_start"] + g["length"] - 1])
    for ep in by_dataset["halfcheetah/mixed-v0"]:  # HalfCheetah-v5: qpos noise U(-0.1, 0.1)
        assert np.all(np.abs(ep.observations["observation"][0][:8]) <= 0.1)


def test_gcs_matches_ground_truth(gcs, root):
    uri = gcs.upload(root / "hopper", "test_source_minari/hopper")
    items = _episodes(_read(uri))
    assert {e.agent for e in items} == {DATASETS["hopper/mixed-v0"][1],
                                        DATASETS["hopper/mixed-arrow-v0"][1]}
    for folder in ("hopper/mixed-v0", "hopper/mixed-arrow-v0"):
        eps = [e for e in items if e.agent == DATASETS[folder][1]]
        check_against_ground_truth(eps, ground_truth(root / folder / "ground_truth.json"),
                                   *DATASETS[folder])
        assert all(e.source["uri"].startswith("gs://trajcorpus-test/") for e in eps)


def test_templates_and_names(root):
    src = open_source("minari", str(root / "halfcheetah/mixed-v0"),
                      task_template="mujoco/{env_id}", agent_template="{dataset_id}#x")
    ep = next(src.episodes())
    assert (ep.task, ep.agent) == ("mujoco/HalfCheetah-v5",
                                   "trajcorpus-fixtures/halfcheetah/mixed-v0#x")
    bad = open_source("minari", str(root / "halfcheetah/mixed-v0"), task_template="{nope}")
    with pytest.raises(SourceError, match="unknown field"):
        bad.units()


# -- bad inputs --------------------------------------------------------------------------------
@pytest.fixture
def hopper_copy(root, tmp_path) -> Path:
    dst = tmp_path / "hopper" / "mixed-v0"
    shutil.copytree(root / "hopper/mixed-v0", dst)
    return dst


def _edit(h5: Path, fn) -> None:
    with h5py.File(h5, "r+") as f:
        fn(f)


def _rejects(items) -> list[Rejected]:
    return [x for x in items if isinstance(x, Rejected)]


def test_missing_key_rejects_only_that_episode(hopper_copy):
    h5 = hopper_copy / "data/main_data.hdf5"
    _edit(h5, lambda f: f["episode_3"].__delitem__("rewards"))
    items = _read(hopper_copy)
    bad = _rejects(items)
    assert len(items) == 40 and len(bad) == 1
    assert "main_data.hdf5" in bad[0].location and "[episode_3/rewards]" in bad[0].location
    assert bad[0].reason == "missing dataset" and bad[0].task == "Hopper-v5"
    with pytest.raises(SourceError, match=r"episode_3/rewards.*missing dataset"):
        list(open_source("minari", str(hopper_copy)).episodes())


def test_mismatched_lengths_are_rejected_with_the_key(hopper_copy):
    h5 = hopper_copy / "data/main_data.hdf5"

    def shorten(f):
        acts = f["episode_5/actions"][()]
        del f["episode_5/actions"]
        f["episode_5"].create_dataset("actions", data=acts[:-1])
        obs = f["episode_6/observations"][()]
        del f["episode_6/observations"]
        f["episode_6"].create_dataset("observations", data=obs[:-1])  # N rows instead of N+1

    _edit(h5, shorten)
    bad = {r.location.rsplit("[", 1)[1]: r.reason for r in _rejects(_read(hopper_copy))}
    n5 = ground_truth(hopper_copy / "ground_truth.json")["episodes"][5]["length"]
    n6 = ground_truth(hopper_copy / "ground_truth.json")["episodes"][6]["length"]
    assert bad == {
        "episode_5/actions]": f"has {n5 - 1} steps but rewards has {n5}",
        "episode_6/observations]": f"has {n6} rows; Minari stores steps + 1 = {n6 + 1} "
                                   f"observations for {n6} steps",
    }


def test_nan_reward_is_rejected(hopper_copy):
    def poison(f):
        f["episode_7/rewards"][2] = np.nan

    _edit(hopper_copy / "data/main_data.hdf5", poison)
    (bad,) = _rejects(_read(hopper_copy))
    assert bad.location.endswith("main_data.hdf5 [episode_7]")
    assert "'rewards'" in bad.reason and "non-finite value nan at step 2" in bad.reason


def test_missing_metadata_json(hopper_copy):
    (hopper_copy / "data/metadata.json").unlink()
    with pytest.raises(SourceError) as e:
        open_source("minari", str(hopper_copy)).units()
    assert "data/metadata.json" in str(e.value) and "missing Minari metadata" in str(e.value)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("env_spec", "{not json", "[env_spec]: not a JSON environment spec"),
    ("observation_space", None, "[observation_space]: missing field"),
    ("observation_space", json.dumps({"type": "Box", "dtype": "float99", "shape": [3]}),
     "[observation_space/action_space]: malformed space description"),
    ("action_space", json.dumps({"type": "Dict", "subspaces": {}}),
     "[action_space]: Dict action spaces are not supported"),
    ("data_format", "parquet", "[data_format]: data_format 'parquet' is not supported"),
])
def test_bad_metadata_fields(hopper_copy, field, value, message):
    path = hopper_copy / "data/metadata.json"
    meta = json.loads(path.read_text())
    meta[field] = value
    path.write_text(json.dumps(meta))
    with pytest.raises(SourceError) as e:
        open_source("minari", str(hopper_copy)).units()
    assert str(e.value).startswith(f"{path} {message}")


def test_not_a_minari_folder(tmp_path):
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(SourceError, match="no Minari dataset found"):
        open_source("minari", str(tmp_path / "empty")).units()
    with pytest.raises(SourceError, match="not found"):
        open_source("minari", str(tmp_path / "absent")).units()


def test_arrow_missing_column_and_bad_file(root, tmp_path):
    dst = tmp_path / "arrow"
    shutil.copytree(root / "hopper/mixed-arrow-v0", dst)
    part = dst / "data/4/part-0.arrow"
    table = ipc.open_file(pa.memory_map(str(part))).read_all().drop_columns(["rewards"])
    with ipc.new_file(str(part), table.schema) as w:
        w.write_table(table)
    (dst / "data/9/part-0.arrow").write_bytes(b"not arrow at all")
    bad = {r.location: r.reason for r in _rejects(_read(dst))}
    assert bad[f"{part} [rewards]"] == "missing column"
    assert bad[str(dst / "data/9/part-0.arrow")].startswith("not an Arrow IPC file")


# -- layouts the fixtures do not cover: Dict observation spaces in both back-ends --------------
DICT_SPACE = {"type": "Dict", "subspaces": {
    "achieved_goal": {"type": "Box", "dtype": "float64", "shape": [2], "low": [-1, -1],
                      "high": [1, 1]},
    "obs": {"type": "Dict", "subspaces": {
        "pos": {"type": "Box", "dtype": "float32", "shape": [2, 2], "low": -1, "high": 1},
        "mode": {"type": "Discrete", "dtype": "int64", "start": 0, "n": 3}}}}}
ACT_SPACE = {"type": "Discrete", "dtype": "int64", "start": 0, "n": 4}


def _dict_dataset(tmp_path: Path, backend: str) -> tuple[Path, dict]:
    """A 3-step episode laid out as minari 0.5 stores Dict spaces (groups / struct columns)."""
    rng = np.random.default_rng(0)
    n = 3
    data = {"achieved_goal": rng.normal(size=(n + 1, 2)),
            "obs/pos": rng.normal(size=(n + 1, 2, 2)).astype(np.float32),
            "obs/mode": np.array([0, 2, 1, 2]), "actions": np.array([3, 0, 1]),
            "rewards": np.array([0.5, -1.0, 2.0])}
    folder = tmp_path / backend / "ds-v0"
    (folder / "data").mkdir(parents=True)
    meta = {"data_format": backend, "dataset_id": "t/ds-v0", "env_spec": None,
            "observation_space": json.dumps(DICT_SPACE), "action_space": json.dumps(ACT_SPACE)}
    (folder / "data/metadata.json").write_text(json.dumps(meta))
    flags = np.array([False, False, True])
    if backend == "hdf5":
        with h5py.File(folder / "data/main_data.hdf5", "w") as f:
            g = f.create_group("episode_0")
            g["observations/achieved_goal"] = data["achieved_goal"]
            g["observations/obs/pos"] = data["obs/pos"]
            g["observations/obs/mode"] = data["obs/mode"]
            g["actions"], g["rewards"] = data["actions"], data["rewards"]
            g["terminations"], g["truncations"] = flags, np.zeros(n, bool)
    else:
        pos = pa.FixedSizeListArray.from_arrays(pa.array(data["obs/pos"].reshape(-1)), 4)
        goal = pa.FixedSizeListArray.from_arrays(pa.array(data["achieved_goal"].reshape(-1)), 2)
        obs = pa.StructArray.from_arrays(
            [goal, pa.StructArray.from_arrays([pos, pa.array(data["obs/mode"], pa.int32())],
                                              names=["pos", "mode"])],
            names=["achieved_goal", "obs"])
        table = pa.table({"observations": obs,
                          "actions": pa.array(np.append(data["actions"], 0), pa.int32()),
                          "rewards": np.append(data["rewards"], 0.0),
                          "terminations": np.append(flags, False),
                          "truncations": np.zeros(n + 1, bool)})
        (folder / "data/0").mkdir()
        with ipc.new_file(str(folder / "data/0/part-0.arrow"), table.schema) as w:
            w.write_table(table)
    return folder, data


@pytest.mark.parametrize("backend", ["hdf5", "arrow"])
def test_dict_observation_space_becomes_nested_names(tmp_path, backend):
    folder, data = _dict_dataset(tmp_path, backend)
    (ep,) = _episodes(_read(folder))
    assert ep.observation_kinds == {"achieved_goal": "continuous", "obs/pos": "continuous",
                                    "obs/mode": "discrete"}
    for name in ep.observation_kinds:
        assert np.array_equal(ep.observations[name], data[name][:3])
    assert ep.observations["obs/pos"].shape == (3, 2, 2)
    assert ep.action_kind == "discrete" and ep.actions.tolist() == [3, 0, 1]
    assert ep.task == "t/ds-v0"  # no env_spec: the dataset id names the task
    assert ep.return_ == 1.5 and ep.is_terminal and not ep.is_truncated
