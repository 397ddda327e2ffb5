"""The dqn-replay reader against the fixtures' ground_truth.json (computed from the rollout that
Dopamine logged, never from the files) and against bad inputs derived from the good files."""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import get_source
from trajcorpus.sources.dqn_replay import DqnReplaySource

FIX = Path(__file__).parent / "fixtures" / "atari_dqn_replay"
GAMES = ("Pong", "Breakout")


def gt_of(game: str) -> dict:
    return json.loads((FIX / game / "1" / "ground_truth.json").read_text())


def summarize(item: Episode | Rejected, keep_frames: bool) -> dict:
    if isinstance(item, Rejected):
        return {"rejected": item}
    frames = item.observations["observation"]
    flat = frames.reshape(len(frames), -1)
    return {
        "episode": item,
        "key": (item.source["segments"][0]["checkpoint"], item.source["segments"][0]["first_index"]),
        "frames_nonzero": bool(flat.any(axis=1).all()),
        "frames_change": bool((flat[1:] != flat[:-1]).any(axis=1).mean() > 0.5)
        if len(flat) > 1 else True,
        "frame_shape": frames.shape[1:],
        "frame_dtype": frames.dtype,
        "frames": frames if keep_frames else None,
    }


def read_units(game: str) -> dict[int, list[dict]]:
    """Each unit read by its own Source instance: units must not depend on each other.

    Read once per session; but not under mutmut (docs/mutation-testing.md), which maps each
    function to the tests that reach it: with the cache only the first test would."""
    if "MUTANT_UNDER_TEST" in os.environ:
        return _read_units(game)
    return _cached_read_units(game)


@functools.cache
def _cached_read_units(game: str) -> dict[int, list[dict]]:
    return _read_units(game)


def _read_units(game: str) -> dict[int, list[dict]]:
    spans = {(e["checkpoint"], e["start_index"]) for e in gt_of(game)["episodes"]
             if e["spans_checkpoints"]}
    out: dict[int, list[dict]] = {}
    for unit in DqnReplaySource(str(FIX / game / "1")).units():
        src = DqnReplaySource(str(FIX / game / "1"))
        items = []
        for item in src.read_unit(unit):
            keep = isinstance(item, Episode) and (
                item.order[0], int(item.episode_id.rsplit("/", 1)[1])) in spans
            items.append(summarize(item, keep))
        out[unit.param("suffix")] = items
    return out


def episodes_of(game: str) -> dict[tuple[int, int], dict]:
    return {s["key"]: s for items in read_units(game).values() for s in items if "episode" in s}


def copy_run(tmp_path: Path, game: str = "Breakout", drop: tuple[int, ...] = ()) -> Path:
    dst = tmp_path / game / "1"
    shutil.copytree(FIX / game / "1", dst)
    for sx in drop:
        for f in (dst / "replay_logs").glob(f"*_ckpt.{sx}.gz"):
            f.unlink()
    return dst


def unit_of(src: DqnReplaySource, suffix: int):
    return next(u for u in src.units() if u.param("suffix") == suffix)


def npy_file(path: Path, header: dict, data: bytes = b"", magic: bytes | None = None) -> None:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    raw = buf.getvalue()
    if magic is not None:
        raw = magic + raw[len(magic):]
    path.write_bytes(gzip.compress(raw + data, compresslevel=1))


