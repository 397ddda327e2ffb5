"""The rlds reader against robot_stacking/rlds/ground_truth.json (recorded from the dm_env rollout,
not from the files), locally and through gs://, plus damaged inputs made in tmp_path."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import zlib

import numpy as np
import pytest

from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source
from trajcorpus.sources.rlds import Leaf, decode_leaf, flatten_features
from trajcorpus.sources.tfrecord import Example, frame_record, read_records

NAME = "dmc_jaco_stack_2_bricks_vision"
SHARD = f"{NAME}-train.tfrecord-0000"
TENSOR_OBS = ("hand_joints_pos", "hand_joints_vel", "joints_pos", "joints_torque", "joints_vel",
              "pinch_site_pos", "pinch_site_rmat")


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def truth(fixtures) -> dict:
    return json.loads((fixtures / "robot_stacking/rlds/ground_truth.json").read_text())


@pytest.fixture(scope="module")
def dataset_dir(fixtures):
    return fixtures / "robot_stacking/rlds" / NAME / "1.0.0"


def read_all(uri, **options) -> list[Episode | Rejected]:
    return list(open_source("rlds", str(uri), dataset="demo-rlds", options=options).read())


@pytest.fixture(scope="module")
def episodes(dataset_dir):
    return read_all(dataset_dir)


def check_against_truth(episodes, truth):
    assert all(isinstance(e, Episode) for e in episodes), [e for e in episodes
                                                           if isinstance(e, Rejected)]
    assert len(episodes) == truth["num_episodes"] == 12
    for e, g in zip(episodes, truth["episodes"], strict=True):
        loc = g["expected_location"]
        assert e.episode_id == f"{loc['shard_file']}:{loc['record_index']}"
        assert e.order == (int(loc["shard_file"][-5:]), loc["record_index"])
        assert e.source["metadata"]["episode_metadata/episode_id"] == g["episode_id"]
        # RLDS stores transitions + 1 steps; the last holds the final observation and padding
        t = g["num_env_transitions"]
        assert g["num_steps"] == t + 1 and e.length == t and e.source["stored_steps"] == t + 1
        np.testing.assert_allclose(e.rewards, g["rewards"][:t], rtol=1e-6, atol=1e-12)
        assert g["rewards"][t] == 0.0
        assert abs(e.return_ - g["return_float32"]) <= 1e-9 * max(1.0, abs(g["return_float32"]))
        assert abs(e.return_ - g["return"]) <= 1e-6 * max(1.0, abs(g["return"]))
        assert e.is_terminal == g["is_terminal_last_step"] and e.is_truncated == g["truncated"]
        assert e.task == NAME and e.agent == NAME
        assert e.observations["instruction"].tolist() == [g["instruction"]]
        assert e.text() == g["instruction"] and e.observation_kinds["instruction"] == "text"
        for key, spec in g["observation"].items():
            x = e.observations[key]
            assert list(x.shape) == [t, *spec["shape"]] and str(x.dtype) == spec["dtype"], key
            assert e.observation_kinds[key] == ("image" if key == "image" else "continuous")
        assert sha(e.observations["image"][0]) == g["first_image_sha256"]
        assert e.action_kind == "continuous" and list(e.actions.shape) == [t, *g["action_shape"]]
        assert str(e.actions.dtype) == g["action_dtype"]
        assert np.array_equal(e.actions[0], np.asarray(g["first_action"], np.float32))
        assert abs(e.actions.astype(np.float64).sum() - g["action_sum"]) < 1e-6
        # zlib float64 is exact; float64 stored as float_list comes back float32-rounded
        assert np.array_equal(e.observations["joints_pos"][0], np.asarray(g["first_joints_pos"]))
        assert np.array_equal(e.observations["pinch_site_pos"][0],
                              np.asarray(g["first_pinch_site_pos"], np.float32).astype(np.float64))
        assert e.source["metadata"]["episode_metadata/success"] is g["success"]


def test_matches_ground_truth(episodes, truth):
    check_against_truth(episodes, truth)


def test_images_of_every_stored_step_with_final_step_kept(dataset_dir, truth):
    kept = read_all(dataset_dir, final_step="keep")
    for e, g in zip(kept, truth["episodes"], strict=True):
        assert e.length == g["num_steps"] and e.source["final_step"] == "kept"
        assert sha(e.observations["image"]) == g["all_images_sha256"]
        assert sha(e.observations["image"][-1]) == g["last_image_sha256"]
        assert not e.actions[-1].any() and e.rewards[-1] == 0.0  # RLDS padding
        assert abs(e.return_ - g["return_float32"]) <= 1e-9 * max(1.0, abs(g["return_float32"]))


def test_forced_drop_equals_auto_on_padded_episodes(dataset_dir, episodes):
    dropped = read_all(dataset_dir, final_step="drop")
    assert [e.length for e in dropped] == [e.length for e in episodes]


def test_units_are_shards(dataset_dir):
    units = open_source("rlds", str(dataset_dir)).units()
    assert [u.key for u in units] == [f"train/{SHARD}{i}" for i in range(3)]
    assert [u.param("records") for u in units] == [4, 4, 4]
    assert all(u.param("task") == NAME for u in units)


def test_episode_id_from_metadata_and_template_fields(dataset_dir, truth):
    src = open_source("rlds", str(dataset_dir), agent_template="{task_name}/seed{env_seed}",
                      options={"episode_id_key": "episode_metadata/episode_id"})
    eps = list(src.episodes())
    assert [e.episode_id for e in eps] == [f"{NAME}/{g['episode_id']}" for g in truth["episodes"]]
    assert {e.agent for e in eps} == {f"{truth['task']}/seed{truth['params']['env_seed']}"}


def test_through_gcs(dataset_dir, gcs, truth):
    uri = gcs.upload(dataset_dir, f"rlds/{NAME}/1.0.0")
    eps = read_all(uri)
    check_against_truth(eps, truth)
    assert eps[0].source["uri"] == f"{uri}/{SHARD}0"


def test_excluded_keys_are_not_decoded(dataset_dir):
    eps = read_all(dataset_dir, exclude=["steps/observation/image", "*joints_*"])
    assert set(eps[0].observations) == {"instruction", "pinch_site_pos", "pinch_site_rmat"}


# -- features.json decoding -----------------------------------------------------------------------

def test_flatten_features_of_the_fixture(dataset_dir):
    leaves = flatten_features(json.loads((dataset_dir / "features.json").read_text()), "f.json")
    assert leaves["steps/observation/image"] == Leaf("steps/observation/image", "image", "uint8",
                                                     (84, 84, 3), "none", True)
    assert leaves["steps/observation/joints_pos"].encoding == "zlib"
    assert leaves["steps/is_first"].dtype == "bool" and leaves["steps/is_first"].in_sequence
    assert leaves["episode_metadata/task_name"].kind == "text"
    assert not leaves["episode_metadata/episode_id"].in_sequence
    assert len(leaves) == 20


def test_unsupported_feature_names_its_key():
    tree = {"featuresDict": {"features": {"steps": {"sequence": {"feature": {"featuresDict": {
        "features": {"video": {"video": {}}}}}}}}}}
    with pytest.raises(SourceError, match=r"f\.json \[steps/video\]: unsupported feature type"):
        flatten_features(tree, "f.json")


def test_zlib_bomb_is_refused():
    leaf = Leaf("steps/observation/x", "tensor", "float64", (6, 2), "zlib", True)
    bomb = zlib.compress(b"\0" * (1 << 24))
    with pytest.raises(SourceError, match=r"\[steps/observation/x\]: step 0: zlib data inflates "
                       r"beyond the declared 96 bytes"):
        decode_leaf(leaf, [bomb], 1, "u", 0)


def test_declared_float_stored_as_int_is_an_error():
    leaf = Leaf("steps/reward", "tensor", "float64", (), "none", True)
    with pytest.raises(SourceError, match=r"\[steps/reward\]: declared float64 but stored as an "
                       "int64_list"):
        decode_leaf(leaf, np.zeros(3, np.int64), 3, "u", 0)


# -- damaged inputs -------------------------------------------------------------------------------

def copy_dataset(dataset_dir, tmp_path):
    out = tmp_path / NAME
    shutil.copytree(dataset_dir, out)
    return out


def rewrite_shard(folder, index: int, edit) -> list[bytes]:
    """Parse shard ``index``, apply ``edit(list_of_Examples)``, write it back; returns records."""
    path = folder / f"{SHARD}{index}"
    exs = [Example.FromString(r) for r in read_records(str(path))]
    edit(exs)
    records = [e.SerializeToString() for e in exs]
    path.write_bytes(b"".join(frame_record(r) for r in records))
    return records


def test_unknown_feature_key_rejects_the_episode(dataset_dir, tmp_path):
    folder = copy_dataset(dataset_dir, tmp_path)
    rewrite_shard(folder, 1, lambda exs: exs[2].features.feature["steps/extra"]
                  .float_list.value.append(1.0))
    items = read_all(folder)
    bad = [i for i in items if isinstance(i, Rejected)]
    assert len(bad) == 1 and len(items) == 12
    assert f"{SHARD}1" in bad[0].location and "record 2" in bad[0].location
    assert "[steps/extra]" in bad[0].reason and "not declared in features.json" in bad[0].reason
    assert bad[0].task == NAME


def test_missing_key_rejects_the_episode(dataset_dir, tmp_path):
    folder = copy_dataset(dataset_dir, tmp_path)
    rewrite_shard(folder, 0, lambda exs: exs[0].features.feature.pop(
        "steps/observation/joints_vel"))
    items = read_all(folder)
    assert isinstance(items[0], Rejected) and sum(isinstance(i, Episode) for i in items) == 11
    assert "[steps/observation/joints_vel]" in items[0].reason
    assert "declared in features.json but missing" in items[0].reason


def test_wrong_length_rejects_with_key_and_reason(dataset_dir, tmp_path):
    folder = copy_dataset(dataset_dir, tmp_path)

    def cut(exs):
        del exs[3].features.feature["steps/observation/pinch_site_pos"].float_list.value[-1]
    rewrite_shard(folder, 0, cut)
    bad = read_all(folder)[3]
    assert isinstance(bad, Rejected)
    assert "[steps/observation/pinch_site_pos]" in bad.reason
    assert "has 203 values, expected 68 x 3" in bad.reason  # ground truth: 68 steps


def test_corrupt_png_rejects_with_its_step(dataset_dir, tmp_path):
    folder = copy_dataset(dataset_dir, tmp_path)

    def corrupt(exs):
        images = exs[1].features.feature["steps/observation/image"].bytes_list.value
        images[7] = images[7][:100]
    rewrite_shard(folder, 2, corrupt)
    bad = read_all(folder)[9]
    assert isinstance(bad, Rejected) and f"{SHARD}2" in bad.location
    assert "[steps/observation/image[7]]" in bad.reason and "cannot decode image" in bad.reason


def test_bad_data_crc_rejects_the_record_only(dataset_dir, tmp_path):
    folder = copy_dataset(dataset_dir, tmp_path)
    path = folder / f"{SHARD}0"
    data = bytearray(path.read_bytes())
    first = struct.unpack_from("<Q", data, 0)[0]
    data[16 + first + 12 + 1000] ^= 0x40  # inside record 1's data
    path.write_bytes(bytes(data))
    items = read_all(folder)
    assert [type(i) for i in items[:4]] == [Episode, Rejected, Episode, Episode]
    assert len(items) == 12 and "bad data CRC" in items[1].reason
    assert f"@ offset {16 + first}" in items[1].reason


def test_bad_length_crc_rejects_the_rest_of_the_shard(dataset_dir, tmp_path):
    folder = copy_dataset(dataset_dir, tmp_path)
    path = folder / f"{SHARD}1"
    data = bytearray(path.read_bytes())
    first = struct.unpack_from("<Q", data, 0)[0]
    data[16 + first + 8] ^= 0x01  # record 1's length CRC
    path.write_bytes(bytes(data))
    items = read_all(folder)
    unit = [i for i in items if isinstance(i, Rejected)]
    assert len(unit) == 1 and unit[0].kind == "unit" and unit[0].location == str(path)
    assert f"@ offset {16 + first}" in unit[0].reason and "bad length CRC" in unit[0].reason
    assert "after 1 records" in unit[0].reason
    assert sum(isinstance(i, Episode) for i in items) == 9  # 4 + 1 + 4


def test_truncated_record_rejects_the_rest_of_the_shard(dataset_dir, tmp_path):
    folder = copy_dataset(dataset_dir, tmp_path)
    path = folder / f"{SHARD}2"
    path.write_bytes(path.read_bytes()[:-300])
    items = read_all(folder)
    assert isinstance(items[-1], Rejected) and items[-1].kind == "unit"
    assert "record 3: truncated record" in items[-1].reason
    assert sum(isinstance(i, Episode) for i in items) == 11


def test_shard_cut_at_a_record_boundary_is_reported(dataset_dir, tmp_path):
    folder = copy_dataset(dataset_dir, tmp_path)
    rewrite_shard(folder, 2, lambda exs: exs.pop())
    items = read_all(folder)
    assert sum(isinstance(i, Episode) for i in items) == 11
    assert items[-1].kind == "unit"
    assert "shard ends after 3 records but dataset_info.json declares 4" in items[-1].reason


def test_huge_declared_length_rejects_the_shard(dataset_dir, tmp_path):
    folder = copy_dataset(dataset_dir, tmp_path)
    length = struct.pack("<Q", 1 << 45)
    from trajcorpus.sources.tfrecord import masked_crc32c
    path = folder / f"{SHARD}0"
    path.write_bytes(length + struct.pack("<I", masked_crc32c(length)) + path.read_bytes())
    items = [i for i in read_all(folder) if isinstance(i, Rejected)]
    assert len(items) == 1 and "@ offset 0" in items[0].reason
    assert f"declared length {1 << 45} bytes too large" in items[0].reason


def test_missing_features_json(dataset_dir, tmp_path):
    folder = copy_dataset(dataset_dir, tmp_path)
    (folder / "features.json").unlink()
    with pytest.raises(SourceError) as e:
        open_source("rlds", str(folder)).units()
    assert str(folder / "features.json") in str(e.value)
    assert "missing features.json" in str(e.value)


def test_unknown_split_and_option(dataset_dir):
    with pytest.raises(SourceError, match=r"no split 'test' \(has: \['train'\]\)"):
        open_source("rlds", str(dataset_dir), options={"split": "test"}).units()
    with pytest.raises(SourceError, match=r"unknown rlds option 'finalstep'"):
        open_source("rlds", str(dataset_dir), options={"finalstep": "keep"})


# -- a hand-made dataset for paths the fixture does not take --------------------------------------

def tensor(dtype, *dims):
    return {"tensor": {"dtype": dtype, "encoding": "none",
                       "shape": {"dimensions": [str(d) for d in dims]} if dims else {}}}


def write_synthetic(tmp_path, instructions, actions_a, actions_b, rewards, last=(0, 0)):
    """One episode: dict actions (int + bool), a ClassLabel observation, per-step text."""
    folder = tmp_path / "toy" / "0.1.0"
    folder.mkdir(parents=True)
    steps = {"featuresDict": {"features": {
        "action": {"featuresDict": {"features": {"a": tensor("int64"), "b": tensor("bool")}}},
        "observation": {"featuresDict": {"features": {
            "state": {"featuresDict": {"features": {"pos": tensor("float32", 2)}}},
            "mode": {"classLabel": {"numClasses": "3"}}}}},
        "reward": tensor("float32"), "language_instruction": {"text": {}},
        "is_first": tensor("bool"), "is_last": tensor("bool"), "is_terminal": tensor("bool")}}}
    features = {"featuresDict": {"features": {
        "steps": {"sequence": {"feature": steps, "length": "-1"}},
        "episode_metadata": {"featuresDict": {"features": {"agent_id": {"text": {}}}}}}}}
    (folder / "features.json").write_text(json.dumps(features))
    (folder / "dataset_info.json").write_text(json.dumps({
        "name": "toy", "version": "0.1.0", "fileFormat": "tfrecord",
        "splits": [{"name": "train", "shardLengths": ["1"]}]}))
    n = len(rewards)
    ex = Example()
    f = ex.features.feature
    f["steps/action/a"].int64_list.value.extend(actions_a)
    f["steps/action/b"].int64_list.value.extend(actions_b)
    f["steps/observation/state/pos"].float_list.value.extend(np.arange(2 * n, dtype=np.float32))
    f["steps/observation/mode"].int64_list.value.extend([i % 3 for i in range(n)])
    f["steps/reward"].float_list.value.extend(rewards)
    f["steps/language_instruction"].bytes_list.value.extend(s.encode() for s in instructions)
    f["steps/is_first"].int64_list.value.extend([1] + [0] * (n - 1))
    f["steps/is_last"].int64_list.value.extend([0] * (n - 1) + [1])
    f["steps/is_terminal"].int64_list.value.extend([0] * (n - 1) + [1])
    f["episode_metadata/agent_id"].bytes_list.value.append(b"operator-7")
    (folder / "toy-train.tfrecord-00000-of-00001").write_bytes(frame_record(ex.SerializeToString()))
    return folder


def test_dict_actions_per_step_text_and_a_real_last_action(tmp_path):
    folder = write_synthetic(tmp_path, ["reach", "reach", "grasp"], [3, 1, 2], [0, 1, 1],
                             [0.0, 0.5, 1.0])
    (e,) = open_source("rlds", str(folder)).episodes()
    # the last step carries a real action and reward: kept under final_step auto
    assert e.length == 3 and e.source["final_step"] == "kept" and e.return_ == 1.5
    assert e.action_kind == "discrete" and e.actions.tolist() == [[3, 0], [1, 1], [2, 1]]
    assert e.source["action_keys"] == ["steps/action/a", "steps/action/b"]
    assert e.observations["instruction"].tolist() == ["reach", "reach", "grasp"]
    assert e.observations["state/pos"].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert e.observation_kinds["state/pos"] == "continuous"
    assert e.observations["mode"].tolist() == [0, 1, 2] and e.observation_kinds["mode"] == "discrete"
    assert e.agent == "operator-7" and e.task == "toy" and e.is_terminal
    assert e.episode_id == "toy-train.tfrecord-00000-of-00001:0"


def test_padding_last_step_is_dropped_and_empty_text_omitted(tmp_path):
    folder = write_synthetic(tmp_path, ["", "", ""], [3, 1, 0], [1, 1, 0], [0.0, 0.5, 0.0])
    (e,) = open_source("rlds", str(folder)).episodes()
    assert e.length == 2 and e.actions.tolist() == [[3, 1], [1, 1]]
    assert "instruction" not in e.observations
