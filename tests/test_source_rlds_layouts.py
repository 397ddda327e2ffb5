"""RLDS episodes the fixture does not hold, written in tmp_path as TFDS lays them out (one
tf.train.Example per episode, step features concatenated over the steps, features.json describing
each key) from values we choose (the ground truth).

Written for the mutation run of sources/rlds.py (docs/mutation-testing.md): each bad record
asserts the exact location and "[key]: reason" of its rejection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source
from trajcorpus.sources.tfrecord import Example, frame_record


def tensor(dtype: str, *dims: int) -> dict:
    return {"tensor": {"dtype": dtype, "encoding": "none",
                       "shape": {"dimensions": [str(d) for d in dims]} if dims else {}}}


def text() -> dict:
    return {"text": {}}


FLAGS = {"is_first": tensor("bool"), "is_last": tensor("bool"), "is_terminal": tensor("bool")}


def features_json(steps: dict, metadata: dict | None = None) -> dict:
    top = {"steps": {"sequence": {"feature": {"featuresDict": {"features": steps}},
                                  "length": "-1"}}}
    if metadata:
        top["episode_metadata"] = {"featuresDict": {"features": metadata}}
    return {"featuresDict": {"features": top}}


def example(values: dict) -> bytes:
    """{key: list of ints | floats | bytes} -> a serialized tf.train.Example."""
    ex = Example()
    for key, vals in values.items():
        feat = ex.features.feature[key]
        vals = list(vals)
        if vals and isinstance(vals[0], bytes):
            feat.bytes_list.value.extend(vals)
        elif vals and isinstance(vals[0], float):
            feat.float_list.value.extend(vals)
        else:
            feat.int64_list.value.extend(int(v) for v in vals)
    return ex.SerializeToString()


def write_rlds(folder: Path, features: dict, splits: dict[str, list[list[dict]]],
               name: str = "toy") -> Path:
    """``splits``: split -> shards -> records (each a dict for :func:`example`)."""
    folder.mkdir(parents=True)
    (folder / "features.json").write_text(json.dumps(features))
    info = {"name": name, "version": "0.1.0", "fileFormat": "tfrecord", "splits": []}
    for split, shards in splits.items():
        info["splits"].append({"name": split, "shardLengths": [str(len(s)) for s in shards]})
        for i, records in enumerate(shards):
            path = folder / f"{name}-{split}.tfrecord-{i:05d}-of-{len(shards):05d}"
            path.write_bytes(b"".join(frame_record(example(r)) for r in records))
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return folder


def flags(n: int, terminal: bool = True) -> dict[str, list[int]]:
    return {"steps/is_first": [1] + [0] * (n - 1), "steps/is_last": [0] * (n - 1) + [1],
            "steps/is_terminal": [0] * (n - 1) + [int(terminal)]}


def read(folder: Path, **options) -> list[Episode | Rejected]:
    return list(open_source("rlds", str(folder), options=options).read())


def shard(folder: Path, split: str = "train", i: int = 0, n: int = 1, name: str = "toy") -> Path:
    return folder / f"{name}-{split}.tfrecord-{i:05d}-of-{n:05d}"


# -- actions, observations and rewards of every kind ---------------------------------------------
MIXED = {"observation": {"featuresDict": {"features": {
    "grip": tensor("bool", 2), "pos": tensor("float32", 3), "note": text()}}},
    "action": {"featuresDict": {"features": {"gear": tensor("int64", 2), "torque": tensor("float32")}}},
    "reward": tensor("float64", 1), "discount": tensor("float32"), "extra_info": tensor("int64"),
    **FLAGS}
MIXED_META = {"agent_id": text(), "seed": tensor("int64"), "tags": tensor("int64", 3),
              "big": tensor("float32", 65), "edge": tensor("int64", 64),
              "language_instruction": text()}


def mixed_record(n: int = 3, last_action: float = 0.0, last_reward: float = 0.0) -> dict:
    rng = np.random.default_rng(n)
    gear = rng.integers(-5, 5, (n, 2))
    torque = np.append(rng.normal(size=n - 1), last_action).astype(np.float32)
    gear[-1] = 0 if last_action == 0.0 else gear[-1]
    rewards = np.append(np.arange(1, n) * 0.5, last_reward)
    return {"steps/observation/grip": (np.arange(2 * n) % 3 == 0).astype(int),
            "steps/observation/pos": [float(x) for x in np.arange(3 * n, dtype=np.float32)],
            "steps/observation/note": [b"same"] * n,
            "steps/action/gear": gear.reshape(-1), "steps/action/torque": [float(x) for x in torque],
            "steps/reward": [float(r) for r in rewards], "steps/discount": [1.0] * n,
            "steps/extra_info": list(range(n)), **flags(n),
            "episode_metadata/agent_id": [b"op-3"], "episode_metadata/seed": [42],
            "episode_metadata/tags": [7, 8, 9],
            "episode_metadata/big": [0.5] * 65, "episode_metadata/edge": list(range(64)),
            "episode_metadata/language_instruction": [b"stack the red brick"]}


def test_mixed_actions_bool_and_text_observations_metadata(tmp_path):
    rec = mixed_record(4)
    folder = write_rlds(tmp_path / "toy", features_json(MIXED, MIXED_META), {"train": [[rec]]})
    (e,) = read(folder)
    assert isinstance(e, Episode), e
    # the padding last step (zero action and reward, is_last) is dropped: 3 agent steps
    assert e.length == 3 and e.source["final_step"] == "dropped" and e.source["stored_steps"] == 4
    assert e.rewards.tolist() == [0.5, 1.0, 1.5] and e.return_ == 3.0
    # integer and float action parts: continuous, the float parts' dtype, sorted keys concatenated
    assert e.action_kind == "continuous" and e.actions.dtype == np.float32
    gear = np.asarray(rec["steps/action/gear"]).reshape(4, 2)[:3]
    torque = np.asarray(rec["steps/action/torque"], np.float32)[:3, None]
    assert np.array_equal(e.actions, np.concatenate([gear, torque], axis=1).astype(np.float32))
    assert e.source["action_keys"] == ["steps/action/gear", "steps/action/torque"]
    assert e.observation_kinds == {"grip": "discrete", "pos": "continuous", "note": "text",
                                   "instruction": "text"}
    assert e.observations["grip"].dtype == np.uint8
    assert e.observations["grip"].tolist() == [[1, 0], [0, 1], [0, 0]]
    assert e.observations["pos"].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert e.observations["note"].tolist() == ["same"]  # constant text: one per episode
    assert e.observations["note"].dtype == object == e.observations["instruction"].dtype
    assert e.observations["instruction"].tolist() == ["stack the red brick"]
    assert e.agent == "op-3" and e.task == "toy" and e.is_terminal and not e.is_truncated
    assert e.source["metadata"] == {"episode_metadata/agent_id": "op-3",
                                    "episode_metadata/seed": 42,
                                    "episode_metadata/tags": [7, 8, 9],
                                    "episode_metadata/edge": list(range(64)),  # up to 64 kept
                                    "episode_metadata/language_instruction":
                                        "stack the red brick"}
    assert e.source["ignored_keys"] == ["steps/extra_info"]
    assert e.order == (0, 0) and e.episode_id == f"{shard(folder).name}:0"


def test_integer_actions_of_several_values_and_a_real_last_step(tmp_path):
    feats = {"observation": tensor("float32", 1), "action": tensor("int64", 2),
             "reward": tensor("float32"), **FLAGS}
    rec = {"steps/observation": [0.0, 1.0], "steps/action": [1, 2, 0, 0],
           "steps/reward": [0.0, 0.0], **flags(2, terminal=False)}
    # the last step's action is zero and its reward too: dropped under auto
    folder = write_rlds(tmp_path / "a", features_json(feats), {"train": [[rec]]})
    (e,) = read(folder)
    assert e.length == 1 and e.actions.tolist() == [[1, 2]] and e.actions.dtype == np.int64
    assert e.action_kind == "discrete" and e.is_truncated and not e.is_terminal
    rec["steps/action"] = [1, 2, 0, 3]  # a real last action: kept
    folder = write_rlds(tmp_path / "b", features_json(feats), {"train": [[rec]]})
    (e,) = read(folder)
    assert e.length == 2 and e.actions.tolist() == [[1, 2], [0, 3]]
    rec["steps/action"], rec["steps/reward"] = [1, 2, 0, 0], [0.0, 0.25]  # a real last reward
    folder = write_rlds(tmp_path / "c", features_json(feats), {"train": [[rec]]})
    (e,) = read(folder)
    assert e.length == 2 and e.return_ == 0.25
    # forced: drop removes a real last step, keep keeps a padding one
    (e,) = read(folder, final_step="drop")
    assert e.length == 1 and e.source["final_step"] == "dropped"
    rec["steps/reward"] = [0.0, 0.0]
    folder = write_rlds(tmp_path / "d", features_json(feats), {"train": [[rec]]})
    (e,) = read(folder, final_step="keep")
    assert e.length == 2 and e.source["final_step"] == "kept"


def test_no_actions_no_flags(tmp_path):
    """Without is_last the last stored step counts as last; without actions its padding is a zero
    reward alone; without is_terminal the episode is truncated."""
    feats = {"observation": tensor("int64"), "reward": tensor("float32")}
    rec = {"steps/observation": [4, 5, 6], "steps/reward": [1.0, 2.0, 0.0]}
    folder = write_rlds(tmp_path / "a", features_json(feats), {"train": [[rec]]})
    (e,) = read(folder)
    assert e.length == 2 and e.action_kind == "none" and e.actions.shape == (2, 0)
    assert e.actions.dtype == np.float32
    assert e.observations["observation"].tolist() == [4, 5]
    assert e.observation_kinds == {"observation": "discrete"}
    assert not e.is_terminal and e.is_truncated and e.source["action_keys"] == []
    rec["steps/reward"] = [1.0, 2.0, 3.0]
    folder = write_rlds(tmp_path / "b", features_json(feats), {"train": [[rec]]})
    (e,) = read(folder)
    assert e.length == 3 and e.return_ == 6.0 and e.source["final_step"] == "kept"


def test_per_step_instruction_and_two_splits(tmp_path):
    feats = {"observation": tensor("float32"), "action": tensor("float32"),
             "reward": tensor("float32"), "language_instruction": text(), **FLAGS}

    def rec(n, words):
        return {"steps/observation": [float(i) for i in range(n)],
                "steps/action": [1.0] * n, "steps/reward": [1.0] * n,
                "steps/language_instruction": words, **flags(n)}

    splits = {"train": [[rec(2, [b"a", b"b"])], [rec(3, [b"x", b"", b"x"])]],
              "test": [[rec(2, [b"", b""])]]}
    folder = write_rlds(tmp_path / "toy", features_json(feats), splits)
    items = read(folder, split=["test", "train"])
    assert [e.order for e in items] == [(0, 0, 0), (1, 0, 0), (1, 1, 0)]
    assert "instruction" not in items[0].observations  # all empty: no text
    assert items[1].observations["instruction"].tolist() == ["a", "b"]
    assert items[2].observations["instruction"].tolist() == ["x", "", "x"]
    assert items[1].observations["instruction"].dtype == object
    assert [e.source["split"] for e in items] == ["test", "train", "train"]
    assert [e.episode_id for e in items] == [
        f"{shard(folder, 'test').name}:0", f"{shard(folder, 'train', 0, 2).name}:0",
        f"{shard(folder, 'train', 1, 2).name}:0"]


# -- records that are not one episode: each rejected alone, with its key and reason ----------------
SIMPLE = {"observation": tensor("float32"), "action": tensor("float32"),
          "reward": tensor("float32"), **FLAGS}


def simple(n: int = 3, **changes) -> dict:
    rec = {"steps/observation": [float(i) for i in range(n)], "steps/action": [1.0] * n,
           "steps/reward": [1.0] * n, **flags(n)}
    rec.update(changes)
    return rec


BAD_RECORDS = [  # (features, record, key, reason)
    (SIMPLE, simple(is_first=None, **{"steps/is_first": [0, 0, 0]}), "steps/is_first",
     "the first stored step is not marked is_first"),
    (SIMPLE, simple(**{"steps/is_first": [1, 0, 1]}), "steps/is_first",
     "step 2 is marked is_first: a new episode starts inside this record"),
    (SIMPLE, simple(**{"steps/is_last": [0, 1, 1]}), "steps/is_last",
     "step 1 is marked is_last, before the last stored step 2"),
    (SIMPLE, simple(1, **{"steps/action": [0.0], "steps/reward": [0.0]}), "steps/is_first",
     "episode has 1 stored step(s) and no agent step"),
    ({**SIMPLE, "reward": tensor("float32", 2)}, simple(**{"steps/reward": [1.0] * 6}),
     "steps/reward", "reward per step must be a scalar, got shape [2]"),
    ({**SIMPLE, "action": text()}, simple(**{"steps/action": [b"up"] * 3}), "steps/action",
     "text actions are not supported"),
    ({**SIMPLE, "is_first": tensor("bool", 2)}, simple(**{"steps/is_first": [1, 0, 0]}),
     "steps/is_first", "3 values are not a whole number of steps of 2"),
    (SIMPLE, simple(**{"steps/extra": [1, 2, 3]}), "steps/extra",
     "feature not declared in features.json"),
    (SIMPLE, simple(**{"steps/observation": [0.5, 1.5]}), "steps/observation",
     "has 2 values, expected 3 x 1 (steps x values per step)"),
    (SIMPLE, {k: [] for k in simple()}, "steps", "episode has no steps"),
    ({**SIMPLE, "is_terminal": tensor("int64")}, simple(**{"steps/is_terminal": [0, 2, 1]}),
     "steps/is_terminal", "flag value 2 at step 1 is not 0 or 1"),
]


@pytest.mark.parametrize(("features", "record", "key", "reason"), BAD_RECORDS,
                         ids=[r[3][:30] for r in BAD_RECORDS])
def test_bad_record_is_rejected_alone(tmp_path, features, record, key, reason):
    """Beside good records when the features allow them, else alone in its shard."""
    record = {k: v for k, v in record.items() if k != "is_first"}
    around = features is SIMPLE
    records = [simple(2), record, simple(4)] if around else [record]
    folder = write_rlds(tmp_path / "toy", features_json(features), {"train": [records]})
    items = read(folder)
    assert [type(x) for x in items] == ([Episode, Rejected, Episode] if around else [Rejected])
    bad = items[1] if around else items[0]
    offset = 12 + len(example(simple(2))) + 4 if around else 0
    where = f"{shard(folder)} @ offset {offset}"
    assert bad.location == f"{where} (record {int(around)})"
    assert bad.reason == f"{where} [{key}]: {reason}"
    assert bad.task == "toy" and bad.kind == "episode"


def test_episode_id_key_must_name_scalar_metadata(tmp_path):
    meta = {"episode_id": tensor("int64")}
    rec = simple(**{"episode_metadata/episode_id": [17]})
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE, meta), {"train": [[rec]]})
    (e,) = read(folder, episode_id_key="episode_metadata/episode_id")
    assert e.episode_id == "toy/17"
    (bad,) = read(folder, episode_id_key="episode_metadata/nope")
    assert bad.reason == (f"{shard(folder)} @ offset 0 [episode_metadata/nope]: option "
                          "episode_id_key names no scalar episode-metadata feature")


def test_last_step_not_marked_is_last_is_an_agent_step(tmp_path):
    """A zero action and reward at the end is padding only on the step marked is_last."""
    rec = simple(3, **{"steps/action": [1.0, 1.0, 0.0], "steps/reward": [1.0, 1.0, 0.0],
                       "steps/is_last": [0, 0, 0]})
    (e,) = read(write_rlds(tmp_path / "a", features_json(SIMPLE), {"train": [[rec]]}))
    assert e.length == 3 and e.source["final_step"] == "kept"
    rec["steps/is_last"] = [0, 0, 1]
    folder = write_rlds(tmp_path / "b", features_json(SIMPLE), {"train": [[rec]]})
    (e,) = read(folder)
    assert e.length == 2 and e.source["final_step"] == "dropped"
    assert "ignored_keys" not in e.source  # steps/action is the action, not an unused key
    assert e.source == {"uri": str(shard(folder)), "record": 0, "offset": 0,
                        "split": "train", "shard": 0, "stored_steps": 3,
                        "final_step": "dropped", "action_keys": ["steps/action"], "metadata": {}}


def test_template_fields_from_nested_and_top_level_metadata(tmp_path):
    """Every scalar metadata leaf is a template field by its last name, whether nested
    (episode_metadata/env/seed) or a top-level feature (run); plus the dataset's own fields."""
    feats = features_json(SIMPLE, {"env": {"featuresDict": {"features": {"seed": tensor("int64")}}}})
    feats["featuresDict"]["features"]["run"] = text()
    rec = simple(**{"episode_metadata/env/seed": [9], "run": [b"r2"]})
    folder = write_rlds(tmp_path / "toy", feats, {"train": [[rec]]})
    src = open_source("rlds", str(folder), task_template="{dataset_name}@{version}/{split}",
                      agent_template="{run}-{seed}")
    (e,) = src.episodes()
    assert (e.task, e.agent) == ("toy@0.1.0/train", "r2-9")
    assert e.source["metadata"] == {"episode_metadata/env/seed": 9, "run": "r2"}