# -------------------------------------------------------------------------------------------------
# Against ground_truth.json
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("game", GAMES)
def test_every_episode_matches_ground_truth(game):
    gt = gt_of(game)
    got = episodes_of(game)
    rejected = [s["rejected"] for items in read_units(game).values() for s in items
                if "rejected" in s]
    assert rejected == []
    assert len(got) == gt["totals"]["episodes"] == len(gt["episodes"])
    assert sum(s["episode"].length for s in got.values()) == gt["totals"]["agent_steps"]
    for g in gt["episodes"]:
        s = got[(g["checkpoint"], g["start_index"])]
        e = s["episode"]
        assert e.length == g["length"], g["episode"]
        assert e.return_ == pytest.approx(g["return_clipped"], abs=1e-9)
        assert e.order == (g["checkpoint"], g["start_position"])
        assert e.episode_id == f"{game}/1/ckpt{g['checkpoint']}/{g['start_index']}"
        assert e.task == game and e.agent == "1" and e.action_kind == "discrete"
        assert e.is_terminal == (not g["truncated_by_max_steps"]) and g["complete"]
        assert e.actions.dtype == np.int32 and e.rewards.dtype == np.float32
        assert 0 <= e.actions.min() and e.actions.max() < gt["action_set_size"]
        assert np.abs(e.rewards).max() <= 1.0  # stored clipped
        assert s["frame_shape"] == (84, 84) and s["frame_dtype"] == np.uint8
        assert s["frames_nonzero"], "an episode frame is all zero: padding leaked in"
        assert s["frames_change"]
        last = e.source["segments"][-1]
        assert (last["checkpoint"], last["last_index"]) == (g["end_checkpoint"], g["end_index"])


@pytest.mark.parametrize("game", GAMES)
def test_units_yield_the_episodes_that_start_in_them(game):
    gt = gt_of(game)
    for suffix, items in read_units(game).items():
        got = sorted(s["key"] for s in items if "episode" in s)
        want = sorted((g["checkpoint"], g["start_index"]) for g in gt["episodes"]
                      if g["checkpoint"] == suffix)
        assert got == want
        ck = gt["checkpoints"][suffix]
        assert len(got) == ck["complete_episodes_within"] + (
            1 if ck["trailing_incomplete_transitions"] else 0)


def test_read_equals_the_union_of_units():
    got = sorted(e.episode_id for e in DqnReplaySource(str(FIX / "Breakout" / "1")).episodes())
    want = sorted(s["episode"].episode_id for s in episodes_of("Breakout").values())
    assert got == want


@pytest.mark.parametrize("game", GAMES)
def test_spanning_episodes_and_the_recovered_undeclared_slot(game):
    gt = gt_of(game)
    got = episodes_of(game)
    c = gt["replay_capacity"]
    spanning = [g for g in gt["episodes"] if g["spans_checkpoints"]]
    assert len(spanning) == 2
    for g in spanning:
        e = got[(g["checkpoint"], g["start_index"])]["episode"]
        segs = [(s["checkpoint"], s["first_index"], s["last_index"], s["num_transitions"])
                for s in e.source["segments"]]
        want = [(s["checkpoint"], s["first_index"], s["last_index"], s["num_transitions"])
                for s in g["segments"]]
        if g["missing_transitions"]:
            # the add right after the last regular log sits in the final suffix's slot C-1,
            # declared by no suffix; the reader puts it back in front of slot 0
            assert g["missing_global_adds"] == [g["segments"][0]["last_global_add"] + 1]
            ck, first, last, n = want[-1]
            want[-1] = (ck, c - 1, last, n + 1)
            assert e.source["recovered_undeclared_slots"] == [{"checkpoint": ck, "index": c - 1}]
            assert e.length == g["recoverable_length"] + g["missing_transitions"] == g["length"]
            assert e.return_ == pytest.approx(g["return_clipped"])
        else:
            assert "recovered_undeclared_slots" not in e.source
        assert segs == want


def raw_array(game: str, name: str, suffix: int) -> np.ndarray:
    """One checkpoint array read with plain gzip + np.load (allow_pickle=False), not the reader."""
    path = FIX / game / "1" / "replay_logs" / f"{name}_ckpt.{suffix}.gz"
    with gzip.open(path) as f:
        return np.load(f, allow_pickle=False)


@functools.cache
def raw_steps(game: str) -> dict[int, dict[str, np.ndarray]]:
    return {sx: {n: raw_array(game, f"$store$_{n}", sx) for n in ("action", "reward", "terminal")}
            for sx in range(len(gt_of(game)["checkpoints"]))}


