"""Minari layouts and damage the fixtures do not hold, built in tmp_path from arrays we choose (the
ground truth), laid out as minari 0.5 writes them: HDF5 groups ``episode_<id>`` (Dict spaces as
groups, Tuple spaces as ``_index_<i>`` groups) and Arrow ``data/<id>/part-<k>.arrow`` files of N+1
rows (struct columns for Dict/Tuple, fixed-size lists for Box, a zero padding row of steps).

Written for the mutation run of sources/minari.py and minari_spaces.py (docs/mutation-testing.md):
each damaged input asserts the exact one-line "where [key]: reason" of its rejection."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source

BOX3 = {"type": "Box", "dtype": "float64", "shape": [3]}
DISCRETE = {"type": "Discrete", "dtype": "int64", "start": 0, "n": 4}
BOX_ACT = {"type": "Box", "dtype": "float32", "shape": [2]}


def _meta(folder: Path, backend: str, obs_space: dict, act_space: dict, **extra) -> None:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    meta = {"data_format": backend, "dataset_id": "t/ds-v0", "env_spec": None,
            "observation_space": json.dumps(obs_space), "action_space": json.dumps(act_space)}
    meta.update(extra)
    (folder / "data/metadata.json").write_text(json.dumps(meta))



def write_arrow(folder: Path, episodes: dict[int, list[dict]], obs_space: dict = BOX3,
                act_space: dict = DISCRETE) -> Path:
    """``episodes``: id -> one {column: pyarrow array or numpy array} per part file."""
    _meta(folder, "arrow", obs_space, act_space)
    for eid, parts in episodes.items():
        (folder / f"data/{eid}").mkdir(parents=True, exist_ok=True)
        for k, cols in enumerate(parts):
            table = pa.table(cols)
            with ipc.new_file(str(folder / f"data/{eid}/part-{k}.arrow"), table.schema) as w:
                w.write_table(table)
    return folder



def box_column(arr: np.ndarray) -> pa.Array:
    """A [rows, k] array as Minari's Arrow back-end stores a 1-D Box: a fixed-size list column."""
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])


def read(folder: Path, **options) -> list[Episode | Rejected]:
    return list(open_source("minari", str(folder), options=options).read())



# -- text, bool and multi-dimensional leaves, in both back-ends -----------------------------------
MIXED_SPACE = {"type": "Dict", "subspaces": {
    "mission": {"type": "Text", "max_length": 16, "min_length": 0, "charset": "abc"},
    "flags": {"type": "Box", "dtype": "bool", "shape": [2], "low": 0, "high": 1},
    "mode": {"type": "Discrete", "dtype": "int64", "start": 0, "n": 3, "shape": [1]}}}
GRID_ACT = {"type": "Box", "dtype": "float32", "shape": [2, 2], "low": -1, "high": 1}
MISSIONS = ["go to the door", "pick up the ključ", "", "stop"]


def _mixed(tmp_path: Path, backend: str) -> tuple[Path, dict]:
    n = 3
    rng = np.random.default_rng(5)
    data = {"mission": MISSIONS, "flags": rng.integers(0, 2, (n + 1, 2)).astype(bool),
            "mode": np.array([2, 0, 1, 1]), "actions": rng.normal(size=(n, 2, 2)).astype(np.float32),
            "rewards": np.array([1.0, 0.25, -3.0]), "terminations": np.zeros(n, bool),
            "truncations": np.array([False, False, True])}
    folder = tmp_path / backend / "ds-v0"
    if backend == "hdf5":
        arrays = {"observations/mission": np.array([s.encode() for s in MISSIONS], dtype=object),
                  "observations/flags": data["flags"], "observations/mode": data["mode"]}
        arrays.update({k: data[k] for k in ("actions", "rewards", "terminations", "truncations")})
        with h5py.File(_meta_h5(folder), "w") as f:
            g = f.create_group("episode_0")
            for path, arr in arrays.items():
                if arr.dtype == object:
                    g.create_dataset(path, data=arr, dtype=h5py.string_dtype())
                else:
                    g[path] = arr
    else:
        obs = pa.StructArray.from_arrays(
            [pa.array(MISSIONS), box_column(data["flags"]), pa.array(data["mode"])],
            names=["mission", "flags", "mode"])
        pad = {k: np.concatenate([data[k], np.zeros((1, *data[k].shape[1:]), data[k].dtype)])
               for k in ("actions", "rewards", "terminations", "truncations")}
        cols = {"observations": obs, "actions": box_column(pad["actions"].reshape(n + 1, 4))}
        cols.update({k: pad[k] for k in ("rewards", "terminations", "truncations")})
        write_arrow(folder, {0: [cols]}, MIXED_SPACE, GRID_ACT)
    _meta(folder, backend, MIXED_SPACE, GRID_ACT)
    return folder, data


