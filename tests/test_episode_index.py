"""Issue 17: the episode index, ShardDataset.episode() and .select(), against the examples fed in.

The output folders are built the way the job builds them (shared writers: IndexTap while each
shard is written, merge_index, the manifest's index entry); the truth is the input list.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from test_shards_stream import unbatch
from test_shards_synth import assert_same_example, make_example
from trajcorpus.errors import ShardError
from trajcorpus.shards import (
    Mixture,
    NumpyLoader,
    ShardDataset,
    parquetcodec,
    shard_relpath,
    tarcodec,
    write_manifest,
    write_shard,
)
from trajcorpus.shards import stream as stream_mod
from trajcorpus.shards.index import IndexTap, merge_index

FORMATS = ("parquet", "webdataset")
TASKS = {"Pong": ["Pong/run1", "Pong/run2"], "Breakout": ["Breakout/run1"]}
NUM_SHARDS = 4


def corpus_examples(seed: int = 0) -> list[dict]:
    """Episodes of 1-6 windows over two tasks and three agents (meta as the job writes it)."""
    rng = np.random.default_rng(seed)
    out = []
    agents = [(t, a) for t, names in TASKS.items() for a in names]
    for e in range(14):
        task, agent = agents[e % len(agents)]
        eid = f"{agent}/episode_{e}"
        h = hashlib.sha1(eid.encode()).hexdigest()[:16]
        for w in range(int(rng.integers(1, 7))):
            ex = make_example(rng, f"{h}-{w:05d}", length=40, images_per_step=1)
            ex["meta"] = json.dumps({"dataset": "synth", "task": task, "agent": agent,
                                     "episode_id": eid, "first_step": w * 10,
                                     "last_step": w * 10 + 9, "prompt": None,
                                     "lineage": {"uri": "x"}}, sort_keys=True)
            out.append(ex)
    return out


def shard_of(key: str) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % NUM_SHARDS


def build(out: Path, examples: list[dict], config: str = "c") -> None:
    """Write shards in both formats + the index exactly as the job's WriteShard/finalize do."""
    staging = str(out / ".staging")
    files = []
    for i in range(NUM_SHARDS):
        part = sorted((e for e in examples if shard_of(e["__key__"]) == i),
                      key=lambda e: e["__key__"])
        for j, fmt in enumerate(FORMATS):
            tap = IndexTap("train", i)
            files.append(write_shard(tap(part), str(out),
                                     shard_relpath(config, "train", fmt, i, NUM_SHARDS), fmt))
            if j == 0:
                tap.write(staging, config)
    entry = merge_index(staging, str(out), config, "train", range(NUM_SHARDS))
    write_manifest(str(out), files, config, {"catalog_entry": {"id": config}, "index": entry})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("idx")
    examples = corpus_examples()
    orig = parquetcodec.ROW_GROUP_MAX_ROWS
    parquetcodec.ROW_GROUP_MAX_ROWS = 3  # several row groups per shard
    try:
        build(out, examples)
    finally:
        parquetcodec.ROW_GROUP_MAX_ROWS = orig
    return out, examples


def meta(ex: dict) -> dict:
    return json.loads(ex["meta"])


def truth_episode(examples: list[dict], eid: str) -> list[dict]:
    return sorted((e for e in examples if meta(e)["episode_id"] == eid),
                  key=lambda e: meta(e)["first_step"])


def test_index_is_byte_deterministic_and_listed(corpus, tmp_path):
    out, examples = corpus
    build(tmp_path, list(reversed(examples)))  # another input order, the same shards
    a, b = out / "index/c.parquet", tmp_path / "index/c.parquet"
    assert a.read_bytes() == b.read_bytes()
    info = json.loads((out / "manifest.json").read_text())["configs"]["c"]["info"]["index"]
    assert info["path"] == "index/c.parquet" and info["examples"] == len(examples)
    assert info["episodes"] == len({meta(e)["episode_id"] for e in examples})
    assert info["sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", FORMATS)