def raw_segments(gt: dict, g: dict) -> list[tuple[int, np.ndarray]]:
    """(checkpoint, slots in time order) of an episode from ground_truth.json's segments, with
    the final suffix's undeclared slot C-1 put back in front (the transition the reader recovers,
    see test_spanning_episodes_and_the_recovered_undeclared_slot)."""
    c = gt["replay_capacity"]
    out = []
    for i, seg in enumerate(g["segments"]):
        a, b = seg["first_index"], seg["last_index"]
        if g["missing_transitions"] and i == len(g["segments"]) - 1:
            a = c - 1
        slots = np.concatenate([np.arange(a, c), np.arange(b + 1)]) if a > b else \
            np.arange(a, b + 1)
        out.append((seg["checkpoint"], slots))
    return out


@pytest.mark.parametrize("game", GAMES)
def test_every_episode_steps_equal_the_raw_arrays(game):
    """Actions, rewards and terminals of every episode (stitched ones across checkpoints too) are
    the checkpoint files' own slots, in time order: a continuation read from the wrong checkpoint
    keeps actions in range and often the return, but not these arrays."""
    gt = gt_of(game)
    got = episodes_of(game)
    raw = raw_steps(game)
    for g in gt["episodes"]:
        e = got[(g["checkpoint"], g["start_index"])]["episode"]
        segs = raw_segments(gt, g)
        for name, mine in (("action", e.actions), ("reward", e.rewards)):
            want = np.concatenate([raw[ck][name][slots] for ck, slots in segs])
            assert np.array_equal(mine, want), (g["episode"], name)
        terminal = np.concatenate([raw[ck]["terminal"][slots] for ck, slots in segs])
        assert len(terminal) == e.length == g["length"]
        assert terminal[-1] == 1 and not terminal[:-1].any(), g["episode"]


@pytest.mark.parametrize("game", GAMES)
def test_stitched_frames_equal_numpys_own_reading(game):
    """Frames across a checkpoint border, checked with plain gzip + np.load (allow_pickle=False)."""
    gt = gt_of(game)
    got = episodes_of(game)
    spanning = [g for g in gt["episodes"] if g["spans_checkpoints"]]
    assert spanning
    for g in spanning:
        frames = got[(g["checkpoint"], g["start_index"])]["frames"]
        assert frames.shape == (g["length"], 84, 84)
        at = 0
        for ck, slots in raw_segments(gt, g):
            want = raw_array(game, "$store$_observation", ck)[slots]
            assert np.array_equal(frames[at:at + len(want)], want), (g["episode"], ck)
            at += len(want)
        assert at == g["length"]


def test_invalid_range_is_not_an_episode_border():
    """A regular log's invalid_range [C-2, C-1, 0, 1, 2] lies inside episodes, not between them."""
    gt = gt_of("Pong")
    c = gt["replay_capacity"]
    starts = {(g["checkpoint"], g["start_index"]): g for g in gt["episodes"]}
    regular = gt["checkpoints"][1]
    assert regular["kind"] == "regular" and regular["invalid_range"] == [c - 2, c - 1, 0, 1, 2]

    def covers(seg, slot):
        a, b = seg["first_index"], seg["last_index"]
        return a <= slot <= b if a <= b else (slot >= a or slot <= b)

    for slot in regular["invalid_range"]:
        hits = [s["episode"] for s in episodes_of("Pong").values()
                if any(seg["checkpoint"] == 1 and covers(seg, slot)
                       for seg in s["episode"].source["segments"])]
        assert len(hits) == 1, slot
        seg0 = hits[0].source["segments"][0]
        assert hits[0].length == starts[(seg0["checkpoint"], seg0["first_index"])]["length"]


# -------------------------------------------------------------------------------------------------
# Through gs:// (a real local GCS emulator)
# -------------------------------------------------------------------------------------------------
def test_reads_from_gcs(gcs):
    root = gcs.upload(FIX / "Breakout", "dqn/Breakout")
    root = root.rsplit("/", 1)[0]
    src = get_source("dqn-replay")(root, options={"games": ["Breakout"], "runs": ["1"]})
    units = src.units()
    assert [u.key for u in units] == ["Breakout/1/ckpt.0", "Breakout/1/ckpt.1", "Breakout/1/ckpt.2"]
    assert all(u.uri == f"{root}/Breakout/1/replay_logs" for u in units)
    gt = gt_of("Breakout")
    starts = {(g["checkpoint"], g["start_index"]): g for g in gt["episodes"]}
    seen = 0
    for item in src.read():
        assert isinstance(item, Episode), item
        seg = item.source["segments"][0]
        g = starts[(seg["checkpoint"], seg["first_index"])]
        assert (item.length, item.return_) == (g["length"], g["return_clipped"])
        assert item.source["uri"].startswith("gs://")
        seen += 1
    assert seen == len(gt["episodes"])


