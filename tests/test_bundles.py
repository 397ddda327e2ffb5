"""The job's window bundles (pipelines/bundles.py): grouping windows into a few elements must give
each shard writer exactly the windows, keys, meta and prompts one element per window gave."""

from __future__ import annotations

import json

from trajcorpus.pipelines.bundles import (
    candidate_windows,
    est_bytes,
    group_by_shard,
    keep_episodes,
    prompt_requests,
    split_by_shard,
    window_refs,
)
from trajcorpus.pipelines.spec import EpisodeWindows, sequence_key, shard_of


def _episode(eid: str, task: str, ret: float, n: int, prompted: set[int] = frozenset(),
             uri: str = "/s/0.spill") -> EpisodeWindows:
    fixed = json.dumps({"episode_id": eid, "task": task}, sort_keys=True)[:-1]
    rows = tuple((i, 10 * i, 10 * i + 9, 100 + i, 12, i in prompted, 1000 * i, 50 + i, 300 + i)
                 for i in range(n))
    return EpisodeWindows(task, "a", eid, ret, False, uri, fixed, rows)


def _vl(eid: str) -> EpisodeWindows:
    meta = json.dumps({"episode_id": eid, "episode_ids": [eid, "x"], "window": 0})
    return EpisodeWindows("cap", "a", eid, 0.0, True, "/s/1.spill", meta,
                          ((0, 0, 0, 64, 64, False, 7, 70, 900),))


BUNDLE = (_episode("e1", "Pong", 5.0, 7, {1, 4}), _episode("e2", "Pong", -3.0, 5, {0}),
          _episode("e3", "Breakout", 1.0, 3), _vl("v1"))


def test_refs_expand_one_record_per_window_with_the_job_meta():
    refs = BUNDLE[0].refs()
    assert [r.window for r in refs] == list(range(7))
    assert refs[3].key == sequence_key("e1", 3) and refs[3].uri == "/s/0.spill"
    assert (refs[3].first_step, refs[3].last_step, refs[3].offset, refs[3].length,
            refs[3].est_bytes) == (30, 39, 3000, 53, 303)
    assert json.loads(refs[3].meta) == {"episode_id": "e1", "task": "Pong", "first_step": 30,
                                        "last_step": 39, "window": 3}
    assert [r.wants_prompt for r in refs] == [False, True, False, False, True, False, False]
    (vl,) = BUNDLE[3].refs()  # an image-caption pack's meta is stored whole
    assert vl.vl and vl.meta == BUNDLE[3].meta and vl.key == sequence_key("v1", 0)


def test_split_by_shard_routes_every_window_as_alone_and_writers_see_it_sorted():
    n = 4
    parts = dict(split_by_shard(BUNDLE, n))
    every = [r for e in BUNDLE for r in e.refs()]
    for shard in range(n):
        want = sorted((r for r in every if shard_of(r.key, n) == shard), key=lambda r: r.key)
        assert window_refs([parts.get(shard, ())]) == want
    assert sum(len(e.windows) for p in parts.values() for e in p) == len(every) == 16
    # two units' parts of one shard merge in key order
    a, b = dict(split_by_shard(BUNDLE[:2], n)), dict(split_by_shard(BUNDLE[2:], n))
    for shard in range(n):
        assert window_refs([a.get(shard, ()), b.get(shard, ())]) == window_refs(
            [parts.get(shard, ())])


def test_filter_keeps_or_drops_whole_episodes_and_estimates_bytes():
    thresholds = {"Pong": 0.0, "Breakout": 2.0}
    kept = keep_episodes(BUNDLE, thresholds)
    assert [e.episode_id for e in kept] == ["e1", "v1"]  # image-caption packs are never filtered
    assert est_bytes(kept) == sum(300 + i for i in range(7)) + 900


def test_prompt_requests_and_candidates_grouped_by_prompt_episode():
    from trajcorpus.pipelines.job import make_spec
    from trajcorpus.schemas.catalog import DatasetEntry

    entry = DatasetEntry.model_validate({
        "id": "b", "kind": "dqn-replay", "uri": "/x", "agent": "{run}", "license": "CC-BY-4.0",
        "sequence": {"prompt_probability": 0.5}})
    spec = make_spec(entry, "/x", "/o", 0, "parquet", 1, 1 << 20, False)
    cands = {("Pong", "a"): ["e1", "e2"]}
    reqs = dict(prompt_requests(spec, BUNDLE, cands))
    flat = sorted(r[0] for rs in reqs.values() for r in rs)
    assert flat == sorted([sequence_key("e1", 1), sequence_key("e1", 4), sequence_key("e2", 0)])
    assert set(reqs) <= {"e1", "e2"} and list(reqs) == sorted(reqs)
    got = dict(candidate_windows(BUNDLE, cands))
    assert set(got) == {"e1", "e2"}  # e3's task has no candidates, v1 is image-caption
    assert got["e2"][0] == (0, 9, 12, "/s/0.spill", 0, 50)
    pairs = [(sequence_key("e1", i), None) for i in range(6)]
    grouped = dict(group_by_shard(pairs, 3))
    assert sorted(kv for p in grouped.values() for kv in p) == sorted(pairs)
    assert all(shard_of(k, 3) == s for s, p in grouped.items() for k, _ in p)
