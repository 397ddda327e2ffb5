"""The D4RL reader's episode assembly against files written here with h5py from chosen arrays.

The ground truth is the layout each file is built from (episode lengths and end flags) and the
arrays written: every episode's rows, observations, actions, rewards, flags, return and lineage are
computed from them, never read back through the reader. Written for issue 22's mutation testing of
``sources/d4rl.py`` and ``sources/h5file.py``: unit sizes from 1 row to the whole file put a unit
border at every row (inside an episode, exactly at an episode's end, on a one-row episode).
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source
from trajcorpus.sources.h5file import read_dataset

# (length, end): "terminal", "timeout", "both" or None (the file ends mid-episode)
LAYOUT = [(3, "terminal"), (1, "timeout"), (5, "terminal"), (1, "terminal"), (4, "both"),
          (7, "timeout"), (2, "terminal"), (6, None)]
N = sum(length for length, _ in LAYOUT)  # 29


def arrays(layout=LAYOUT, *, obs_shape=(3,), obs_dtype=np.float32, action_dtype=np.float32,
           reward_dtype=np.float32) -> dict[str, np.ndarray]:
    """Per-row arrays: every row's values differ, so a row off by one shows."""
    n = sum(length for length, _ in layout)
    rows = np.arange(n)
    size = math.prod(obs_shape)
    obs = (rows[:, None] * 3 + np.arange(size)).reshape(n, *obs_shape).astype(obs_dtype)
    if np.dtype(action_dtype).kind == "f":
        actions = np.stack([-(rows + 0.5), rows * 0.25], axis=1).astype(action_dtype)
    else:
        actions = (rows % 5).astype(action_dtype)
    # 1.0 on an episode's first row, then (row + 1) * 2**-30: the float64 sum is exact, a float32
    # sum drops the small terms
    first = np.zeros(n, bool)
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    pos = 0
    for length, end in layout:
        first[pos] = True
        pos += length
        terminals[pos - 1] = end in ("terminal", "both")
        timeouts[pos - 1] = end in ("timeout", "both")
    rewards = np.where(first, 1.0, (rows + 1) * 2.0 ** -30).astype(reward_dtype)
    return {"observations": obs, "actions": actions, "rewards": rewards,
            "terminals": terminals, "timeouts": timeouts,
            "next_observations": np.roll(obs, -1, axis=0)}


def write(path: Path, data: dict[str, np.ndarray], *, timeouts: bool = True,
          algorithm: object = b"BC", attrs: dict | None = None) -> str:
    """A flat D4RL file as D4RL's collectors write it: one h5py dataset per array."""
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            if key != "timeouts" or timeouts:
                f.create_dataset(key, data=value)
        if algorithm is not None:
            f.create_dataset("metadata/algorithm", data=algorithm)
        f.attrs.update(attrs or {})
    return str(path)


def expected(layout, data, stem: str, uri: str, file_index: int = 0) -> list[dict]:
    out, pos = [], 0
    for length, end in layout:
        a, b = pos, pos + length
        obs = data["observations"][a:b]
        out.append({
            "episode_id": f"{stem}/{a}", "order": (file_index, a),
            "obs": obs.reshape(length, -1), "actions": data["actions"][a:b],
            "rewards": data["rewards"][a:b].astype(np.float32),
            "return": math.fsum(data["rewards"][a:b].astype(np.float64).tolist()),
            "terminal": end in ("terminal", "both"),
            "truncated": end in ("timeout", "both", None),
            "source": {"uri": uri, "rows": [a, b], "partial": end is None}})
        pos = b
    return out