# -------------------------------------------------------------------------------------------------
# Discovery, naming, options
# -------------------------------------------------------------------------------------------------
def test_uri_forms_and_naming():
    def keys(uri, **kw):
        return [u.key for u in DqnReplaySource(str(uri), **kw).units()]

    assert keys(FIX) == [f"{g}/1/ckpt.{i}" for g in ("Breakout", "Pong") for i in range(3)]
    assert keys(FIX, options={"games": ["Pong"]}) == [f"Pong/1/ckpt.{i}" for i in range(3)]
    assert keys(FIX / "Pong") == [f"Pong/1/ckpt.{i}" for i in range(3)]
    assert keys(FIX / "Pong" / "1") == keys(FIX / "Pong" / "1" / "replay_logs")
    with pytest.raises(SourceError, match="Seaquest"):
        DqnReplaySource(str(FIX), options={"games": ["Seaquest"]}).units()
    with pytest.raises(SourceError, match="run '2'"):
        DqnReplaySource(str(FIX), options={"games": ["Pong"], "runs": ["2"]}).units()
    with pytest.raises(SourceError, match="unknown dqn-replay option"):
        DqnReplaySource(str(FIX), options={"game": ["Pong"]})
    src = DqnReplaySource(str(FIX / "Breakout" / "1"), task_template="atari/{game}",
                          agent_template="{game}/run{run}")
    items = list(src.read_unit(unit_of(src, 2)))
    assert {(e.task, e.agent) for e in items} == {("atari/Breakout", "Breakout/run1")}


def test_max_steps_marks_truncation(tmp_path):
    gt = gt_of("Breakout")
    target = next(g for g in gt["episodes"] if g["checkpoint"] == 2 and g["start_index"] > 100)
    src = DqnReplaySource(str(FIX / "Breakout" / "1"),
                          options={"max_steps_per_episode": target["length"]})
    items = {(e.order[0], e.source["segments"][0]["first_index"]): e
             for e in src.read_unit(unit_of(src, 2))}
    e = items[(2, target["start_index"])]
    assert e.is_truncated and not e.is_terminal
    assert sum(x.is_truncated for x in items.values()) == sum(
        g["length"] == target["length"] for g in gt["episodes"] if g["checkpoint"] == 2)


# -------------------------------------------------------------------------------------------------
# Incomplete episodes and undeclared slots: rejected with a reason, never dropped
# -------------------------------------------------------------------------------------------------
def test_without_recovery_the_episode_across_the_lost_slot_is_rejected():
    gt = gt_of("Breakout")
    g = next(g for g in gt["episodes"] if g["missing_transitions"])
    src = DqnReplaySource(str(FIX / "Breakout" / "1"), options={"recover_undeclared": False})
    one = list(src.read_unit(unit_of(src, g["checkpoint"])))
    rejected = [r for r in one if isinstance(r, Rejected)]
    assert len(rejected) == 1
    assert rejected[0].location.endswith(f"ckpt {g['checkpoint']} slot {g['start_index']}")
    assert "1 add(s) between checkpoint 1 and 2" in rejected[0].reason
    assert "switched off" in rejected[0].reason and rejected[0].task == "Breakout"
    final = list(src.read_unit(unit_of(src, 2)))
    assert all(isinstance(e, Episode) for e in final)  # its head is reported once, by ckpt 1
    assert sorted(e.source["segments"][0]["first_index"] for e in final) == sorted(
        x["start_index"] for x in gt["episodes"] if x["checkpoint"] == 2)