def test_scalar_integer_action_and_a_text_action_part(tmp_path):
    """One integer action per step is a [T] discrete action; a text part among the action keys
    is refused by its own key."""
    feats = {**SIMPLE, "action": tensor("int64")}
    rec = simple(**{"steps/action": [3, 1, 2]})
    (e,) = read(write_rlds(tmp_path / "a", features_json(feats), {"train": [[rec]]}))
    assert e.actions.shape == (3,) and e.actions.tolist() == [3, 1, 2]
    assert e.action_kind == "discrete" and e.actions.dtype == np.int64
    feats = {**SIMPLE, "action": {"featuresDict": {"features": {"a": tensor("int64"),
                                                                "b": text()}}}}
    rec = simple(**{"steps/action/a": [1, 2, 3], "steps/action/b": [b"up"] * 3})
    del rec["steps/action"]
    folder = write_rlds(tmp_path / "b", features_json(feats), {"train": [[rec]]})
    (bad,) = read(folder)
    assert bad.reason == f"{shard(folder)} @ offset 0 [steps/action/b]: text actions are not supported"


def test_float32_rewards_summed_in_float64_and_one_step_of_shaped_reward(tmp_path):
    """float_list rewards are float32: [1, 2**-24 x 3] sums to 1.0 in float32, exactly
    1 + 3 * 2**-24 in float64. A reward declared with shape [1] over a single stored step."""
    tiny = float(2.0 ** -24)
    rec = simple(4, **{"steps/reward": [1.0, tiny, tiny, tiny], "steps/action": [1.0] * 4})
    (e,) = read(write_rlds(tmp_path / "a", features_json(SIMPLE), {"train": [[rec]]}))
    assert e.length == 4 and e.return_ == 1.0 + 3 * tiny
    feats = {**SIMPLE, "reward": tensor("float32", 1)}
    (e,) = read(write_rlds(tmp_path / "b", features_json(feats),
                           {"train": [[simple(1, **{"steps/reward": [2.5]})]]}))
    assert e.length == 1 and e.rewards.tolist() == [2.5] and e.return_ == 2.5