def check(items, want: list[dict], *, task: str, agent: str) -> None:
    assert all(isinstance(e, Episode) for e in items), [e for e in items if isinstance(e, Rejected)]
    assert len(items) == len(want)
    for e, w in zip(items, want, strict=True):
        assert e.episode_id == w["episode_id"] and e.order == w["order"]
        assert (e.task, e.agent) == (task, agent)
        obs = e.observations["observation"]
        assert obs.dtype == w["obs"].dtype and obs.shape == w["obs"].shape
        assert np.array_equal(obs, w["obs"])
        kind = "continuous" if w["obs"].dtype.kind == "f" else "discrete"
        assert e.observation_kinds == {"observation": kind}
        if w["actions"].dtype.kind == "f":
            assert e.action_kind == "continuous" and e.actions.dtype == np.float32
            assert np.array_equal(e.actions, w["actions"].astype(np.float32))
        else:
            assert e.action_kind == "discrete" and e.actions.dtype == w["actions"].dtype
            assert np.array_equal(e.actions, w["actions"])
        assert e.rewards.dtype == np.float32 and e.rewards.tobytes() == w["rewards"].tobytes()
        assert e.return_ == w["return"]
        assert (e.is_terminal, e.is_truncated) == (w["terminal"], w["truncated"])
        assert e.source == w["source"]


def read(uri: str, **options) -> list:
    return list(open_source("d4rl", uri, options=options).read())


@pytest.mark.parametrize("rows", range(1, N + 2))
def test_every_unit_size_gives_the_episodes_written(tmp_path, rows):
    data = arrays()
    uri = write(tmp_path / "walker.hdf5", data)
    src = open_source("d4rl", uri, options={"rows_per_unit": rows})
    units = src.units()
    bounds = [(s, min(N, s + rows)) for s in range(0, N, rows)]
    assert [u.key for u in units] == [f"walker/rows {a}-{b}" for a, b in bounds]
    assert [u.index for u in units] == list(range(len(bounds)))
    assert [(u.param("start"), u.param("stop"), u.param("rows")) for u in units] == \
        [(a, b, N) for a, b in bounds]
    want = expected(LAYOUT, data, "walker", uri)
    check(list(src.read()), want, task="walker", agent="BC")
    # each episode comes from the unit its first row is in, and only from that one
    starts = [w["order"][1] for w in want]
    for u, (a, b) in zip(units, bounds, strict=True):
        got = [e.order[1] for e in src.read_unit(u)]
        assert got == [s for s in starts if a <= s < b]


def test_the_return_is_summed_in_float64_from_the_values_stored(tmp_path):
    data = arrays(reward_dtype=np.float64)
    data["rewards"][1:3] = [0.1, 0.2]  # not float32 values: the return uses the stored float64
    uri = write(tmp_path / "r.hdf5", data)
    items = read(uri, rows_per_unit=4)
    check(items, expected(LAYOUT, data, "r", uri), task="r", agent="BC")
    assert items[0].return_ == 1.0 + 0.1 + 0.2 != float(np.float32(0.1)) + float(np.float32(0.2)) + 1


@pytest.mark.parametrize("obs_shape, obs_dtype", [((), np.float32), ((2, 3), np.float64),
                                                   ((4,), np.uint8)])
def test_observation_shapes_and_dtypes(tmp_path, obs_shape, obs_dtype):
    data = arrays(obs_shape=obs_shape, obs_dtype=obs_dtype)
    uri = write(tmp_path / "o.hdf5", data)
    check(read(uri, rows_per_unit=6), expected(LAYOUT, data, "o", uri), task="o", agent="BC")


@pytest.mark.parametrize("action_dtype", [np.float64, np.int64, np.int32])
def test_action_dtypes(tmp_path, action_dtype):
    data = arrays(action_dtype=action_dtype)
    uri = write(tmp_path / "a.hdf5", data)
    check(read(uri), expected(LAYOUT, data, "a", uri), task="a", agent="BC")


