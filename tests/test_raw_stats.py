"""Raw-value statistics (issue 18) against exact NumPy computation on the MuJoCo fixtures.

The expected values are computed here from the arrays the Minari reader returns (the fixture
generator's rollouts), never from the job's output. Exact stage: mean/std to float precision,
quantiles exactly NumPy's inverted-CDF quantiles. KLL stage (forced with a small exact limit):
mean/std still to float precision (Chan's update), each quantile's rank in the exact sorted data
within the documented rank error. Merging per-episode records in any order, through pickling,
equals the statistics of the union.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from trajcorpus.schemas.stats import (
    QUANTILE_NAMES,
    QUANTILES,
    FieldStats,
    RawStats,
    episode_stats,
    kll_rank_error,
)
from trajcorpus.sources import open_source

MINARI = Path(__file__).parent / "fixtures/mujoco/minari/trajcorpus-fixtures"


@pytest.fixture(scope="module")
def episodes() -> dict[str, list]:
    """Task -> the fixture's episodes (Hopper-v5 and HalfCheetah-v5, 40 each)."""
    src = open_source("minari", str(MINARI),
                      options={"datasets": ["hopper/mixed-v0", "halfcheetah/mixed-v0"]})
    out: dict[str, list] = {}
    for ep in src.episodes():
        out.setdefault(ep.task, []).append(ep)
    assert sorted(out) == ["HalfCheetah-v5", "Hopper-v5"]
    return out


def _records(eps, **kw) -> list[RawStats]:
    return [episode_stats(e.observations, e.observation_kinds, e.actions, e.action_kind, **kw)
            for e in eps]


def _exact(eps, field: str) -> np.ndarray:
    arrays = [e.actions if field == "actions" else e.observations[field] for e in eps]
    return np.concatenate([np.asarray(a, np.float64).reshape(len(a), -1) for a in arrays])


def _rank_gap(col: np.ndarray, value: float, q: float) -> float:
    """How far q lies outside [exclusive rank, inclusive rank] of value in the exact data."""
    s = np.sort(col)
    lo = np.searchsorted(s, value, "left") / s.size
    hi = np.searchsorted(s, value, "right") / s.size
    return max(lo - q, q - hi, 0.0)


