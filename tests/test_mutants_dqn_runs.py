"""DQN Replay episode assembly on small runs written the way Dopamine and batch_rl write them
(tests/dqn_sim.py), from episodes chosen here: the layouts the two real fixtures do not have (a
checkpoint without a terminal, a terminal right before a checkpoint's end, an episode starting at
slot 0 or in the recovered slot, checkpoints of other sizes). Found by mutation testing
(docs/mutation-testing.md); the truth is the episodes fed in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dqn_sim import PAD, SHAPE, Ep, Saved, episode, write_run
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