def test_without_timeouts_only_terminals_end_episodes(tmp_path):
    data = arrays()
    uri = write(tmp_path / "old.hdf5", data, timeouts=False)
    # rows that only a timeout ended run on into the next episode; the "both" row still ends one
    layout = [(3, "terminal"), (6, "terminal"), (1, "terminal"), (4, "terminal"),
              (9, "terminal"), (6, None)]
    for rows in (1, 3, 10, N):
        check(read(uri, rows_per_unit=rows), expected(layout, data, "old", uri), task="old",
              agent="BC")


def test_flags_stored_as_numbers(tmp_path):
    data = arrays()
    data["terminals"] = data["terminals"].astype(np.float32)
    data["timeouts"] = data["timeouts"].astype(np.int64)
    uri = write(tmp_path / "n.hdf5", data)
    check(read(uri, rows_per_unit=5), expected(LAYOUT, data, "n", uri), task="n", agent="BC")


def test_a_partial_tail_crossing_units_is_read_to_the_end_of_the_file(tmp_path):
    layout = [(2, "terminal"), (9, None)]
    data = arrays(layout)
    uri = write(tmp_path / "tail.hdf5", data)
    check(read(uri, rows_per_unit=3), expected(layout, data, "tail", uri), task="tail",
          agent="BC")
    items = read(uri, rows_per_unit=3, partial_tail="reject")
    assert isinstance(items[0], Episode)
    (bad,) = items[1:]
    assert isinstance(bad, Rejected) and bad.kind == "episode" and bad.task == "tail"
    assert bad.location == f"{uri} @ offset 2 [rows 2:11]"
    assert bad.reason == ("final partial trajectory of 9 steps has neither terminals nor "
                          "timeouts set (option partial_tail=reject)")


