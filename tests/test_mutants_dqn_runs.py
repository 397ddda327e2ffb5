"""DQN Replay episode assembly on small runs written the way Dopamine and batch_rl write them
(tests/dqn_sim.py), from episodes chosen here: the layouts the two real fixtures do not have (a
checkpoint without a terminal, a terminal right before a checkpoint's end, an episode starting at
slot 0 or in the recovered slot, checkpoints of other sizes). Found by mutation testing
(docs/mutation-testing.md); the truth is the episodes fed in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dqn_sim import PAD, SHAPE, Ep, Saved, episode, load, store, write_run
from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources.dqn_replay import DqnReplaySource

OPTS = {"observation_shape": list(SHAPE)}


def source(run: Path, **options) -> DqnReplaySource:
    return DqnReplaySource(str(run), options={**OPTS, **options})


def read_all(run: Path, **options) -> dict[int, list[Episode | Rejected]]:
    """Each unit read by its own Source instance, as the job does."""
    out = {}
    for unit in source(run, **options).units():
        out[unit.param("suffix")] = list(source(run, **options).read_unit(unit))
    return out


def truth(episodes: list[Ep], saved: list[Saved], c: int, recovered: bool = True) -> dict:
    """episode_id -> (order, segments, recovered slots, the episode) for each episode whose adds
    are all held by the checkpoints written (the final one's slot C-1 counted when
    ``recovered``)."""
    def where(a: int) -> tuple[int, int] | None:  # (checkpoint, position in time order)
        for s in saved:
            if s.lo <= a < s.hi:
                return s.suffix, a - s.lo
        last = saved[-1]
        if recovered and last.add_count < c < last.hi and a == last.lo - 1:
            return last.suffix, -1
        return None

    out, a = {}, 0
    for ep in episodes:
        a += PAD
        n = len(ep.actions)
        places = [where(x) for x in range(a, a + n)]
        if ep.terminal and all(places):
            segments: list[dict] = []
            for x, (ck, _) in zip(range(a, a + n), places, strict=True):
                if not segments or segments[-1]["checkpoint"] != ck:
                    segments.append({"checkpoint": ck, "first_index": x % c, "last_index": x % c,
                                     "num_transitions": 0})
                segments[-1]["last_index"] = x % c
                segments[-1]["num_transitions"] += 1
            put_back = [{"checkpoint": ck, "index": c - 1} for ck, pos in places if pos == -1]
            out[f"G/1/ckpt{places[0][0]}/{a % c}"] = (places[0], segments, put_back, ep)
        a += n
    return out


def check(items: dict[int, list[Episode | Rejected]], want: dict) -> None:
    got = {e.episode_id: e for unit in items.values() for e in unit if isinstance(e, Episode)}
    assert sorted(got) == sorted(want)
    for key, (order, segments, recovered, ep) in want.items():
        e = got[key]
        assert e.order == order, key
        assert e.source["segments"] == segments, key
        assert e.source.get("recovered_undeclared_slots", []) == recovered, key
        assert np.array_equal(e.actions, ep.actions) and e.actions.dtype == np.int32, key
        assert np.array_equal(e.rewards, ep.rewards) and e.rewards.dtype == np.float32, key
        assert np.array_equal(e.observations["observation"], ep.frames), key
        assert e.return_ == float(ep.rewards.sum(dtype=np.float64)) and e.is_terminal, key


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(22)


def test_episodes_across_every_layout(tmp_path, rng):
    """Capacity 40: episodes inside one checkpoint, across two, through a whole one, into the
    final one's recovered slot; every unit yields exactly the episodes that start in it."""
    lengths = [5, 20, 30, 100, 8, 1, 14, 33, 9, 12, 40, 6, 2]
    eps = [episode(rng, n) for n in lengths]
    run = tmp_path / "G" / "1"
    c = 40
    saved = write_run(run, eps, c)
    items = read_all(run)
    assert not [r for unit in items.values() for r in unit if isinstance(r, Rejected)]
    want = truth(eps, saved, c)
    assert len(want) == len(eps)
    check(items, want)