def test_recovery_refused_when_the_final_suffix_wrapped_again(tmp_path):
    run = copy_run(tmp_path)
    path = run / "replay_logs" / "$store$_action_ckpt.2.gz"
    with gzip.open(path) as f:
        action = np.load(f, allow_pickle=False)
    action[14000] = (action[14000] + 1) % 4  # a stale slot no longer equals ckpt 1's copy
    with gzip.open(path, "wb") as f:
        np.save(f, action)
    src = DqnReplaySource(str(run))
    rejected = [r for r in src.read_unit(unit_of(src, 1)) if isinstance(r, Rejected)]
    assert len(rejected) == 1
    assert "stale slot 14000 (action) differs" in rejected[0].reason


def test_incomplete_tail_at_end_of_data_is_rejected(tmp_path):
    gt = gt_of("Breakout")
    run = copy_run(tmp_path, drop=(2,))
    g = next(g for g in gt["episodes"] if g["checkpoint"] == 1 and g["end_checkpoint"] == 2)
    src = DqnReplaySource(str(run))
    items = list(src.read_unit(unit_of(src, 1)))
    rejected = [r for r in items if isinstance(r, Rejected)]
    assert len(rejected) == 1
    assert "no terminal before end of data" in rejected[0].reason
    assert rejected[0].task == "Breakout"
    assert f"{g['segments'][0]['num_transitions']} step(s)" in rejected[0].reason
    assert rejected[0].location == f"{run}/replay_logs ckpt 1 slot {g['start_index']}"
    assert len(items) - 1 == gt["checkpoints"][1]["complete_episodes_within"]


def test_episode_whose_start_is_missing_is_rejected_by_the_first_unit(tmp_path):
    gt = gt_of("Breakout")
    run = copy_run(tmp_path, drop=(0,))
    src = DqnReplaySource(str(run))
    items = list(src.read_unit(unit_of(src, 1)))
    rejected = [r for r in items if isinstance(r, Rejected)]
    assert len(rejected) == 1
    lead = gt["checkpoints"][1]["leading_continuation_transitions"]
    assert f"its {lead} slot(s) at the start of checkpoint 1" in rejected[0].reason
    assert "start is not in the data" in rejected[0].reason
    assert sorted(e.source["segments"][0]["first_index"] for e in items
                  if isinstance(e, Episode)) == sorted(
        g["start_index"] for g in gt["episodes"] if g["checkpoint"] == 1)


