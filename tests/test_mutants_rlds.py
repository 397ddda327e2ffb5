"""RLDS reader: what decides which records of a shard are read (the compression and record-size
options, a damaged record or framing), which keys ``exclude`` may drop, the task of a dataset
without a name, and the units a dataset_info.json lists; on datasets written here as TFDS lays
them out, from values we choose (the ground truth).

Written for the mutation run of sources/rlds.py's planning and shard reading
(docs/mutation-testing.md)."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest

from test_source_rlds_layouts import (
    MIXED,
    MIXED_META,
    SIMPLE,
    features_json,
    mixed_record,
    read,
    shard,
    simple,
    write_rlds,
)
from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source


def _record_lengths(path) -> list[int]:
    """Data length of each framed record: 8 length + 4 CRC + data + 4 CRC bytes."""
    data, out, at = path.read_bytes(), [], 0
    while at < len(data):
        n = struct.unpack_from("<Q", data, at)[0]
        out.append(n)
        at += 16 + n
    return out


def test_the_compression_option_is_obeyed_not_guessed(tmp_path):
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE), {"train": [[simple(2)]]})
    path = shard(folder)
    (unit,) = read(folder, compression="gzip")
    assert isinstance(unit, Rejected) and (unit.kind, unit.task) == ("unit", "toy")
    assert unit.location == str(path) and "gzip" in unit.reason
    path.write_bytes(gzip.compress(path.read_bytes()))
    (ep,) = read(folder, compression="gzip")
    assert isinstance(ep, Episode) and ep.length == 2
    (unit,) = read(folder, compression="none")
    assert isinstance(unit, Rejected) and unit.kind == "unit"


def test_max_record_bytes_bounds_the_records_of_a_shard(tmp_path):
    records = [simple(2), simple(3)]
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE), {"train": [records]})
    first, second = _record_lengths(shard(folder))
    assert first < second
    eps = read(folder, max_record_bytes=second)
    assert [e.length for e in eps] == [2, 3]
    items = read(folder, max_record_bytes=second - 1)
    assert [type(i) for i in items] == [Episode, Rejected]
    assert items[1].kind == "unit" and items[1].location == str(shard(folder))
    assert items[1].reason == (
        f"{shard(folder)} @ offset {16 + first}: record 1: declared length {second} bytes too large "
        f"(limit {second - 1}) (framing lost: the rest of the shard "
        "after 1 records is unreadable)")


def test_broken_framing_at_the_first_record_and_after_one(tmp_path):
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE), {"train": [[simple(2)]]})
    path = shard(folder)
    good = path.read_bytes()
    path.write_bytes(good[:10])
    (unit,) = read(folder)
    assert (unit.dataset, unit.location, unit.kind, unit.task) == (
        "rlds", str(path), "unit", "toy")
    assert unit.reason == f"{path} @ offset 0: record 0: truncated record header (10 of 12 bytes)"
    path.write_bytes(good + good[:10])
    ep, unit = read(folder)
    assert isinstance(ep, Episode) and unit.task == "toy" and unit.kind == "unit"
    assert unit.reason == (f"{path} @ offset {len(good)}: record 1: truncated record header "
                           "(10 of 12 bytes) (framing lost: the rest of the shard after 1 records "
                           "is unreadable)")


def test_a_bad_data_crc_rejects_its_record_at_its_offset(tmp_path):
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE),
                        {"train": [[simple(2), simple(3), simple(4)]]})
    path = shard(folder)
    first, second, _ = _record_lengths(path)
    data = bytearray(path.read_bytes())
    data[16 + first + 12 + 5] ^= 0x20  # inside record 1's data
    path.write_bytes(bytes(data))
    a, bad, c = read(folder)
    assert (a.length, c.length) == (2, 4)
    assert (bad.dataset, bad.location, bad.kind, bad.task) == (
        "rlds", f"{path} @ offset {16 + first} (record 1)", "episode", "toy")
    assert bad.reason.startswith(f"{path} @ offset {16 + first}") and "data CRC" in bad.reason


@pytest.mark.parametrize("exclude", [["*action*", "*reward*", "steps/is_*"], ["steps/*"]])
def test_exclude_never_drops_actions_rewards_or_step_flags(tmp_path, exclude):
    rec = mixed_record(4, last_action=0.5)
    folder = write_rlds(tmp_path / "toy", features_json(MIXED, MIXED_META), {"train": [[rec]]})
    (e,) = read(folder, exclude=exclude)
    assert isinstance(e, Episode), e
    gear = np.asarray(rec["steps/action/gear"]).reshape(4, 2)
    torque = np.asarray(rec["steps/action/torque"], np.float32)[:, None]
    assert np.array_equal(e.actions, np.concatenate([gear, torque], axis=1).astype(np.float32))
    assert e.rewards.tolist() == [0.5, 1.0, 1.5, 0.0] and e.length == 4
    assert e.is_terminal and e.source["final_step"] == "kept"
    plain = write_rlds(tmp_path / "plain", features_json(SIMPLE),
                       {"train": [[simple(3, **{"steps/action": [0.5, -1.0, 2.0]})]]})
    (e,) = read(plain, exclude=["*action*", "*reward*"])  # a bare steps/action key
    assert e.actions.tolist() == [[0.5], [-1.0], [2.0]] and e.rewards.tolist() == [1.0] * 3


def _unnamed(folder) -> None:
    """dataset_info.json without its name; the shards keep theirs through filepathTemplate."""
    info_path = folder / "dataset_info.json"
    info = json.loads(info_path.read_text())
    del info["name"]
    for split in info["splits"]:
        split["filepathTemplate"] = "toy-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}-of-{NUM_SHARDS}"
    info_path.write_text(json.dumps(info))


@pytest.mark.parametrize("name", ["blocks", "blocksX"])
def test_a_dataset_without_a_name_is_named_by_its_folder(tmp_path, monkeypatch, name):
    folder = write_rlds(tmp_path / "data" / name, features_json(SIMPLE), {"train": [[simple(2)]]})
    _unnamed(folder)
    (e,) = read(folder)
    assert (e.task, e.agent) == (name, name)
    monkeypatch.chdir(tmp_path / "data")
    (e,) = list(open_source("rlds", name).read())
    assert (e.task, e.source["uri"]) == (name, f"{name}/{shard(folder).name}")


def test_units_skip_declared_empty_shards_and_name_each_shard(tmp_path):
    splits = {"train": [[simple(2)], [], [simple(3), simple(2)]], "test": [[simple(4)]]}
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE), splits)
    src = open_source("rlds", str(folder), options={"split": ["train", "test"]},
                      task_template="{dataset_name}-{version}-{split}")
    units = src.units()
    names = [shard(folder, "train", 0, 3), shard(folder, "train", 2, 3),
             shard(folder, "test", 0, 1)]
    assert [(u.key, u.uri, u.index) for u in units] == [
        (f"{s}/{p.name}", str(p), i) for i, (s, p) in enumerate(zip(
            ["train", "train", "test"], names, strict=True))]
    assert [(u.param("split"), u.param("split_position"), u.param("shard"), u.param("records"),
             u.param("task")) for u in units] == [
        ("train", 0, 0, 1, "toy-0.1.0-train"), ("train", 0, 2, 2, "toy-0.1.0-train"),
        ("test", 1, 0, 1, "toy-0.1.0-test")]
    eps = list(src.read())
    assert [(e.order, e.length, e.task) for e in eps] == [
        ((0, 0, 0), 2, "toy-0.1.0-train"), ((0, 2, 0), 3, "toy-0.1.0-train"),
        ((0, 2, 1), 2, "toy-0.1.0-train"), ((1, 0, 0), 4, "toy-0.1.0-test")]


def test_default_split_is_train_else_every_split(tmp_path):
    splits = {"test": [[simple(4)]], "train": [[simple(2)]]}
    folder = write_rlds(tmp_path / "a", features_json(SIMPLE), splits)
    assert [u.param("split") for u in open_source("rlds", str(folder)).units()] == ["train"]
    folder = write_rlds(tmp_path / "b", features_json(SIMPLE),
                        {"val": [[simple(4)]], "test": [[simple(2)]]})
    eps = read(folder)
    assert [(e.source["split"], e.order, e.length) for e in eps] == [
        ("val", (0, 0, 0), 4), ("test", (1, 0, 0), 2)]


def test_no_shard_listed_and_a_shard_shorter_than_declared(tmp_path):
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE), {"train": [[]]})
    with pytest.raises(SourceError) as e:
        open_source("rlds", str(folder)).units()
    assert str(e.value) == (f"{folder}/dataset_info.json: no shards listed "
                            "(splits[].shardLengths is empty)")
    folder = write_rlds(tmp_path / "short", features_json(SIMPLE), {"train": [[simple(2)]]})
    info = json.loads((folder / "dataset_info.json").read_text())
    info["splits"][0]["shardLengths"] = ["3"]
    (folder / "dataset_info.json").write_text(json.dumps(info))
    ep, unit = read(folder)
    assert isinstance(ep, Episode)
    assert (unit.location, unit.reason, unit.kind, unit.task) == (
        str(shard(folder)), "shard ends after 1 records but dataset_info.json declares 3: file "
        "truncated at a record boundary?", "unit", "toy")


def test_a_record_with_several_undeclared_or_missing_keys_names_them_all(tmp_path):
    rec = simple(2, **{"steps/zz": [1, 2], "steps/aa": [3, 4], "steps/mm": [5, 6]})
    folder = write_rlds(tmp_path / "a", features_json(SIMPLE), {"train": [[rec]]})
    path = shard(folder)
    (bad,) = read(folder)
    assert (bad.location, bad.reason) == (
        f"{path} @ offset 0 (record 0)",
        f"{path} @ offset 0 [steps/aa]: feature not declared in features.json (and 2 more: "
        "['steps/mm', 'steps/zz'])")
    rec = simple(2)
    for key in ("steps/observation", "steps/is_last"):
        del rec[key]
    folder = write_rlds(tmp_path / "b", features_json(SIMPLE), {"train": [[rec]]})
    (bad,) = read(folder)
    assert bad.reason == (f"{shard(folder)} @ offset 0 [steps/is_last]: declared in "
                          "features.json but missing from the record (and 1 more: "
                          "['steps/observation'])")
    del rec["steps/is_first"]
    folder = write_rlds(tmp_path / "c", features_json(SIMPLE), {"train": [[rec]]})
    (bad,) = read(folder)
    assert bad.reason.endswith("(and 2 more: ['steps/is_last', 'steps/observation'])")
    folder = write_rlds(tmp_path / "d", features_json(SIMPLE),
                        {"train": [[simple(2, **{"steps/zz": [1, 2]})]]})
    (bad,) = read(folder)
    assert bad.reason == (f"{shard(folder)} @ offset 0 [steps/zz]: feature not declared in "
                          "features.json")


def test_one_missing_key_and_two_undeclared_keys(tmp_path):
    rec = simple(2)
    del rec["steps/observation"]
    folder = write_rlds(tmp_path / "a", features_json(SIMPLE), {"train": [[rec]]})
    (bad,) = read(folder)
    assert bad.reason == (f"{shard(folder)} @ offset 0 [steps/observation]: declared in "
                          "features.json but missing from the record")
    folder = write_rlds(tmp_path / "b", features_json(SIMPLE),
                        {"train": [[simple(2, **{"steps/b": [1, 2], "steps/a": [3, 4]})]]})
    (bad,) = read(folder)
    assert bad.reason == (f"{shard(folder)} @ offset 0 [steps/a]: feature not declared in "
                          "features.json (and 1 more: ['steps/b'])")


def test_an_episode_failing_validation_is_rejected_at_its_record(tmp_path):
    records = [simple(2), simple(3, **{"steps/reward": [1.0, float("nan"), 0.5]})]
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE), {"train": [records]})
    first = _record_lengths(shard(folder))[0]
    good, bad = read(folder)
    assert isinstance(good, Episode) and good.length == 2
    assert (bad.location, bad.kind, bad.task) == (
        f"{shard(folder)} @ offset {16 + first} (record 1)", "episode", "toy")
    assert "non-finite" in bad.reason and "rewards" in bad.reason


def test_the_task_template_sees_the_dataset_name_as_agent(tmp_path):
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE), {"train": [[simple(2)]]})
    src = open_source("rlds", str(folder), task_template="{agent}/{task}")
    (unit,) = src.units()
    assert unit.param("task") == "toy/toy"


def test_a_missing_or_oversized_dataset_info_names_the_file(tmp_path):
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE), {"train": [[simple(2)]]})
    info = folder / "dataset_info.json"
    info.unlink()
    with pytest.raises(SourceError) as e:
        open_source("rlds", str(folder)).units()
    assert str(e.value) == (
        f"{info}: missing dataset_info.json: an RLDS/TFDS dataset folder needs dataset_info.json "
        "(name, splits, shards) (point the input at the version folder, e.g. .../name/1.0.0)")
    with info.open("wb") as f:  # sparse: 64 MiB + 1 without writing them
        f.truncate(64 * 1024 * 1024 + 1)
    with pytest.raises(SourceError) as e:
        open_source("rlds", str(folder)).units()
    assert str(e.value) == f"{info}: larger than the limit of 67108864 bytes for dataset_info.json"


def _spec_error(folder) -> str:
    with pytest.raises(SourceError) as e:
        open_source("rlds", str(folder)).units()
    return str(e.value)


def test_a_feature_tree_that_cannot_make_episodes_names_the_key(tmp_path):
    for n, (steps, key, reason) in enumerate([
        ({k: v for k, v in SIMPLE.items() if k != "reward"}, "steps/reward",
         "RLDS episodes need this step feature"),
        ({k: v for k, v in SIMPLE.items() if k != "observation"}, "steps/observation",
         "RLDS episodes need step observations"),
    ]):
        feats = features_json(steps)
        folder = write_rlds(tmp_path / str(n), feats, {"train": [[simple(2)]]})
        assert _spec_error(folder) == f"{folder}/features.json [{key}]: {reason}"
    feats["featuresDict"]["features"]["steps/extra"] = SIMPLE["reward"]  # outside the sequence
    feats["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"][
        "features"]["observation"] = SIMPLE["observation"]
    (folder / "features.json").write_text(json.dumps(feats))
    assert _spec_error(folder) == (
        f"{folder}/features.json [steps/extra]: a step feature must be inside the steps "
        "sequence (one value per step)")
    (folder / "features.json").unlink()
    assert _spec_error(folder) == (
        f"{folder}/features.json: missing features.json: an RLDS/TFDS dataset folder needs "
        "features.json (the feature tree that says how to decode each key) (point the input at "
        "the version folder, e.g. .../name/1.0.0)")


def test_a_shard_name_template_that_leaves_the_folder_is_refused(tmp_path):
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE), {"train": [[simple(2)]]})
    info = json.loads((folder / "dataset_info.json").read_text())
    for template in ("../{SPLIT}-{SHARD_INDEX}", "sub/{SPLIT}-{SHARD_INDEX}"):
        info["splits"][0]["filepathTemplate"] = template
        (folder / "dataset_info.json").write_text(json.dumps(info))
        name = template.replace("{SPLIT}", "train").replace("{SHARD_INDEX}", "00000")
        assert _spec_error(folder) == (
            f"{folder}/dataset_info.json [splits.filepathTemplate]: shard file name {name!r} "
            "from filepathTemplate is not a plain file name")


def test_an_unknown_split_lists_the_ones_there_are(tmp_path):
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE),
                        {"train": [[simple(2)]], "val": [[simple(3)]]})
    with pytest.raises(SourceError) as e:
        open_source("rlds", str(folder), options={"split": ["val", "test"]}).units()
    assert str(e.value) == (f"{folder}/dataset_info.json [split]: no split 'test' (has: "
                            "['train', 'val'])")
    eps = read(folder, split=["val"])
    assert [(e.order, e.length, e.source["split"]) for e in eps] == [((0, 0), 3, "val")]


def test_a_dataset_without_a_version_gives_an_empty_version_field(tmp_path):
    folder = write_rlds(tmp_path / "toy", features_json(SIMPLE), {"train": [[simple(2)]]})
    info = json.loads((folder / "dataset_info.json").read_text())
    del info["version"]
    (folder / "dataset_info.json").write_text(json.dumps(info))
    src = open_source("rlds", str(folder), task_template="{task}-{version}-{split}",
                      agent_template="v{version}")
    (e,) = src.episodes()
    assert (e.task, e.agent) == ("toy--train", "v")