@pytest.mark.parametrize("d", [0, 1, 2, 3])
@pytest.mark.parametrize("boundary", ["regular", "final"])
def test_an_episode_ending_right_before_a_checkpoint_border(tmp_path, rng, d, boundary):
    """The last terminal of a checkpoint d slots before its end (capacity 20): the next episode's
    padding runs into the next checkpoint, or (d = 3) the episode starts at its first slot, which
    for the final checkpoint is the recovered slot C-1."""
    c = 20
    # regular: the terminal at add 18 - d, the last of checkpoint 0 (adds [0, 19))
    # final: at add 38 - d, the last of checkpoint 1 (adds [19, 39)); the final pass is [40, n)
    lengths = [16 - d, 12, 9, 28] if boundary == "regular" else [10, 23 - d, 5, 4]
    eps = [episode(rng, n) for n in lengths]
    run = tmp_path / "G" / "1"
    saved = write_run(run, eps, c)
    assert [s.add_count < c for s in saved][-1] and len(saved) == (4 if boundary == "regular" else 3)
    items = read_all(run)
    assert not [r for unit in items.values() for r in unit if isinstance(r, Rejected)]
    want = truth(eps, saved, c)
    assert len(want) == len(eps)
    check(items, want)


def test_a_missing_checkpoint_after_a_whole_padding(tmp_path, rng):
    """Checkpoint 0 ends with a terminal and its 3 padding slots, then checkpoint 1 is missing:
    the head of checkpoint 2 belongs to an episode that started in the missing adds, so unit 2
    reports it (checkpoint 0 has no episode running on to claim it)."""
    c = 20
    eps = [episode(rng, n) for n in (13, 12, 9, 28)]  # the terminal at add 15, padding 16-18
    run = tmp_path / "G" / "1"
    saved = write_run(run, eps, c)
    for f in (run / "replay_logs").glob("*_ckpt.1.gz"):
        f.unlink()
    items = read_all(run)
    rejected = [(k, r) for k, unit in items.items() for r in unit if isinstance(r, Rejected)]
    assert [(k, r.location, r.reason, r.task) for k, r in rejected] == [(
        2, f"{run}/replay_logs ckpt 2 slot 19",
        "incomplete episode: its 4 slot(s) at the start of checkpoint 2 continue an episode "
        "whose start is not in the data (20 add(s) between checkpoint 0 and 2 are in no "
        "checkpoint)", "G")]
    check(items, truth(eps, [s for s in saved if s.suffix != 1], c))


# -------------------------------------------------------------------------------------------------
# Capacity 20; add a of the stream sits in slot a % 20. The checkpoints batch_rl writes: 0 holds
# adds [0, 19), 1 holds [19, 39), 2 holds [39, 59), ...; a final one holds [20k, n) in slots
# 0.. and add 20k - 1 in its undeclared slot 19.
# -------------------------------------------------------------------------------------------------
C = 20


def sim(tmp_path: Path, rng: np.random.Generator, lengths: list[int]
        ) -> tuple[Path, Path, list[Ep], list[Saved]]:
    eps = [episode(rng, n) for n in lengths]
    run = tmp_path / "G" / "1"
    saved = write_run(run, eps, C)
    return run, run / "replay_logs", eps, saved


def rejections(items: dict[int, list[Episode | Rejected]]) -> list[tuple]:
    return [(k, r.location, r.reason, r.task) for k, unit in items.items() for r in unit
            if isinstance(r, Rejected)]


def head(suffix: int, cut: int, why: str) -> str:
    return (f"incomplete episode: its {cut} slot(s) at the start of checkpoint {suffix} continue "
            f"an episode whose start is not in the data ({why})")