def _meta_h5(folder: Path) -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    return folder / "data/main_data.hdf5"


@pytest.mark.parametrize("backend", ["hdf5", "arrow"])
def test_text_bool_and_grid_leaves(tmp_path, backend):
    folder, data = _mixed(tmp_path, backend)
    (ep,) = read(folder)
    assert isinstance(ep, Episode), ep
    assert ep.observation_kinds == {"mission": "text", "flags": "discrete", "mode": "discrete"}
    text = ep.observations["mission"]
    assert text.dtype == object and text.tolist() == MISSIONS[:3]
    assert all(type(s) is str for s in text)
    assert ep.observations["flags"].dtype == np.uint8  # bool leaves become 0/1 uint8
    assert np.array_equal(ep.observations["flags"], data["flags"][:3].astype(np.uint8))
    # a Discrete leaf is one value per step, whatever shape its description carries
    assert ep.observations["mode"].shape == (3,)
    assert ep.observations["mode"].tolist() == [2, 0, 1]
    # a [2, 2] Box action is flattened per step to 4 float32 values
    assert ep.action_kind == "continuous" and ep.actions.dtype == np.float32
    assert np.array_equal(ep.actions, data["actions"].reshape(3, 4))
    assert ep.return_ == -1.75 and ep.rewards.tolist() == [1.0, 0.25, -3.0]
    assert (ep.is_terminal, ep.is_truncated) == (False, True)


def test_text_with_a_trailing_nul_is_kept_whole(tmp_path):
    """Arrow strings may end in NUL (HDF5's cannot): NumPy's fixed-width str arrays would drop it,
    the object array of Python strings keeps it."""
    folder, _ = _mixed(tmp_path, "arrow")
    part = folder / "data/0/part-0.arrow"
    table = ipc.open_file(pa.memory_map(str(part))).read_all()
    missions = ["a\x00", "b", "c\x00\x00", "d"]
    obs = table.column("observations").combine_chunks()
    obs = pa.StructArray.from_arrays([pa.array(missions), obs.field("flags"), obs.field("mode")],
                                     names=["mission", "flags", "mode"])
    table = table.set_column(0, "observations", obs)
    with ipc.new_file(str(part), table.schema) as w:
        w.write_table(table)
    (ep,) = read(folder)
    assert ep.observations["mission"].tolist() == missions[:3]


# -- damaged HDF5 episodes: each rejected alone, with the exact key and reason ----------------------
POS_SPACE = {"type": "Dict", "subspaces": {
    "pos": {"type": "Box", "dtype": "float64", "shape": [3]},
    "mission": {"type": "Text", "max_length": 8, "min_length": 0, "charset": "ab"}}}