def test_record_that_is_not_an_example_names_its_offset(tmp_path):
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE), {"train": [[simple(2)]]})
    path = shard(folder)
    path.write_bytes(path.read_bytes() + frame_record(b"\xff\xff\xff"))
    items = read(folder)
    assert isinstance(items[0], Episode) and isinstance(items[1], Rejected)
    offset = 12 + len(example(simple(2))) + 4
    assert items[1].location == f"{path} @ offset {offset} (record 1)"
    assert items[1].reason.startswith(f"{path} @ offset {offset}: ")


def test_max_record_bytes_bounds_inflated_leaves(tmp_path):
    """``max_record_bytes`` also bounds a zlib leaf's decoded size: 2 steps of 250 float64 zeros
    (4,000 bytes inflated, a few dozen stored) pass at 8,000 and are refused at 3,000."""
    import zlib
    feats = {**SIMPLE, "observation": {"tensor": {"dtype": "float64", "encoding": "zlib",
                                                  "shape": {"dimensions": ["250"]}}}}
    blob = zlib.compress(np.zeros(250).tobytes())
    rec = simple(2, **{"steps/observation": [blob, blob]})
    folder = write_rlds(tmp_path / "toy", features_json(feats), {"train": [[rec]]})
    (e,) = read(folder, max_record_bytes=8000)
    assert isinstance(e, Episode) and e.observations["observation"].shape == (2, 250)
    (bad,) = read(folder, max_record_bytes=3000)
    assert isinstance(bad, Rejected) and "[steps/observation]" in bad.reason
    assert "3000" in bad.reason
