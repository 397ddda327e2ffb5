"""The best-windowed-return filter (SPEC section 3) against an independent computation on the
fixtures' ground-truth returns (recorded by the fixture generators, not read from our output)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from trajcorpus.pipelines.filter import (
    best_window,
    collection_order,
    filter_task,
    is_kept,
    threshold_for,
    top_count,
    window_size,
)
from trajcorpus.schemas.catalog import FilterSettings
from trajcorpus.schemas.episode import EpisodeSummary

FIX = Path(__file__).parent / "fixtures"
MUJOCO = [
    FIX / "mujoco/minari/trajcorpus-fixtures/hopper/mixed-v0/ground_truth.json",
    FIX / "mujoco/minari/trajcorpus-fixtures/halfcheetah/mixed-v0/ground_truth.json",
]
DQN = [FIX / "atari_dqn_replay/Pong/1/ground_truth.json",
       FIX / "atari_dqn_replay/Breakout/1/ground_truth.json"]


def _returns(path: Path) -> list[float]:
    gt = json.loads(path.read_text())
    if "return_clipped" in gt["episodes"][0]:  # DQN Replay stores clipped rewards
        eps = sorted(gt["episodes"], key=lambda e: e["episode"])
        return [float(e["return_clipped"]) for e in eps]
    eps = sorted(gt["episodes"], key=lambda e: e["index"])
    return [float(e["return"]) for e in eps]


def _summaries(returns: list[float], task: str = "t") -> list[EpisodeSummary]:
    return [EpisodeSummary("d", task, "a", f"ep{i:04d}", (0, i), r, 10)
            for i, r in enumerate(returns)]


def _reference(returns: list[float], fraction: float = 0.8, window_fraction: float = 0.1,
               max_window: int = 1000) -> dict:
    """SPEC section 3 written out directly: a brute-force window scan with exact sums."""
    n = len(returns)
    w = max(1, min(max_window, int(math.floor(window_fraction * n))))
    best_j, best = 0, -math.inf
    for j in range(n - w + 1):
        mean = math.fsum(returns[j:j + w]) / w
        if mean > best + 1e-9:
            best_j, best = j, mean
    thr = fraction * best if best >= 0 else best - (1 - fraction) * abs(best)
    kept = {f"ep{i:04d}" for i, r in enumerate(returns) if r >= thr}
    return {"window": w, "start": best_j, "expert": best, "threshold": thr, "kept": kept}


@pytest.mark.parametrize("path", MUJOCO + DQN, ids=lambda p: p.parent.name + "/" + p.parent.parent.name)
def test_filter_matches_independent_computation(path: Path) -> None:
    returns = _returns(path)
    ref = _reference(returns)
    shuffled = _summaries(returns)
    random.Random(7).shuffle(shuffled)  # the job groups summaries in no particular order
    res = filter_task("t", shuffled, FilterSettings())
    assert res.episodes_total == len(returns)
    assert res.window == ref["window"]
    assert res.best_window_start == ref["start"]
    assert res.expert_return == pytest.approx(ref["expert"], rel=1e-12, abs=1e-9)
    assert res.threshold == pytest.approx(ref["threshold"], rel=1e-12, abs=1e-9)
    assert res.kept == len(ref["kept"])
    assert res.filtered == len(returns) - len(ref["kept"])
    kept_ids = {s.episode_id for s in shuffled if is_kept(s.return_, res.threshold)}
    assert kept_ids == ref["kept"]


@pytest.mark.parametrize("w", [5, 10])
def test_best_window_matches_generator_record(w: int) -> None:
    """The MuJoCo generator recorded the best 5- and 10-episode windows of the live returns."""
    for path in MUJOCO:
        gt = json.loads(path.read_text())
        rec = gt[f"best_window_{w}"]
        res = filter_task("t", _summaries(_returns(path)),
                          FilterSettings(window_fraction=w / gt["n_episodes"]))
        assert res.window == w
        assert res.best_window_start == rec["start"]
        assert res.expert_return == pytest.approx(rec["mean_return"], rel=1e-12)


def test_negative_expert_return_uses_the_extended_rule() -> None:
    returns = _returns(DQN[0])  # Pong: every return is negative
    res = filter_task("Pong", _summaries(returns), FilterSettings())
    assert res.expert_return < 0
    assert res.threshold == pytest.approx(res.expert_return - 0.2 * abs(res.expert_return))
    assert threshold_for(-10.0, 0.8) == pytest.approx(-12.0)
    assert threshold_for(10.0, 0.8) == pytest.approx(8.0)
    assert threshold_for(0.0, 0.8) == 0.0


def test_window_rule() -> None:
    s = FilterSettings()
    assert window_size(1, s) == 1
    assert window_size(9, s) == 1
    assert window_size(10, s) == 1
    assert window_size(39, s) == 3
    assert window_size(40, s) == 4
    assert window_size(10_000, s) == 1000
    assert window_size(50_000, s) == 1000
    assert window_size(50_000, FilterSettings(max_window=50)) == 50


def test_collection_order_breaks_ties_by_episode_id() -> None:
    rows = [EpisodeSummary("d", "t", "a", eid, order, r, 1)
            for eid, order, r in [("b", (1, 0), 5.0), ("a", (1, 0), 1.0), ("c", (0, 9), 2.0)]]
    assert [s.episode_id for s in collection_order(rows)] == ["c", "a", "b"]
    # W = 1 over [2, 1, 5]: the best window is the last one, whatever order the rows came in
    res = filter_task("t", reversed(rows), FilterSettings())
    assert (res.window, res.best_window_start, res.expert_return) == (1, 2, 5.0)
    assert res.kept == 1


def test_best_window_prefers_the_earliest_of_equal_windows() -> None:
    assert best_window([1.0, 3.0, 0.0, 3.0, 1.0], 1) == (1, 3.0)
    assert best_window([2.0, 2.0, 2.0], 2) == (0, 2.0)
    with pytest.raises(ValueError):
        best_window([], 1)


def test_disabled_filter_keeps_everything_and_records_nulls() -> None:
    res = filter_task("coco", _summaries([0.0, -5.0, 3.0]), FilterSettings(enabled=False))
    assert (res.window, res.best_window_start, res.expert_return, res.threshold) == (None,) * 4
    assert (res.kept, res.filtered, res.episodes_total) == (3, 0, 3)
    assert is_kept(-1e9, None)


def test_fraction_setting_is_honoured() -> None:
    returns = [10.0] * 5 + [5.0] * 5 + [1.0] * 10
    res = filter_task("t", _summaries(returns), FilterSettings(fraction=0.5))
    assert res.window == 2 and res.expert_return == 10.0 and res.threshold == 5.0
    assert res.kept == 10


@pytest.mark.parametrize("returns, threshold", [
    ([10.0, 5.0, 4.5, 5.0, 7.0], 5.0),          # 0.5 * 10: exact in binary
    ([-10.0, -15.0, -15.5, -15.0, -12.0], -15.0),  # -10 - 0.5 * |-10|: exact
])
def test_an_episode_exactly_at_the_threshold_is_kept(returns: list[float],
                                                     threshold: float) -> None:
    """SPEC 3 keeps R >= threshold: the boundary is in, both in the audit's count (filter_task)
    and in the rule the job applies to every episode and window (is_kept)."""
    rows = _summaries(returns)
    res = filter_task("t", rows, FilterSettings(fraction=0.5))  # W = 1: the best single return
    assert res.threshold == threshold
    kept = [s.return_ for s in rows if is_kept(s.return_, res.threshold)]
    assert kept == [r for r in returns if r != min(returns)]
    assert res.kept == len(kept) == 4 and res.filtered == 1
    assert is_kept(threshold, threshold) and not is_kept(math.nextafter(threshold, -math.inf),
                                                         threshold)


# --- found by mutation testing (docs/mutation-testing.md) -------------------------------------

def test_best_window_edges_and_errors() -> None:
    assert best_window([5.0], 1) == (0, 5.0)  # one episode is a valid task
    assert best_window([1.0, 2.0, 6.0], 3) == (0, 3.0)  # the window may span all returns
    # float32 returns are summed in float64: 2**24 + 1 is not a float32
    assert best_window(np.array([2.0 ** 24, 1.0, 1.0, 1.0], np.float32), 2) == (0, 2.0 ** 23 + 0.5)
    with pytest.raises(ValueError, match=r"^best_window needs a non-empty 1-D sequence"):
        best_window([], 1)
    with pytest.raises(ValueError, match=r"^best_window needs a non-empty 1-D sequence"):
        best_window([[1.0, 2.0]], 1)
    with pytest.raises(ValueError, match=r"^window 4 outside \[1, 3\]$"):
        best_window([1.0, 2.0, 3.0], 4)
    with pytest.raises(ValueError, match=r"^window 0 outside \[1, 3\]$"):
        best_window([1.0, 2.0, 3.0], 0)


def test_threshold_for_a_small_positive_expert_is_the_fraction_rule_exactly() -> None:
    """For 0 < R < 1 the two rules agree on paper but not in floating point (0.7: 0.56 vs
    0.5599999999999999): the positive rule must be the one applied, bit for bit."""
    assert threshold_for(0.7, 0.8) == 0.8 * 0.7 == 0.5599999999999999
    assert threshold_for(0.0, 0.8) == 0.0


def test_a_single_episode_task_is_filtered_with_a_window_of_one() -> None:
    res = filter_task("solo", _summaries([-4.0]), FilterSettings())
    assert (res.task, res.window, res.best_window_start, res.expert_return) == ("solo", 1, 0, -4.0)
    assert res.threshold == pytest.approx(-4.8) and (res.kept, res.filtered) == (1, 0)
    assert res.to_json() == {"task": "solo", "episodes_total": 1, "window": 1,
                             "best_window_start": 0, "expert_return": -4.0,
                             "threshold": res.threshold, "kept": 1, "filtered": 0}
    off = filter_task("coco", _summaries([1.0]), FilterSettings(enabled=False))
    assert off.task == "coco" and off.to_json()["threshold"] is None


# --- top_fraction (MGDT's expert set) ------------------------------------------------------------

@pytest.mark.parametrize(("n", "fraction", "k"), [
    (1, 0.1, 1), (5, 0.1, 1), (9, 0.1, 1), (10, 0.1, 1), (11, 0.1, 2), (30, 0.1, 3),
    (38, 0.1, 4), (111, 0.1, 12), (100, 0.1, 10), (7, 1.0, 7), (3, 0.5, 2)])
def test_top_fraction_keeps_exactly_ceil_of_the_fraction(n: int, fraction: float, k: int) -> None:
    # ceil(fraction * N) in exact arithmetic: 0.1 * 30 keeps 3 (the float product is 3.0000000004)
    assert top_count(n, fraction) == k
    rng = random.Random(n)
    returns = [float(rng.randint(-3, 3)) for _ in range(n)]  # many ties
    summaries = _summaries(returns)
    res = filter_task("t", summaries, FilterSettings(rule="top_fraction", top_fraction=fraction))
    assert (res.kept, res.filtered, res.episodes_total) == (k, n - k, n)
    kept = [s for s in summaries if is_kept(s.return_, res.cut, s.episode_id)]
    assert len(kept) == k
    # the kept ones are the best by return, ties at the cut going to the smaller episode id
    ranked = sorted(summaries, key=lambda s: (-s.return_, s.episode_id))
    assert {s.episode_id for s in kept} == {s.episode_id for s in ranked[:k]}
    assert res.threshold == ranked[k - 1].return_
    assert res.audit_extra() == {"rule": "top_fraction", "top_fraction": fraction,
                                 "threshold_episode_id": ranked[k - 1].episode_id}


def test_top_fraction_is_independent_of_input_order() -> None:
    returns = [1.0, 5.0, 5.0, 5.0, 2.0, 5.0, 0.0, 3.0, 5.0, 4.0, 5.0, 1.0]
    settings = FilterSettings(rule="top_fraction", top_fraction=0.25)
    first = filter_task("t", _summaries(returns), settings)
    shuffled = _summaries(returns)
    random.Random(1).shuffle(shuffled)
    assert filter_task("t", shuffled, settings) == first
    assert first.kept == 3 and first.threshold == 5.0  # 3 of the six 5.0s, by episode id


def test_gato_rule_audit_is_unchanged_by_the_new_fields() -> None:
    res = filter_task("t", _summaries([1.0, 2.0, 3.0]), FilterSettings())
    assert res.audit_extra() == {} and res.cut == res.threshold
    assert is_kept(2.0, 2.0) and not is_kept(1.9, 2.0) and is_kept(-5.0, None)