def _h5_episode(n: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    return {"observations/pos": rng.normal(size=(n + 1, 3)),
            "observations/mission": np.array([b"ab"] * (n + 1), dtype=object),
            "actions": rng.normal(size=(n, 2)).astype(np.float32), "rewards": rng.normal(size=n),
            "terminations": np.arange(n) == n - 1, "truncations": np.zeros(n, bool)}


def _write_h5(folder: Path, episodes: dict[int, dict]) -> Path:
    _meta(folder, "hdf5", POS_SPACE, BOX_ACT)
    with h5py.File(folder / "data/main_data.hdf5", "w") as f:
        for eid, arrays in episodes.items():
            g = f.create_group(f"episode_{eid}")
            for path, arr in arrays.items():
                if getattr(arr, "dtype", None) is np.dtype(object):
                    g.create_dataset(path, data=arr, dtype=h5py.string_dtype())
                else:
                    g.create_dataset(path, data=arr)
    return folder


H5_DAMAGE = [  # (dataset replaced, new value, key, reason)
    ("rewards", np.zeros((4, 1)), "rewards", "rewards must be a 1-D numeric array, got float64 (4, 1)"),
    ("terminations", np.bool_(True), "terminations",
     "expected one value per step, got a scalar (bool)"),
    ("truncations", np.zeros(3, bool), "truncations", "has 3 steps but rewards has 4"),
    ("terminations", np.array([0, 2, 0, 1]), "terminations", "flag value 2 at step 1 is not 0 or 1"),
    ("observations/pos", np.zeros((4, 3)), "observations/pos",
     "has 4 rows; Minari stores steps + 1 = 5 observations for 4 steps"),
    ("observations/pos", np.float64(1.5), "observations/pos",
     "expected one row per step, got a scalar (float64)"),
    ("observations/pos", np.zeros((5, 2)), "observations/pos",
     "array of shape (5, 2) does not hold 5 rows of the space's shape [3]"),
    ("observations/pos", np.array([b"x"] * 5, dtype=object), "observations/pos",
     "expected numbers, got dtype object"),
    ("observations/mission", np.array([b"ab", b"\xffz", b"", b"", b""], dtype=object),
     "observations/mission",
     "row 1: text is not valid UTF-8 (invalid start byte)"),
    ("observations/mission", np.arange(5.0), "observations/mission",
     "row 0: expected text, got float"),
    ("actions", np.zeros((4, 3), np.float32), "actions",
     "array of shape (4, 3) does not hold 4 rows of the space's shape [2]"),
]


@pytest.mark.parametrize(("name", "value", "key", "reason"), H5_DAMAGE,
                         ids=[f"{d[0]}-{i}" for i, d in enumerate(H5_DAMAGE)])
def test_damaged_hdf5_episode_is_rejected_alone(tmp_path, name, value, key, reason):
    bad = _h5_episode()
    bad[name] = value
    folder = _write_h5(tmp_path / "ds", {0: _h5_episode(), 1: bad, 2: _h5_episode(2)})
    items = read(folder)
    assert [type(x) for x in items] == [Episode, Rejected, Episode]
    h5 = folder / "data/main_data.hdf5"
    assert (items[1].location, items[1].reason) == (f"{h5} [episode_1/{key}]", reason)
    assert items[1].task == "t/ds-v0"


def test_empty_episode_is_rejected_and_one_step_is_kept(tmp_path):
    empty = {k: v[:0] for k, v in _h5_episode(1).items()}
    empty["observations/pos"] = np.zeros((1, 3))
    empty["observations/mission"] = np.array([b"ab"], dtype=object)
    one = _h5_episode(1)
    folder = _write_h5(tmp_path / "ds", {0: empty, 1: one})
    bad, ep = read(folder)
    h5 = folder / "data/main_data.hdf5"
    assert (bad.location, bad.reason) == (f"{h5} [episode_0/rewards]", "empty episode (0 steps)")
    assert isinstance(ep, Episode) and ep.length == 1
    assert np.array_equal(ep.observations["pos"], one["observations/pos"][:1])
    assert ep.actions.tolist() == one["actions"].tolist()
    assert ep.return_ == float(one["rewards"][0]) and ep.is_terminal
    assert ep.source["final_observation"] == {"uri": str(h5), "key": "episode_1/observations",
                                              "row": 1, "kept": False}


def test_float32_rewards_are_summed_in_float64(tmp_path):
    """float32 rewards [1, 2**-24, 2**-24, 2**-24]: a float32 sum stays 1.0 after each addition,
    the float64 sum is exactly 1 + 3 * 2**-24."""
    ep = _h5_episode()
    ep["rewards"] = np.array([1.0, 2.0 ** -24, 2.0 ** -24, 2.0 ** -24], np.float32)
    (got,) = read(_write_h5(tmp_path / "ds", {0: ep}))
    assert got.return_ == 1.0 + 3 * 2.0 ** -24


# -- damaged Arrow episodes -----------------------------------------------------------------------
def _arrow_cols(n: int = 4, pos: pa.Array | None = None, **steps_cols) -> dict[str, pa.Array]:
    rng = np.random.default_rng(n)
    obs = pa.StructArray.from_arrays(
        [box_column(rng.normal(size=(n + 1, 3))) if pos is None else pos,
         pa.array(["ab"] * (n + 1))], names=["pos", "mission"])
    cols = {"observations": obs,
            "actions": box_column(np.append(rng.normal(size=(n, 2)), np.zeros((1, 2)), axis=0)
                                  .astype(np.float32)),
            "rewards": pa.array(np.append(rng.normal(size=n), 0.0)),
            "terminations": pa.array(np.arange(n + 1) == n - 1),
            "truncations": pa.array(np.zeros(n + 1, bool))}
    cols.update(steps_cols)
    return cols


def _arrow_rejection(tmp_path: Path, cols: dict) -> tuple[str, str, Path]:
    folder = write_arrow(tmp_path / "ds", {0: [_arrow_cols()], 1: [cols]}, POS_SPACE, BOX_ACT)
    good, bad = read(folder)
    assert isinstance(good, Episode) and isinstance(bad, Rejected)
    return bad.location, bad.reason, folder / "data/1/part-0.arrow"


def test_arrow_step_damage_names_the_bare_column(tmp_path):
    """(An Arrow table's columns all have the same length: only shapes can disagree.)"""
    cols = _arrow_cols(rewards=box_column(np.zeros((5, 1))))
    loc, reason, part = _arrow_rejection(tmp_path, cols)
    assert (loc, reason) == (f"{part} [rewards]",
                             "rewards must be a 1-D numeric array, got float64 (5, 1)")


def test_arrow_padding_only_episode_is_empty(tmp_path):
    cols = {k: v.slice(0, 1) for k, v in _arrow_cols().items()}
    loc, reason, part = _arrow_rejection(tmp_path, cols)
    assert (loc, reason) == (f"{part} [rewards]", "empty episode (0 steps)")


def test_arrow_null_values_are_refused_with_their_row(tmp_path):
    cols = _arrow_cols(rewards=pa.array([0.5, 1.0, None, None, 0.0], pa.float64()))
    loc, reason, part = _arrow_rejection(tmp_path, cols)
    assert (loc, reason) == (f"{part} [rewards]", "2 null values (first at row 2)")


def test_arrow_struct_or_dictionary_leaf_is_not_a_box(tmp_path):
    inner = pa.StructArray.from_arrays([pa.array(np.arange(5.0))], names=["x"])
    loc, reason, part = _arrow_rejection(tmp_path, _arrow_cols(pos=inner))
    assert (loc, reason) == (f"{part} [observations/pos]", "unexpected column type struct<x: double>")
    words = pa.array(["ab", "b", "ab", "a", "b"]).dictionary_encode()
    obs = pa.StructArray.from_arrays([box_column(np.zeros((5, 3))), words],
                                     names=["pos", "mission"])
    loc, reason, part = _arrow_rejection(tmp_path / "dict", _arrow_cols(observations=obs))
    assert (loc, reason) == (f"{part} [observations/mission]", "unexpected column type "
                             "dictionary<values=string, indices=int32, ordered=0>")


def test_arrow_nested_list_is_not_a_box(tmp_path):
    nested = pa.FixedSizeListArray.from_arrays(box_column(np.zeros((15, 1))), 3)
    loc, reason, part = _arrow_rejection(tmp_path, _arrow_cols(pos=nested))
    assert (loc, reason) == (f"{part} [observations/pos]", "nested list type "
                             "fixed_size_list<item: fixed_size_list<item: double>[1]>[3] is not a "
                             "Minari Box encoding")


def test_arrow_episode_failing_validation_is_located_at_its_part_file(tmp_path):
    rewards = np.append(np.random.default_rng(0).normal(size=4), 0.0)
    rewards[1] = np.nan
    loc, reason, part = _arrow_rejection(tmp_path, _arrow_cols(rewards=pa.array(rewards)))
    assert loc == str(part)
    assert "'rewards'" in reason and "non-finite value nan at step 1" in reason


def test_arrow_one_step_episode_and_bool_box_column(tmp_path):
    """A one-step episode (two rows: one step and the padding row); a bool Box leaf stored as a
    fixed-size list of bools (Arrow packs bools in bits: no zero-copy view exists)."""
    space = {"type": "Dict", "subspaces": {"on": {"type": "Box", "dtype": "bool", "shape": [3]}}}
    on = np.array([[True, False, True], [False, False, True]])
    cols = {"observations": pa.StructArray.from_arrays([box_column(on)], names=["on"]),
            "actions": pa.array([2, 0]), "rewards": pa.array([1.5, 0.0]),
            "terminations": pa.array([True, False]), "truncations": pa.array([False, False])}
    (ep,) = read(write_arrow(tmp_path / "ds", {0: [cols]}, space, DISCRETE))
    assert isinstance(ep, Episode), ep
    assert ep.length == 1 and ep.observations["on"].tolist() == [[1, 0, 1]]
    assert ep.actions.tolist() == [2] and ep.action_kind == "discrete"
    assert ep.return_ == 1.5 and ep.is_terminal and not ep.is_truncated
    assert ep.source["final_observation"]["row"] == 1


# -- HDF5 structure: the episode group and the observation nodes ----------------------------------
def test_hdf5_structure_errors_name_the_node(tmp_path):
    h5 = tmp_path / "ds/data/main_data.hdf5"
    folder = _write_h5(tmp_path / "ds", {0: _h5_episode(), 2: _h5_episode(), 3: _h5_episode()})
    with h5py.File(h5, "r+") as f:
        f["episode_1"] = np.zeros(3)  # listed as an episode, but not a group
        del f["episode_2/observations"]
        del f["episode_3/observations"]
        f["episode_3/observations"] = np.zeros((5, 3))  # a dataset where the Dict space needs a group
    items = read(folder)
    assert isinstance(items[0], Episode)
    assert [(x.location, x.reason) for x in items[1:]] == [
        (f"{h5} [episode_1]", "episode group missing"),
        (f"{h5} [episode_2/observations]", "missing dataset"),
        (f"{h5} [episode_3/observations]",
         "expected a group for a Dict/Tuple observation space, found a dataset")]
    assert items[0].source == {"uri": str(h5), "key": "episode_0", "dataset_id": "t/ds-v0",
                               "backend": "hdf5", "steps": 4, "final_observation": {
                                   "uri": str(h5), "key": "episode_0/observations", "row": 4,
                                   "kept": False}}


NESTED = {"type": "Dict", "subspaces": {"arm": {"type": "Dict", "subspaces": {
    "q": {"type": "Box", "dtype": "float32", "shape": [2]}}}}}


def test_hdf5_missing_group_and_box_stored_as_group(tmp_path):
    h5 = tmp_path / "a/data/main_data.hdf5"
    _meta(tmp_path / "a", "hdf5", NESTED, BOX_ACT)
    base = {k: v for k, v in _h5_episode().items() if not k.startswith("observations")}
    with h5py.File(h5, "w") as f:
        for eid in (0, 1):
            for k, v in base.items():
                f[f"episode_{eid}/{k}"] = v
        f["episode_0/observations/arm/q"] = np.ones((5, 2), np.float32)
        f["episode_1/observations/leg/q"] = np.ones((5, 2), np.float32)
    good, bad = read(tmp_path / "a")
    assert good.observations["arm/q"].shape == (4, 2)
    assert (bad.location, bad.reason) == (f"{h5} [episode_1/observations/arm]", "missing group")
    h5 = tmp_path / "b/data/main_data.hdf5"
    _meta(tmp_path / "b", "hdf5", {"type": "Box", "dtype": "float32", "shape": [2]}, BOX_ACT)
    with h5py.File(h5, "w") as f:
        for k, v in base.items():
            f[f"episode_0/{k}"] = v
        f["episode_0/observations/q"] = np.ones((5, 2), np.float32)
    (bad,) = read(tmp_path / "b")
    assert (bad.location, bad.reason) == (
        f"{h5} [episode_0/observations]",
        "expected a dataset for a Box/Discrete observation space, found a group")


TUPLE_SPACE = {"type": "Tuple", "subspaces": [
    {"type": "Box", "dtype": "float64", "shape": [2]}, {"type": "Discrete", "n": 5}]}


@pytest.mark.parametrize("backend", ["hdf5", "arrow"])
def test_tuple_observation_space(tmp_path, backend):
    """Tuple leaves are named by their index; HDF5 stores them under ``_index_<i>``, Arrow as
    struct fields "0", "1"."""
    pos, mode = np.arange(10.0).reshape(5, 2), np.array([4, 3, 2, 1, 0])
    folder = tmp_path / backend
    if backend == "hdf5":
        _meta(folder, "hdf5", TUPLE_SPACE, BOX_ACT)
        with h5py.File(folder / "data/main_data.hdf5", "w") as f:
            for k, v in _h5_episode().items():
                if not k.startswith("observations"):
                    f[f"episode_0/{k}"] = v
            f["episode_0/observations/_index_0"] = pos
            f["episode_0/observations/_index_1"] = mode
    else:
        cols = _arrow_cols(observations=pa.StructArray.from_arrays(
            [box_column(pos), pa.array(mode)], names=["0", "1"]))
        write_arrow(folder, {0: [cols]}, TUPLE_SPACE, BOX_ACT)
    (ep,) = read(folder)
    assert ep.observation_kinds == {"0": "continuous", "1": "discrete"}
    assert np.array_equal(ep.observations["0"], pos[:4])
    assert ep.observations["1"].tolist() == [4, 3, 2, 1]


# -- Arrow episodes in several part files -----------------------------------------------------------
def _split_parts(cols: dict, cuts: list[int]) -> list[dict]:
    table = pa.table(cols)
    bounds = [0, *cuts, table.num_rows]
    return [{name: table.column(name).slice(lo, hi - lo).combine_chunks() for name in cols}
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def test_arrow_episode_in_many_parts(tmp_path):
    """An episode of 12 steps (13 rows) in 11 part files (part-10 sorts after part-1): the same
    episode as in one file, with every part listed in its lineage."""
    whole = _arrow_cols(12)
    parts = _split_parts(whole, list(range(3, 13)))
    folder = write_arrow(tmp_path / "ds", {0: [whole], 1: parts}, POS_SPACE, BOX_ACT)
    one, many = read(folder)
    assert isinstance(many, Episode), many
    assert np.array_equal(one.observations["pos"], many.observations["pos"])
    assert np.array_equal(one.actions, many.actions) and one.return_ == many.return_
    expect = [str(folder / f"data/1/part-{k}.arrow") for k in range(11)]
    assert many.source == {"uri": expect[0], "dataset_id": "t/ds-v0", "backend": "arrow",
                           "episode": 1, "parts": expect, "steps": 12, "final_observation": {
                               "uri": expect[0], "key": "observations", "row": 12,
                               "kept": False}}
    assert "parts" not in one.source and one.source["episode"] == 0


def test_arrow_incomplete_episodes(tmp_path):
    cols = _arrow_cols()
    folder = write_arrow(tmp_path / "ds", {0: [cols], 1: _split_parts(cols, [2, 3]),
                                           2: _split_parts(cols, [2])}, POS_SPACE, BOX_ACT)
    (folder / "data/1/part-1.arrow").unlink()
    (folder / "data/3").mkdir()
    (folder / "data/3/episode_metadata.json").write_text("{}")
    other = pa.table({k: v for k, v in _split_parts(cols, [2])[1].items() if k != "truncations"})
    with ipc.new_file(str(folder / "data/2/part-1.arrow"), other.schema) as w:
        w.write_table(other)
    items = read(folder)
    assert isinstance(items[0], Episode)
    got = [(x.location, x.reason) for x in items[1:]]
    assert got[0] == (str(folder / "data/1"),
                      "episode 1: parts [0, 2] are not numbered 0..1 (a part is missing)")
    assert got[1][0] == str(folder / "data/2/part-0.arrow")
    assert got[1][1].startswith("parts of episode 2 do not share a schema: ")
    assert got[2] == (str(folder / "data/3"),
                      "episode 3: no part-0.arrow file (an incomplete copy?)")


def test_arrow_missing_or_null_struct_field(tmp_path):
    base = _arrow_cols()
    obs = base["observations"]
    missing = pa.StructArray.from_arrays([obs.field("mission")], names=["mission"])
    nulls = pa.StructArray.from_arrays([obs.field("pos"), obs.field("mission")],
                                       names=["pos", "mission"],
                                       mask=pa.array([False, True, False, True, False]))
    folder = write_arrow(tmp_path / "ds", {0: [_arrow_cols(observations=missing)],
                                           1: [_arrow_cols(observations=nulls)]},
                         POS_SPACE, BOX_ACT)
    got = [(x.location, x.reason) for x in read(folder)]
    assert got == [(f"{folder / 'data/0/part-0.arrow'} [observations/pos]", "missing struct field"),
                   (f"{folder / 'data/1/part-0.arrow'} [observations/pos]", "2 null rows")]


def test_hdf5_unreadable_leaf_datasets_name_their_key(tmp_path):
    """A Dict leaf missing from its group; a Box dataset declaring 2**40 rows (a chunked dataset
    can declare any shape while its file holds almost nothing): refused before reading."""
    h5 = tmp_path / "a/data/main_data.hdf5"
    ep = _h5_episode()
    del ep["observations/pos"]
    (bad,) = read(_write_h5(tmp_path / "a", {0: ep}))
    assert (bad.location, bad.reason) == (f"{h5} [episode_0/observations/pos]", "missing dataset")
    h5 = tmp_path / "b/data/main_data.hdf5"
    _meta(tmp_path / "b", "hdf5", BOX3, BOX_ACT)
    with h5py.File(h5, "w") as f:
        for k, v in _h5_episode().items():
            if not k.startswith("observations"):
                f[f"episode_0/{k}"] = v
        f["episode_0"].create_dataset("observations", shape=(1 << 40, 3), dtype="f8",
                                      chunks=(1, 3))
    (bad,) = read(tmp_path / "b")
    assert bad.location == f"{h5} [episode_0/observations]"
    assert bad.reason == ("declared shape [1099511627776, 3] of 8-byte values needs "
                          f"{(1 << 40) * 24} bytes, above the limit of {1 << 32}")


def test_tuple_inside_dict_and_two_parts(tmp_path):
    """A Tuple inside a Dict is named "<key>/<index>"; an episode in exactly two part files lists
    both in its lineage; a Box leaf of the wrong size names its Arrow column."""
    space = {"type": "Dict", "subspaces": {"arm": TUPLE_SPACE}}
    pos, mode = np.arange(10.0).reshape(5, 2), np.array([4, 3, 2, 1, 0])
    arm = pa.StructArray.from_arrays([box_column(pos), pa.array(mode)], names=["0", "1"])
    cols = _arrow_cols(observations=pa.StructArray.from_arrays([arm], names=["arm"]))
    bad_arm = pa.StructArray.from_arrays([box_column(np.zeros((5, 3))), pa.array(mode)],
                                         names=["0", "1"])
    bad = _arrow_cols(observations=pa.StructArray.from_arrays([bad_arm], names=["arm"]))
    folder = write_arrow(tmp_path / "ds", {0: _split_parts(cols, [3]), 1: [bad]}, space, BOX_ACT)
    ep, rej = read(folder)
    assert ep.observation_kinds == {"arm/0": "continuous", "arm/1": "discrete"}
    assert np.array_equal(ep.observations["arm/0"], pos[:4])
    assert ep.source["parts"] == [str(folder / f"data/0/part-{k}.arrow") for k in (0, 1)]
    assert (rej.location, rej.reason) == (
        f"{folder / 'data/1/part-0.arrow'} [observations/arm/0]",
        "array of shape (5, 3) does not hold 5 rows of the space's shape [2]")