def test_pickled_episode_end_indices_are_never_unpickled(tmp_path, monkeypatch):
    run = copy_run(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for sx in range(3):
        (run / "replay_logs" / f"episode_end_indices_ckpt.{sx}.gz").write_bytes(
            gzip.compress(pickle.dumps(Exploit())))

    def refuse(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    src = DqnReplaySource(str(run))
    assert [u.key for u in src.units()] == [f"Breakout/1/ckpt.{i}" for i in range(3)]
    items = list(src.read_unit(unit_of(src, 2)))
    assert not marker.exists()
    gt = gt_of("Breakout")
    assert sorted(e.length for e in items) == sorted(
        g["length"] for g in gt["episodes"] if g["checkpoint"] == 2)


# -------------------------------------------------------------------------------------------------
# Bad inputs: every one names the file and the reason
# -------------------------------------------------------------------------------------------------
def read_error(run: Path, suffix: int) -> SourceError:
    src = DqnReplaySource(str(run))
    with pytest.raises(SourceError) as info:
        list(src.read_unit(unit_of(src, suffix)))
    return info.value


def test_truncated_observation_gzip(tmp_path):
    run = copy_run(tmp_path)
    path = run / "replay_logs" / "$store$_observation_ckpt.2.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    err = read_error(run, 2)
    assert err.uri == str(path) and err.offset is not None and err.offset > 0
    assert "truncated gzip" in err.reason and "slot" in err.reason
    # the job keeps going: the unit becomes one Rejected naming the file
    src = DqnReplaySource(str(run))
    last = list(src.read_unit_safely(unit_of(src, 2)))[-1]
    assert isinstance(last, Rejected) and last.kind == "unit"
    assert str(path) in last.location + last.reason and "truncated gzip" in last.reason


def test_truncated_small_file(tmp_path):
    run = copy_run(tmp_path)
    path = run / "replay_logs" / "$store$_reward_ckpt.1.gz"
    path.write_bytes(path.read_bytes()[:-20])
    err = read_error(run, 1)
    assert err.uri == str(path) and "truncated" in err.reason


def test_corrupt_deflate_data(tmp_path):
    run = copy_run(tmp_path)
    path = run / "replay_logs" / "$store$_observation_ckpt.2.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    err = read_error(run, 2)
    assert err.uri == str(path) and "corrupt gzip data" in err.reason


@pytest.mark.parametrize("case, header, magic, message", [
    ("bad magic", {"descr": "<i4", "fortran_order": False, "shape": (15000,)}, b"\x93NUMPZ",
     "magic string is not correct"),
    ("object dtype", {"descr": "|O", "fortran_order": False, "shape": (15000,)}, None,
     "object dtype"),
    ("fortran order", {"descr": "<i4", "fortran_order": True, "shape": (15000,)}, None,
     "fortran_order"),
    ("wrong dtype", {"descr": "<i8", "fortran_order": False, "shape": (15000,)}, None,
     "dtype '<i8', expected '<i4'"),
    ("wrong shape", {"descr": "<i4", "fortran_order": False, "shape": (15000, 2)}, None,
     "has 2 dimensions, expected 1"),
])
def test_bad_npy_header_in_a_small_file(tmp_path, case, header, magic, message):
    run = copy_run(tmp_path)
    path = run / "replay_logs" / "$store$_action_ckpt.1.gz"
    npy_file(path, header, bytes(60000), magic)
    err = read_error(run, 1)
    assert err.uri == str(path) and "bad .npy header" in err.reason and message in err.reason


@pytest.mark.parametrize("header, message", [
    ({"descr": "|u1", "fortran_order": False, "shape": (15000, 84, 80)}, "expected (15000, 84, 84)"),
    ({"descr": "|u1", "fortran_order": False, "shape": (14999, 84, 84)}, "length mismatch"),
    ({"descr": "|u1", "fortran_order": True, "shape": (15000, 84, 84)}, "fortran_order"),
    ({"descr": "|O", "fortran_order": False, "shape": (15000, 84, 84)}, "object dtype"),
])
def test_bad_observation_header(tmp_path, header, message):
    run = copy_run(tmp_path)
    path = run / "replay_logs" / "$store$_observation_ckpt.2.gz"
    npy_file(path, header, bytes(7056))
    err = read_error(run, 2)
    assert err.uri == str(path) and message in err.reason


def test_length_mismatch_between_files_of_one_checkpoint(tmp_path):
    run = copy_run(tmp_path)
    path = run / "replay_logs" / "$store$_terminal_ckpt.1.gz"
    with gzip.open(path, "wb") as f:
        np.save(f, np.zeros(14999, np.uint8))
    err = read_error(run, 1)
    assert err.uri == str(path) and "length mismatch: 14999 slots" in err.reason


def test_missing_file(tmp_path):
    run = copy_run(tmp_path)
    path = run / "replay_logs" / "$store$_reward_ckpt.1.gz"
    path.unlink()
    err = read_error(run, 1)
    assert err.uri == str(path) and err.reason == "missing file"
    # ckpt 0's episode that runs into ckpt 1 is rejected with that reason; its others are kept
    src = DqnReplaySource(str(run))
    items = list(src.read_unit_safely(unit_of(src, 0)))
    rejected = [r for r in items if isinstance(r, Rejected)]
    assert len(rejected) == 1 and "missing file" in rejected[0].reason
    assert str(path) in rejected[0].reason
    assert len(items) - 1 == gt_of("Breakout")["checkpoints"][0]["complete_episodes_within"]


@pytest.mark.parametrize("suffix, value, message", [
    (1, -5, "add_count -5 out of range (negative)"),
    (1, 20000, "add_count 20000 out of range: the checkpoint would start at add 5000"),
    (1, 100, "add_count 100 out of range: below the capacity 15000"),
])
def test_add_count_out_of_range(tmp_path, suffix, value, message):
    run = copy_run(tmp_path)
    path = run / "replay_logs" / f"add_count_ckpt.{suffix}.gz"
    with gzip.open(path, "wb") as f:
        np.save(f, np.array(value, np.int64))
    err = read_error(run, suffix)
    assert err.uri == str(path) and message in err.reason


def test_invalid_range_from_another_checkpoint_is_detected(tmp_path):
    run = copy_run(tmp_path)
    logs = run / "replay_logs"
    shutil.copy(logs / "invalid_range_ckpt.1.gz", logs / "invalid_range_ckpt.2.gz")
    err = read_error(run, 2)
    assert err.uri == str(logs / "invalid_range_ckpt.2.gz")
    assert "does not surround the cursor 5815" in err.reason


def test_padding_that_is_not_zero_is_an_error(tmp_path):
    gt = gt_of("Breakout")
    run = copy_run(tmp_path)
    pad = gt["episodes"][5]["padding"][1]
    path = run / "replay_logs" / f"$store$_reward_ckpt.{pad['checkpoint']}.gz"
    with gzip.open(path) as f:
        reward = np.load(f, allow_pickle=False)
    reward[pad["index"]] = 1.0
    with gzip.open(path, "wb") as f:
        np.save(f, reward)
    err = read_error(run, pad["checkpoint"])
    assert f"slot {pad['index']} should be zero padding" in err.reason


# -------------------------------------------------------------------------------------------------
# Stitching that cannot finish: the reason, location and task of the Rejected record
# -------------------------------------------------------------------------------------------------
def _save_gz(path: Path, array: np.ndarray) -> None:
    with gzip.open(path, "wb") as f:
        np.save(f, array)


def _spanning(game: str, checkpoint: int) -> dict:
    return next(g for g in gt_of(game)["episodes"]
                if g["spans_checkpoints"] and g["checkpoint"] == checkpoint)


def _the_rejected_spanning_episode(run) -> Rejected:
    """Checkpoint 0's one Rejected: Breakout's episode that runs on into checkpoint 1, named by
    its task and its first slot."""
    g = _spanning("Breakout", 0)
    src = DqnReplaySource(str(run))
    rejected = [r for r in src.read_unit(unit_of(src, 0)) if isinstance(r, Rejected)]
    assert len(rejected) == 1
    r = rejected[0]
    assert r.task == "Breakout"
    assert r.location == f"{run}/replay_logs ckpt 0 slot {g['start_index']}"
    return r


def test_an_episode_running_into_an_unreadable_checkpoint_is_rejected(tmp_path):
    run = copy_run(tmp_path)
    reward = run / "replay_logs" / "$store$_reward_ckpt.1.gz"
    with gzip.open(reward) as f:
        short = np.load(f, allow_pickle=False)[:-1]
    _save_gz(reward, short)
    r = _the_rejected_spanning_episode(run)
    assert r.reason.startswith("episode continues into checkpoint 1, which cannot be read: ")
    assert "length mismatch: 14999 slots" in r.reason


def test_an_episode_running_into_unreadable_frames_is_rejected(tmp_path):
    run = copy_run(tmp_path)
    obs = run / "replay_logs" / "$store$_observation_ckpt.1.gz"
    obs.write_bytes(obs.read_bytes()[:2000])  # the small arrays of checkpoint 1 stay good
    r = _the_rejected_spanning_episode(run)
    assert r.reason.startswith("episode continues into checkpoint 1, whose frames cannot be "
                               f"read: {run}/replay_logs/$store$_observation_ckpt.1.gz")


@pytest.mark.parametrize("final_add_count", [5815, 35815])
def test_an_episode_running_into_adds_at_an_unknown_place_is_rejected(tmp_path, final_add_count):
    """Checkpoint 0 is missing and checkpoint 1 says it is below capacity, so where checkpoint 1
    sits in the add stream is unknown: its tail cannot be joined to checkpoint 2, whether
    checkpoint 2's own place is unknown too (below capacity) or known (full)."""
    run = copy_run(tmp_path, drop=(0,))
    logs = run / "replay_logs"
    _save_gz(logs / "add_count_ckpt.1.gz", np.array(14999, np.int64))
    _save_gz(logs / "add_count_ckpt.2.gz", np.array(final_add_count, np.int64))
    (logs / "invalid_range_ckpt.1.gz").unlink()  # a cross-check only; it would disagree now
    (logs / "invalid_range_ckpt.2.gz").unlink()
    src = DqnReplaySource(str(run))
    items = list(src.read_unit(unit_of(src, 1)))
    rejected = [r for r in items if isinstance(r, Rejected)]
    tail = rejected[-1]
    assert tail.task == "Breakout"
    assert tail.location.startswith(f"{run}/replay_logs ckpt 1 slot ")
    assert tail.reason.startswith("incomplete episode: after ")
    lost = "runs into an unknown number of add(s) between checkpoint 1 and 2 that no " \
        "checkpoint holds"
    if final_add_count < 15000:
        assert tail.reason.endswith(f"{lost} (position in the add stream unknown)")
    else:
        assert tail.reason.endswith(lost)


def test_an_episode_through_a_whole_checkpoint_counts_all_its_steps(tmp_path):
    """Checkpoint 1 without a terminal: checkpoint 0's last episode runs through all of it; the
    next checkpoint is not joined (its stale slots now differ from checkpoint 1's, so its lost
    slot C-1 is not recovered) and the rejection counts the steps of both checkpoints."""
    run = copy_run(tmp_path)
    terminal = run / "replay_logs" / "$store$_terminal_ckpt.1.gz"
    with gzip.open(terminal) as f:
        flags = np.load(f, allow_pickle=False)
    _save_gz(terminal, np.zeros_like(flags))
    g = _spanning("Breakout", 0)
    head = g["segments"][0]["num_transitions"]
    src = DqnReplaySource(str(run))
    rejected = [r for r in src.read_unit(unit_of(src, 0)) if isinstance(r, Rejected)]
    assert len(rejected) == 1 and rejected[0].task == "Breakout"
    assert rejected[0].location == f"{run}/replay_logs ckpt 0 slot {g['start_index']}"
    assert rejected[0].reason.startswith(
        f"incomplete episode: after {head + 15000} step(s) it runs into 1 add(s) between "
        "checkpoint 1 and 2 that no checkpoint holds (stale slot ")


def test_an_action_outside_the_action_set_rejects_its_episode(tmp_path):
    """An action exactly num_actions (and one below 0) rejects the episode, naming its first slot
    and the first bad step (found by mutation testing: docs/mutation-testing.md)."""
    run = copy_run(tmp_path)
    g = next(g for g in gt_of("Breakout")["episodes"] if g["checkpoint"] == 2)
    path = run / "replay_logs" / "$store$_action_ckpt.2.gz"
    with gzip.open(path) as f:
        action = np.load(f, allow_pickle=False)
    action[g["start_index"] + 10], action[g["start_index"] + 20] = 4, -1
    _save_gz(path, action)
    src = DqnReplaySource(str(run), options={"num_actions": 4})
    items = list(src.read_unit(unit_of(src, 2)))
    rejected = [r for r in items if isinstance(r, Rejected)]
    assert len(rejected) == 1 and rejected[0].task == "Breakout"
    assert rejected[0].location == f"{run}/replay_logs ckpt 2 slot {g['start_index']}"
    assert rejected[0].reason == "action 4 at step 10 outside [0, 4)"
    assert len(items) == sum(x["checkpoint"] == 2 for x in gt_of("Breakout")["episodes"])


def test_an_episode_that_fails_validation_is_rejected_at_its_first_slot(tmp_path):
    run = copy_run(tmp_path)
    g = next(g for g in gt_of("Breakout")["episodes"] if g["checkpoint"] == 2)
    path = run / "replay_logs" / "$store$_reward_ckpt.2.gz"
    with gzip.open(path) as f:
        reward = np.load(f, allow_pickle=False)
    reward[g["start_index"] + 5] = np.nan
    _save_gz(path, reward)
    src = DqnReplaySource(str(run))
    rejected = [r for r in src.read_unit(unit_of(src, 2)) if isinstance(r, Rejected)]
    assert len(rejected) == 1 and rejected[0].task == "Breakout"
    assert rejected[0].location == f"{run}/replay_logs ckpt 2 slot {g['start_index']}"
    assert "rewards" in rejected[0].reason