def test_a_one_step_episode_right_after_the_padding(tmp_path, rng):
    """The first episode of checkpoint 1 starts one slot in (2 padding slots were in checkpoint
    0) and is one step long: its terminal is the checkpoint's first episode slot."""
    run, _, eps, saved = sim(tmp_path, rng, [14, 1, 12, 9, 28])  # terminal at 16, then add 20
    items = read_all(run)
    assert rejections(items) == []
    want = truth(eps, saved, C)
    assert len(want) == len(eps) and "G/1/ckpt1/0" in want
    check(items, want)


@pytest.mark.parametrize("lengths, final_slots", [([10, 20, 21], 0), ([10, 20, 19], 18)])
def test_a_final_checkpoint_of_0_or_c_minus_2_slots(tmp_path, rng, lengths, final_slots):
    """add_count 0 (the run ended one add after a regular log: only slot 19 is new) and C - 2
    (one stale slot left to compare): both are read, slot 19 put back."""
    run, _, eps, saved = sim(tmp_path, rng, lengths)
    assert saved[-1].add_count == final_slots and saved[-1].hi > C
    items = read_all(run)
    assert rejections(items) == []
    want = truth(eps, saved, C)
    assert len(want) == len(eps)
    assert any(r for _, _, r, _ in want.values())  # an episode through the recovered slot
    check(items, want)


def test_a_final_checkpoint_with_no_stale_slot_left(tmp_path, rng):
    """A final add_count of C - 1 leaves no stale slot to prove that slot 19 was not overwritten:
    it is not put back, and the episode across it is rejected by the final unit."""
    run, logs, eps, saved = sim(tmp_path, rng, [10, 20, 19])  # the last episode: adds 39..57
    store(logs, "add_count", 2, np.array(C - 1, np.int64))
    (logs / "invalid_range_ckpt.2.gz").unlink()
    items = read_all(run)
    assert rejections(items) == [(2, f"{logs} ckpt 2 slot 0", head(
        2, 18, "1 add(s) between checkpoint 1 and 2 are in no checkpoint (no stale slots left "
        "to prove that slot C-1 was not overwritten)"), "G")]
    check(items, truth(eps, saved, C, recovered=False))


@pytest.mark.parametrize("case", ["switched off", "wrapped again"])
def test_why_the_undeclared_slot_is_not_put_back(tmp_path, rng, case):
    """The last episode starts at add 39, in the final checkpoint's slot 19: without it, the
    final unit rejects the episode, saying why slot 19 was not put back."""
    run, logs, eps, saved = sim(tmp_path, rng, [10, 20, 5])  # adds 39..43; final: slots 0..3
    options = {}
    if case == "switched off":
        options = {"recover_undeclared": False}
        why = "recovery of the final checkpoint's undeclared slot is switched off"
    else:
        reward = load(logs, "reward", 2)
        reward[10] = 7.0  # a stale slot that no longer equals checkpoint 1's
        store(logs, "reward", 2, reward)
        why = ("stale slot 10 (reward) differs from checkpoint 1: the buffer wrapped again, "
               "slot C-1 may be newer")
    items = read_all(run, **options)
    assert rejections(items) == [(2, f"{logs} ckpt 2 slot 0", head(
        2, 4, f"1 add(s) between checkpoint 1 and 2 are in no checkpoint ({why})"), "G")]
    check(items, truth(eps, saved, C, recovered=False))


def test_a_previous_checkpoint_that_does_not_end_right_before_slot_c_minus_1(tmp_path, rng):
    """Checkpoint 0 declares only adds [0, 15): 5 adds are lost before the final checkpoint."""
    run, logs, eps, saved = sim(tmp_path, rng, [10, 14])  # adds 3..12, 16..29; final: [20, 30)
    store(logs, "add_count", 0, np.array(15, np.int64))
    (logs / "invalid_range_ckpt.0.gz").unlink()
    items = read_all(run)
    assert rejections(items) == [(1, f"{logs} ckpt 1 slot 0", head(
        1, 10, "5 add(s) between checkpoint 0 and 1 are in no checkpoint (the previous "
        "checkpoint ends at add 15, not right before slot 19)"), "G")]
    assert [e.episode_id for e in items[0]] == ["G/1/ckpt0/3"] and items[1] == items[1][:1]