def test_episode_matches_a_brute_force_scan_and_opens_only_its_shards(corpus, fmt,
                                                                      monkeypatch):
    out, examples = corpus
    ds = ShardDataset(str(out), "c", fmt=fmt)
    opened, decoded = [], []
    real_open = stream_mod._open_shard
    monkeypatch.setattr(stream_mod, "_open_shard",
                        lambda ref, verify: opened.append(ref.uri) or real_open(ref, verify))
    real_rg = parquetcodec.RowGroupColumns.__init__
    real_dec = tarcodec._decode_sample
    monkeypatch.setattr(parquetcodec.RowGroupColumns, "__init__",
                        lambda self, *a: decoded.append(1) or real_rg(self, *a))
    monkeypatch.setattr(tarcodec, "_decode_sample",
                        lambda *a: decoded.append(1) or real_dec(*a))
    for eid in sorted({meta(e)["episode_id"] for e in examples}):
        opened.clear()
        decoded.clear()
        want = truth_episode(examples, eid)
        got = ds.episode(eid, verify=False)
        assert [g["__key__"] for g in got] == [w["__key__"] for w in want]
        for g, w in zip(got, want, strict=True):
            assert_same_example(g, w)
        shards = {shard_of(w["__key__"]) for w in want}
        assert sorted(opened) == sorted(ds.shards[i].uri for i in shards)  # only those
        if fmt == "webdataset":
            assert len(decoded) == len(want)  # other members are skipped, not decoded
        else:  # only the row groups (3 rows each) holding one of its rows
            groups = set()
            for i in shards:
                keys = sorted(e["__key__"] for e in examples if shard_of(e["__key__"]) == i)
                groups |= {(i, keys.index(w["__key__"]) // 3) for w in want
                           if shard_of(w["__key__"]) == i}
            assert len(decoded) == len(groups)
    with pytest.raises(ShardError, match="episode_id 'nope'.*not in the index"):
        ds.episode("nope")


@pytest.mark.parametrize("fmt", FORMATS)
def test_select_streams_exactly_the_subset(corpus, fmt):
    out, examples = corpus
    ds = ShardDataset(str(out), "c", fmt=fmt)
    eids = sorted({meta(e)["episode_id"] for e in examples})
    cases = [dict(tasks=["Pong"]), dict(agents=["Pong/run2", "Breakout/run1"]),
             dict(episode_ids=eids[::3]), dict(tasks="Pong", agents=["Pong/run1"])]
    for crit in cases:
        def ok(e, crit=crit):
            m = meta(e)
            return all(m[f] in ([v] if isinstance(v, str) else v) for f, v in (
                ("task", crit.get("tasks")), ("agent", crit.get("agents")),
                ("episode_id", crit.get("episode_ids"))) if v is not None)
        want = {e["__key__"]: e for e in examples if ok(e)}
        sub = ds.select(**crit)
        assert len(sub) == len(want)
        got = [ex for b in NumpyLoader(sub, 4, shuffle_buffer=3, seed=1)
               for ex in unbatch(b)]
        assert sorted(g["__key__"] for g in got) == sorted(want)
        for g in got:
            assert_same_example(g, want[g["__key__"]])
        # two ranks, equal batches, exactly once
        ranks = [[k for b in NumpyLoader(sub, 2, rank=r, world_size=2) for k, p in
                  zip(b["__key__"], b["is_padding"].tolist(), strict=True) if not p]
                 for r in range(2)]
        assert sorted(ranks[0] + ranks[1]) == sorted(want)
    # a selection of a selection narrows it; the mixture accepts subsets
    pong = ds.select(tasks=["Pong"])
    narrow = pong.select(agents=["Pong/run1"])
    assert {meta(e)["agent"] for e in _all(narrow)} == {"Pong/run1"}
    mix = Mixture({"pong": pong, "breakout": ds.select(tasks=["Breakout"])})
    it = iter(NumpyLoader(mix, 4, seed=3))
    drawn = [ex for _ in range(10) for ex in unbatch(next(it))]
    assert {meta(e)["task"] for e in drawn} == {"Pong", "Breakout"}
    for bad, match in ((dict(tasks=["Tetris"]), "task 'Tetris'"),
                       (dict(agents=["Pong/run9"]), "agent 'Pong/run9'")):
        with pytest.raises(ShardError, match=f"{match}.*not in the index"):
            ds.select(**bad)
    with pytest.raises(ShardError, match="selection is empty"):
        ds.select(tasks=["Pong"], agents=["Breakout/run1"])


def test_tampered_index_is_refused(corpus, tmp_path):
    import shutil

    out = tmp_path / "o"
    shutil.copytree(corpus[0], out)
    p = out / "index/c.parquet"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 1
    p.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="index does not match the manifest"):
        ShardDataset(str(out), "c").episode("x")


def test_episode_and_select_over_gcs(corpus, gcs):
    out, examples = corpus
    uri = gcs.upload(out, "index-test/out")
    ds = ShardDataset(uri, "c")
    eid = meta(examples[5])["episode_id"]
    got = ds.episode(eid)
    assert [g["__key__"] for g in got] == [w["__key__"] for w in truth_episode(examples, eid)]
    sub = ds.select(tasks=["Breakout"])
    assert sorted(e["__key__"] for e in _all(sub)) == sorted(
        e["__key__"] for e in examples if meta(e)["task"] == "Breakout")


def _all(ds: ShardDataset) -> list[dict]:
    return [ex for b in NumpyLoader(ds, 8) for ex in unbatch(b)]


def test_verify_checks_the_index(corpus, tmp_path):
    import shutil

    from trajcorpus.shards import verify_output

    out = tmp_path / "o"
    shutil.copytree(corpus[0], out)
    shutil.rmtree(out / ".staging")
    assert verify_output(str(out)).ok
    (out / "index/c.parquet").write_bytes(b"x")
    report = verify_output(str(out))
    assert report.mismatched == ["index/c.parquet"] and not report.ok
    (out / "index/c.parquet").unlink()
    assert verify_output(str(out)).missing == ["index/c.parquet"]