def test_an_episode_longer_than_one_scan_block(tmp_path):
    # the first episode runs past its unit and past one 65536-row scan block
    n, end = 70_000, 65_636
    data = {"observations": np.arange(n, dtype=np.float32)[:, None],
            "actions": np.zeros((n, 1), np.float32), "rewards": np.ones(n, np.float32),
            "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}
    data["terminals"][end - 1] = True
    data["timeouts"][n - 1] = True
    uri = write(tmp_path / "long.hdf5", data)
    src = open_source("d4rl", uri, options={"rows_per_unit": 10})
    units = src.units()
    (ep,) = src.read_unit(units[0])
    assert ep.source["rows"] == [0, end] and ep.length == end and ep.is_terminal
    assert np.array_equal(ep.observations["observation"][:, 0], np.arange(end, dtype=np.float32))
    assert ep.return_ == float(end)
    assert list(src.read_unit(units[1])) == []
    (second,) = src.read_unit(units[end // 10])  # 65636 is a unit border: the next one starts it
    assert second.source["rows"] == [end, n] and second.is_truncated and not second.is_terminal


def test_a_bad_flag_found_while_scanning_past_the_unit_names_file_and_row(tmp_path):
    data = arrays()
    data["terminals"] = data["terminals"].astype(np.int64)
    data["terminals"][25] = 2  # inside the partial tail (rows 23-28)
    uri = write(tmp_path / "bad.hdf5", data)
    src = open_source("d4rl", uri, options={"rows_per_unit": 24})
    with pytest.raises(SourceError) as e:
        list(src.read_unit(src.units()[0]))
    assert str(e.value) == f"{uri} [terminals]: flag value 2 at row 25 is not 0 or 1"
    data["terminals"][25] = 0
    data["timeouts"] = data["timeouts"].astype(np.float64)
    data["timeouts"][26] = 0.5
    uri = write(tmp_path / "bad2.hdf5", data)
    src = open_source("d4rl", uri, options={"rows_per_unit": 24})
    with pytest.raises(SourceError) as e:
        list(src.read_unit(src.units()[0]))
    assert str(e.value) == f"{uri} [timeouts]: flag value 0.5 at row 26 is not 0 or 1"
    # the row before a unit decides whether the unit starts with an episode
    with pytest.raises(SourceError) as e:
        list(src.read_unit(src.units()[1]))
    assert str(e.value) == f"{uri} [timeouts]: flag value 0.5 at row 26 is not 0 or 1"


def _corrupt_chunk(uri: str, key: str, chunk: int) -> None:
    """Overwrite one compressed chunk of ``key``: h5py then fails to read the rows in it."""
    with h5py.File(uri, "r") as f:
        info = f[key].id.get_chunk_info(chunk)
    with open(uri, "r+b") as out:
        out.seek(info.byte_offset)
        out.write(b"\xff" * info.size)


@pytest.mark.parametrize("key, chunk, unit", [
    ("observations", 3, 1),  # rows 12-15: read for the episodes of unit 8-16 (rows 9-21)
    ("terminals", 4, 2),  # rows 16-19: the flags of unit 16-24 itself
    ("terminals", 3, 2),  # rows 12-15: of them unit 16-24 reads only row 15, the one before it
])
def test_an_unreadable_chunk_is_one_error_naming_file_and_key(tmp_path, key, chunk, unit):
    data = arrays()
    uri = str(tmp_path / "c.hdf5")
    with h5py.File(uri, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v, chunks=(4, *v.shape[1:]), compression="gzip")
        f.create_dataset("metadata/algorithm", data=b"BC")
    _corrupt_chunk(uri, key, chunk)
    src = open_source("d4rl", uri, options={"rows_per_unit": 8})
    with pytest.raises(SourceError) as e:
        list(src.read_unit(src.units()[unit]))
    assert str(e.value).startswith(f"{uri} [{key}]: cannot read: ")
    assert "\n" not in str(e.value)


# -- planning: names, algorithm, files -------------------------------------------------------------

@pytest.mark.parametrize("algorithm, agent", [
    (b"SAC", "SAC"), ("CQL", "CQL"), (np.array([b"TD3+BC"]), "TD3+BC"),
    (b"line one\nline two", "line one line two"), (b"x" * 300, "x" * 200),
    (b"caf\xe9", "caf\ufffd"), (None, "plain.v2")])
def test_agent_is_the_stored_algorithm_or_the_file_name(tmp_path, algorithm, agent):
    data = arrays([(2, "terminal")])
    uri = write(tmp_path / "plain.v2.hdf5", data, algorithm=algorithm)
    src = open_source("d4rl", uri, agent_template="{agent}|{algorithm}|{file}|{task}")
    (ep,) = src.read()
    algo = "" if algorithm is None else agent
    assert ep.agent == f"{agent}|{algo}|plain.v2|plain.v2"
    assert ep.task == "plain.v2" and ep.episode_id == "plain.v2/0"


def test_algorithm_from_the_file_attribute(tmp_path):
    data = arrays([(2, "terminal")])
    uri = write(tmp_path / "x.h5", data, algorithm=None, attrs={"algorithm": "IQL"})
    (ep,) = read(uri)
    assert ep.agent == "IQL" and ep.episode_id == "x/0"
    # a metadata/algorithm that is a group is not a name: the attribute is used
    with h5py.File(uri, "r+") as f:
        f.create_group("metadata/algorithm")
    (ep,) = read(uri)
    assert ep.agent == "IQL"


def test_an_algorithm_name_above_its_size_limit_is_refused(tmp_path):
    data = arrays([(2, "terminal")])
    uri = write(tmp_path / "big.hdf5", data, algorithm=np.zeros(1 << 16 | 1, np.uint8))
    with pytest.raises(SourceError, match=r"big\.hdf5 \[metadata/algorithm\]: declared shape "
                       r"\[65537\] of 1-byte values needs 65537 bytes, above the limit of 65536"):
        open_source("d4rl", uri).units()
    uri = write(tmp_path / "ok.hdf5", data, algorithm=np.full(1 << 16, 65, np.uint8))
    assert len(open_source("d4rl", uri).units()) == 1


def test_a_folder_reads_h5_and_hdf5_files_in_name_order(tmp_path):
    a = arrays([(2, "terminal"), (1, "timeout")])
    b = arrays([(4, "terminal")])
    ua = write(tmp_path / "a.h5", a)
    ub = write(tmp_path / "b.hdf5", b)
    (tmp_path / "c.txt").write_text("not read")
    src = open_source("d4rl", str(tmp_path), options={"rows_per_unit": 2})
    units = src.units()
    assert [u.key for u in units] == ["a/rows 0-2", "a/rows 2-3", "b/rows 0-2", "b/rows 2-4"]
    assert [u.param("file_index") for u in units] == [0, 0, 1, 1]
    assert [u.uri for u in units] == [ua, ua, ub, ub]
    items = list(src.read())
    check(items[:2], expected([(2, "terminal"), (1, "timeout")], a, "a", ua), task="a",
          agent="BC")
    check(items[2:], expected([(4, "terminal")], b, "b", ub, file_index=1), task="b", agent="BC")
    # one .h5 file given by name
    check(read(ua), expected([(2, "terminal"), (1, "timeout")], a, "a", ua), task="a",
          agent="BC")


def test_a_bare_file_name_in_the_working_folder(tmp_path, monkeypatch):
    data = arrays([(2, "terminal"), (1, "timeout")])
    write(tmp_path / "w.v1.hdf5", data)
    monkeypatch.chdir(tmp_path)
    src = open_source("d4rl", "w.v1.hdf5")
    assert [u.key for u in src.units()] == ["w.v1/rows 0-3"]
    check(list(src.read()), expected([(2, "terminal"), (1, "timeout")], data, "w.v1", "w.v1.hdf5"),
          task="w.v1", agent="BC")


def test_a_folder_without_hdf5_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not a D4RL file")
    with pytest.raises(SourceError) as e:
        open_source("d4rl", str(tmp_path)).units()
    assert str(e.value) == (f"{tmp_path}: no .hdf5 file found (expected a D4RL file or a folder "
                            "of them)")
    # a file named as a D4RL file is opened as one, even when it is absent
    for name in ("absent.h5", "absent.hdf5"):
        with pytest.raises(SourceError) as e:
            open_source("d4rl", str(tmp_path / name)).units()
        assert str(e.value) == f"{tmp_path / name}: file not found"


def test_an_empty_file_has_no_units(tmp_path):
    data = {k: v[:0] for k, v in arrays().items()}
    uri = write(tmp_path / "empty.hdf5", data)
    with pytest.raises(SourceError) as e:
        open_source("d4rl", uri).units()
    assert str(e.value) == f"{uri}: no rows to read (empty D4RL file)"
    # beside a file with rows, it adds nothing
    write(tmp_path / "full.hdf5", arrays([(2, "terminal")]))
    units = open_source("d4rl", str(tmp_path)).units()
    assert [u.key for u in units] == ["full/rows 0-2"] and units[0].param("file_index") == 1


# -- layout checks ---------------------------------------------------------------------------------

def _refused(tmp_path, data, **kw) -> str:
    uri = write(tmp_path / "bad.hdf5", data, **kw)
    with pytest.raises(SourceError) as e:
        list(open_source("d4rl", uri).episodes())
    return str(e.value).removeprefix(uri)


def test_row_count_comes_from_rewards_first(tmp_path):
    data = arrays()
    data["rewards"] = data["rewards"][:-2]
    assert _refused(tmp_path, data) == (
        " [observations/actions/terminals/timeouts]: per-step arrays differ in length "
        "(observations has 29, actions has 29, rewards has 27, terminals has 29, timeouts has 29 "
        "rows)")
    data = arrays()
    data["rewards"] = np.float32(1.0)  # a scalar: the rows are counted from observations
    assert _refused(tmp_path, data) == " [rewards]: expected an array over steps"
    # without rewards the rows are counted from observations, then from actions
    data = arrays()
    del data["rewards"]
    data["observations"] = data["observations"][:27]
    uri = write(tmp_path / "rows.hdf5", data)
    assert [u.key for u in open_source("d4rl", uri).units()] == ["rows/rows 0-27"]
    del data["observations"]
    data["actions"] = data["actions"][:26]
    uri = write(tmp_path / "rows.hdf5", data)
    assert [u.key for u in open_source("d4rl", uri).units()] == ["rows/rows 0-26"]
    data = arrays()
    for key in ("rewards", "observations", "actions"):
        del data[key]
    data["terminals"] = data["terminals"][:4]
    data["timeouts"] = data["timeouts"][:5]
    assert _refused(tmp_path, data) == (
        " [observations]: missing dataset (a D4RL file needs observations, actions, rewards and "
        "terminals)")


def test_a_file_with_no_per_step_array_is_refused_when_planned(tmp_path):
    uri = write(tmp_path / "none.hdf5", {"terminals": np.float32(0)})
    with pytest.raises(SourceError) as e:
        open_source("d4rl", uri).units()
    assert str(e.value) == (f"{uri} [rewards]: not a D4RL file: no rewards/observations/actions "
                            "dataset")


@pytest.mark.parametrize("key", ["rewards", "terminals", "timeouts"])
def test_per_step_scalars_must_be_one_dimensional(tmp_path, key):
    data = arrays()
    data[key] = data[key][:, None]
    assert _refused(tmp_path, data) == f" [{key}]: expected shape [N], got [29, 1]"


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "terminals", "timeouts"])
def test_per_step_arrays_must_hold_numbers(tmp_path, key):
    data = arrays()
    data[key] = np.array([b"a"] * N)
    assert _refused(tmp_path, data) == f" [{key}]: expected numbers, got dtype |S1"


def test_a_timeouts_group_is_not_an_array(tmp_path):
    uri = write(tmp_path / "g.hdf5", arrays(), timeouts=False)
    with h5py.File(uri, "r+") as f:
        f.create_group("timeouts")
    with pytest.raises(SourceError) as e:
        list(open_source("d4rl", uri).episodes())
    assert str(e.value) == f"{uri} [timeouts]: expected an array over steps"


# -- h5file.read_dataset ---------------------------------------------------------------------------

def test_read_dataset_bounds_the_selection_not_the_dataset(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("g/x", data=np.arange(100, dtype=np.float64).reshape(50, 2))
        f.create_group("X g ")  # names are taken as written: only the slashes are separators
        f.create_dataset("s", data=np.float64(7))
    with h5py.File(tmp_path / "d.h5", "r") as f:
        got = read_dataset("u", f["g"], "x", np.s_[10:20], limit=160)
        assert np.array_equal(got, np.arange(20, 40, dtype=np.float64).reshape(10, 2))
        assert read_dataset("u", f, "s", limit=8) == 7.0
        with pytest.raises(SourceError) as e:
            read_dataset("u", f["g"], "x", np.s_[10:21], limit=160)
        assert str(e.value) == ("u [g/x]: declared shape [11, 2] of 8-byte values needs 176 "
                                "bytes, above the limit of 160")
        with pytest.raises(SourceError) as e:
            read_dataset("u", f["g"], "x", limit=799)
        assert "[g/x]: declared shape [50, 2]" in str(e.value)
        # a slice past the end selects only the rows that exist
        assert read_dataset("u", f["g"], "x", np.s_[45:90], limit=80).shape == (5, 2)
        with pytest.raises(SourceError) as e:
            read_dataset("u", f["g"], "y")
        assert str(e.value) == "u [g/y]: missing dataset"
        with pytest.raises(SourceError) as e:
            read_dataset("u", f["X g "], "y X")
        assert str(e.value) == "u [X g /y X]: missing dataset"
        with pytest.raises(SourceError) as e:
            read_dataset("u", f, "g")
        assert str(e.value) == "u [g]: expected a dataset, found a Group"