@pytest.mark.parametrize("field", ["action", "reward", "terminal"])
def test_slot_c_minus_1_that_should_be_padding_but_is_not(tmp_path, rng, field):
    """Checkpoint 1's last terminal is 2 slots before its end, so slot 19 of the final checkpoint
    is padding: when it is not zero it is not put back."""
    run, logs, eps, saved = sim(tmp_path, rng, [10, 21, 5, 4])  # terminal at 36; next ep at 40
    arr = load(logs, field, 2)
    arr[C - 1] = 1
    store(logs, field, 2, arr)
    items = read_all(run)
    assert rejections(items) == [(2, f"{logs} ckpt 2 slot 0", head(
        2, 5, "1 add(s) between checkpoint 1 and 2 are in no checkpoint (slot 19 should be zero "
        "padding after the previous terminal but is not)"), "G")]
    want = truth(eps, saved, C, recovered=False)
    del want["G/1/ckpt2/0"]  # its slots are the rejected head
    check(items, want)


def read_error(run: Path, suffix: int) -> str:
    src = source(run)
    unit = next(u for u in src.units() if u.param("suffix") == suffix)
    with pytest.raises(SourceError) as err:
        list(src.read_unit(unit))
    return str(err.value)


def test_a_terminal_flag_of_2(tmp_path, rng):
    run, logs, _, _ = sim(tmp_path, rng, [10, 20, 30, 5])
    terminal = load(logs, "terminal", 1)
    assert terminal[15] == 1  # the end of the episode at adds 16..35
    terminal[17] = terminal[18] = 2
    store(logs, "terminal", 1, terminal)
    assert read_error(run, 1) == f"{logs}/$store$_terminal_ckpt.1.gz [slot 17]: terminal flag 2 " \
        "is not 0/1"


def test_a_reward_file_of_another_length(tmp_path, rng):
    run, logs, _, _ = sim(tmp_path, rng, [10, 20, 30, 5])
    store(logs, "reward", 1, load(logs, "reward", 1)[:-1])
    assert read_error(run, 1) == (f"{logs}/$store$_reward_ckpt.1.gz: length mismatch: 19 slots "
                                  f"but {logs}/$store$_action_ckpt.1.gz has 20")


def test_frames_of_another_size(tmp_path, rng):
    run, logs, _, _ = sim(tmp_path, rng, [10, 20, 30, 5])
    store(logs, "observation", 1, np.ones((C, 2, 4), np.uint8))
    assert read_error(run, 1) == (
        f"{logs}/$store$_observation_ckpt.1.gz @ offset 0: observation array has shape "
        "(20, 2, 4), expected (20, 2, 3) (length mismatch with the action/reward/terminal "
        "files, or unexpected frame size)")


def test_an_invalid_range_just_past_the_cursor(tmp_path, rng):
    run, logs, _, _ = sim(tmp_path, rng, [10, 20, 30, 5])
    store(logs, "invalid_range", 1, np.arange(14, 19, dtype=np.int64))  # the cursor is 19
    assert read_error(run, 1) == (
        f"{logs}/invalid_range_ckpt.1.gz: invalid_range [14, 15, 16, 17, 18] does not surround "
        "the cursor 19 given by add_count 39 (files from different checkpoints?)")


@pytest.mark.parametrize("slot, suffix", [(13, 0), (19, 1)])
def test_padding_that_is_not_zero(tmp_path, rng, slot, suffix):
    """Slot 13 is the padding right after checkpoint 0's first terminal; slot 19 is the first
    slot of checkpoint 1, the last padding slot before the episode at add 20."""
    run, logs, _, _ = sim(tmp_path, rng, [10, 3, 2, 9, 28])  # terminals at 12, 18
    action = load(logs, "action", suffix)
    action[slot] = 5
    store(logs, "action", suffix, action)
    assert read_error(run, suffix) == (
        f"{logs} [ckpt {suffix} slot {slot}]: slot {slot} should be zero padding (Dopamine adds 3 "
        "zero transitions before every episode) but holds action 5, reward 0.0, terminal 0")