@pytest.mark.parametrize("field", ["observation", "actions"])
def test_exact_stage_equals_numpy(episodes, field):
    for task, eps in episodes.items():
        s = RawStats.merged(_records(eps)).summary()[field]
        x = _exact(eps, field)
        assert s["quantiles"] == "exact" and s["rank_error"] == 0.0
        assert s["count"] == x.shape[0] and s["shape"] == [x.shape[1]]
        np.testing.assert_allclose(s["mean"], x.mean(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s["std"], x.std(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(s["min"], x.min(axis=0))
        np.testing.assert_array_equal(s["max"], x.max(axis=0))
        for name, q in zip(QUANTILE_NAMES, QUANTILES, strict=True):
            np.testing.assert_array_equal(
                s[name], np.quantile(x, q, axis=0, method="inverted_cdf"), err_msg=task)
            for d in range(x.shape[1]):
                assert _rank_gap(x[:, d], s[name][d], q) == 0.0


@pytest.mark.parametrize("field", ["observation", "actions"])
def test_kll_stage_is_within_the_documented_rank_error(episodes, field):
    eps_bound = kll_rank_error()
    assert 0.013 < eps_bound < 0.014  # k = 200, 99% confidence, as docs/statistics-and-semantics.md
    for task, eps in episodes.items():
        s = RawStats.merged(_records(eps, exact_limit=100)).summary()[field]
        x = _exact(eps, field)
        assert s["quantiles"] == "kll(k=200)" and s["rank_error"] == eps_bound
        np.testing.assert_allclose(s["mean"], x.mean(axis=0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(s["std"], x.std(axis=0), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(s["min"], x.min(axis=0))
        np.testing.assert_array_equal(s["max"], x.max(axis=0))
        for name, q in zip(QUANTILE_NAMES, QUANTILES, strict=True):
            for d in range(x.shape[1]):
                gap = _rank_gap(x[:, d], s[name][d], q)
                assert gap <= eps_bound, (task, field, name, d, gap)


def test_merge_in_any_order_equals_the_union(episodes):
    eps = episodes["Hopper-v5"]
    recs = _records(eps)
    union = episode_stats(  # one record over all steps at once
        {"observation": np.concatenate([e.observations["observation"] for e in eps])},
        {"observation": "continuous"}, np.concatenate([e.actions for e in eps]), "continuous")
    shuffled = recs[:]
    random.Random(7).shuffle(shuffled)
    halves = [RawStats.merged(shuffled[:13]), RawStats.merged(shuffled[13:])]
    merged = RawStats.merged(pickle.loads(pickle.dumps(h)) for h in halves[::-1])
    assert merged.summary() == union.summary()  # exact stage: identical numbers
    assert merged.summary() == RawStats.merged(recs).summary()
    # the inputs are left intact by merging (Beam may hand one record to two consumers)
    assert _records(eps)[0].summary() == recs[0].summary()


def test_merged_sketches_match_the_union_within_the_bound(episodes):
    """Per-task sketches merged into the config = the statistics of all steps of both tasks
    (the actions of Hopper and HalfCheetah differ in width, so the test merges the first three
    action dimensions of each)."""
    parts, cols = [], []
    for eps in episodes.values():
        a = [e.actions[:, :3] for e in eps]
        parts.append(RawStats.merged(
            RawStats({"a": FieldStats.of(x, exact_limit=64)}) for x in a))
        cols.append(np.concatenate(a).astype(np.float64))
    x = np.concatenate(cols)
    s = RawStats.merged(pickle.loads(pickle.dumps(p)) for p in parts).summary()["a"]
    assert s["count"] == x.shape[0] and s["quantiles"].startswith("kll")
    np.testing.assert_allclose(s["mean"], x.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(s["std"], x.std(axis=0), rtol=1e-9, atol=1e-12)
    for name, q in zip(QUANTILE_NAMES, QUANTILES, strict=True):
        for d in range(3):
            assert _rank_gap(x[:, d], s[name][d], q) <= kll_rank_error()


def test_fields_of_different_shapes_are_kept_apart_in_any_order(episodes):
    hop, cheetah = (RawStats.merged(_records(episodes[t])) for t in ("Hopper-v5", "HalfCheetah-v5"))
    a = RawStats.merged([hop, cheetah]).summary()
    b = RawStats.merged([cheetah, hop]).summary()
    assert a == b
    assert a["observation"]["count"] is None and a["observation"]["shapes"] == [[11], [17]]
    assert a["actions"]["shapes"] == [[3], [6]]


def test_schema_records_every_field():
    obs = {"image": np.zeros((4, 8, 8, 3), np.uint8), "joints": np.ones((4, 6, 2)),
           "mode": np.zeros((4, 2), np.int64), "actions": np.ones((4, 1))}
    kinds = {"image": "image", "joints": "continuous", "mode": "discrete",
             "actions": "continuous"}
    r = episode_stats(obs, kinds, np.zeros((4, 9), np.float32), "continuous")
    assert r.schema_json() == {
        "actions": {"kind": "continuous", "shape": [9]},
        "image": {"kind": "image", "shape": None},
        "joints": {"kind": "continuous", "shape": [6, 2]},
        "mode": {"kind": "discrete", "shape": [2]},
        "observations/actions": {"kind": "continuous", "shape": [1]}}
    s = r.summary()
    assert s["joints"]["shape"] == [6, 2] and len(s["joints"]["mean"]) == 12
    assert s["observations/actions"]["count"] == 4 and len(s["actions"]["mean"]) == 9


@pytest.mark.parametrize("exact_limit", [10**9, 500])  # exact values, and KLL sketches
def test_persisted_state_round_trips_to_the_same_statistics(episodes, exact_limit):
    """What the job writes for a Mixture (RawStats.to_state) reads back to the same summaries,
    through JSON, and still merges: the statistics of a Mixture are built from it."""
    import json

    a = RawStats.merged(_records(episodes["Hopper-v5"][:20], exact_limit=exact_limit))
    b = RawStats.merged(_records(episodes["Hopper-v5"][20:], exact_limit=exact_limit))
    a2 = RawStats.from_state(json.loads(json.dumps(a.to_state())), "a")
    b2 = RawStats.from_state(json.loads(json.dumps(b.to_state())), "b")
    assert a2.summary() == a.summary() and a2.schema_json() == a.schema_json()
    merged = RawStats.merged([a2, b2]).summary()
    union = RawStats.merged(_records(episodes["Hopper-v5"], exact_limit=exact_limit)).summary()
    for field in union:
        assert merged[field]["count"] == union[field]["count"]
        np.testing.assert_allclose(merged[field]["mean"], union[field]["mean"], rtol=1e-12)
        if exact_limit > 10**6:
            assert merged[field] == union[field]  # exact stage: from the sorted values
    if exact_limit > 10**6:  # the persisted bytes do not depend on the merge order either
        shuffled = _records(episodes["Hopper-v5"], exact_limit=exact_limit)
        random.Random(3).shuffle(shuffled)
        assert RawStats.merged(shuffled).to_state() == \
            RawStats.merged(_records(episodes["Hopper-v5"], exact_limit=exact_limit)).to_state()


def test_a_bad_state_is_one_clear_error():
    from trajcorpus.errors import TrajcorpusError

    with pytest.raises(TrajcorpusError, match="version"):
        RawStats.from_state({"version": 99}, "statistics/x.json.zst")
    good = RawStats.merged([episode_stats({"s": np.ones((3, 2))}, {"s": "continuous"},
                                          np.zeros((3, 1)), "continuous")]).to_state()
    good["fields"]["s"]["mean"] = "AAAA"  # 3 bytes: not float64
    with pytest.raises(TrajcorpusError, match="field 's'"):
        RawStats.from_state(good, "statistics/x.json.zst")