@pytest.mark.parametrize("lengths, slot, before", [
    ([14, 3, 3, 3, 30], 10, ["G/1/ckpt1/0", "G/1/ckpt1/6"]),  # padding at slots 3-5, 9-11
    ([14, 3, 1, 3, 30], 5, ["G/1/ckpt1/0"]),  # padding at 3-5, a one-step episode at 6, 7-9
])
def test_a_padding_frame_that_is_not_zero(tmp_path, rng, lengths, slot, before):
    """Checkpoint 1 (slots 19, 0..18) starts with the episode at slots 0-2: a padding frame that
    is not zero fails the unit as soon as its run of padding slots is read, so only the episodes
    that end before that run's end come out."""
    run, logs, _, _ = sim(tmp_path, rng, lengths)
    frames = load(logs, "observation", 1)
    assert not frames[[3, 4, 5]].any()
    frames[slot, 1, 2] = 9
    store(logs, "observation", 1, frames)
    src = source(run)
    got = []
    with pytest.raises(SourceError) as err:
        for item in src.read_unit(next(u for u in src.units() if u.param("suffix") == 1)):
            got.append(item.episode_id)
    assert str(err.value) == (f"{logs}/$store$_observation_ckpt.1.gz [slot {slot}]: padding "
                              "frame is not all zero (Dopamine's padding transitions have zero "
                              "frames)")
    assert got == before


def test_the_first_checkpoint_present_has_no_terminal(tmp_path, rng):
    """Checkpoint 0 is missing and checkpoint 1 lies inside one episode: unit 1 rejects all its
    20 slots, unit 2 does not report them again and reads the episodes that start in it."""
    run, logs, eps, saved = sim(tmp_path, rng, [10, 50, 5])  # adds 16..65
    for f in logs.glob("*_ckpt.0.gz"):
        f.unlink()
    items = read_all(run)
    assert rejections(items) == [(1, f"{logs} ckpt 1 slot 19", head(
        1, 20, "checkpoint 1 is the first one in the data, so the episode running at its start "
        "began in a checkpoint that is not here"), "G")]
    check(items, truth(eps, saved[1:], C))


@pytest.mark.parametrize("damage", ["missing add_count", "overlap", "unknown place"])
def test_the_checkpoint_before_cannot_be_placed(tmp_path, rng, damage):
    """Checkpoint 2 (adds [39, 59)) lies inside one episode; what is wrong with checkpoint 1 is
    named in the rejection of its head by unit 2."""
    run, logs, eps, saved = sim(tmp_path, rng, [10, 50, 30, 5])  # adds 16..65, 69..98
    if damage == "missing add_count":
        (logs / "add_count_ckpt.1.gz").unlink()
        why = f"the previous checkpoint 1 cannot be read: {logs}/add_count_ckpt.1.gz: missing file"
    elif damage == "overlap":  # checkpoint 1, without a terminal, starts inside checkpoint 0
        store(logs, "add_count", 1, np.array(38, np.int64))
        (logs / "invalid_range_ckpt.1.gz").unlink()
        why = (f"the previous checkpoint 1 cannot be read: {logs}/add_count_ckpt.1.gz: add_count "
               "38 out of range: the checkpoint would start at add 18, inside checkpoint 0 "
               "(which ends at add 19)")
    else:  # checkpoint 0 missing, checkpoint 1 below capacity: its place is unknown
        for f in logs.glob("*_ckpt.0.gz"):
            f.unlink()
        store(logs, "add_count", 1, np.array(C - 1, np.int64))
        (logs / "invalid_range_ckpt.1.gz").unlink()
        why = "its position in the add stream is unknown"
    src = source(run)
    items = list(src.read_unit(next(u for u in src.units() if u.param("suffix") == 2)))
    assert rejections({2: items}) == [(2, f"{logs} ckpt 2 slot 19", head(2, 20, why), "G")]
    assert [e for e in items if isinstance(e, Episode)] == []
