"""Issue 17: equal batches on every rank, and elastic resume across world sizes and worker counts.

Shards are written with the real writer from synthetic examples; the truth is the list of keys
fed in. A rank "waits" in DDP when it has a batch another rank does not: the tests require the
same number of batches on every rank, equal to len(loader), for every split tried.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from test_shards_synth import make_examples
from trajcorpus.errors import ShardError
from trajcorpus.shards import (
    NumpyLoader,
    ShardDataset,
    shard_relpath,
    write_manifest,
    write_shard,
)

try:  # the optional `torch` extra (the Makefile installs it when a wheel is at hand)
    import torch  # noqa: F401

    from trajcorpus.shards import TorchShardDataset
    from trajcorpus.shards import torchloader as torchloader_mod
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(
    torch is None, reason="needs the optional torch extra: pip install -e '.[torch]' (make test "
    "TORCH=1)")

SIZES = [3, 1, 4, 1, 5, 2, 6]


def build(out: Path, counts: list[int], fmt: str = "parquet", seed: int = 0) -> list[str]:
    examples = make_examples(sum(counts), seed=seed, prefix="e", length=40)
    files, start = [], 0
    for i, c in enumerate(counts):
        files.append(write_shard(examples[start:start + c], str(out),
                                 shard_relpath("c", "train", fmt, i, len(counts)), fmt))
        start += c
    write_manifest(str(out), files, "c", {"catalog_entry": {"id": "c"}})
    return [e["__key__"] for e in examples]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Corpora of 1..7 shards (3..22 examples)."""
    out = {}
    for k in range(1, 8):
        root = tmp_path_factory.mktemp(f"c{k}")
        out[k] = (root, build(root, SIZES[:k]))
    return out


def run_rank(tds: TorchShardDataset, workers: int, monkeypatch) -> list[dict]:
    """Every batch rank ``tds.rank`` yields, its workers run in-process one after another."""
    if workers == 0:
        return list(iter(tds))
    got = []
    for w in range(workers):
        monkeypatch.setattr(torchloader_mod, "get_worker_info",
                            lambda w=w: SimpleNamespace(id=w, num_workers=workers))
        got += list(iter(tds))
    monkeypatch.setattr(torchloader_mod, "get_worker_info", lambda: None)
    return got


def keys(batches, padding: bool | None = False) -> list[str]:
    """Keys of the batches: real examples (padding=False), padding only (True) or all."""
    out = []
    for b in batches:
        flags = np.asarray(b["is_padding"])
        out += [k for k, p in zip(b["__key__"], flags, strict=True)
                if padding is None or bool(p) == padding]
    return out


@needs_torch
@pytest.mark.parametrize("drop_last", [False, True])
def test_every_rank_yields_the_same_number_of_batches(corpora, monkeypatch, drop_last):
    batch = 2
    for k, (root, truth) in corpora.items():
        ds = ShardDataset(str(root), "c")
        n = len(truth)
        for world in range(1, 5):
            for workers in range(4):
                per_rank = []
                for rank in range(world):
                    tds = TorchShardDataset(ds, batch, rank=rank, world_size=world, seed=1,
                                            shuffle_buffer=3, drop_last=drop_last)
                    got = run_rank(tds, workers, monkeypatch)
                    assert len(got) == len(tds), (k, world, workers, rank)
                    per_rank.append(got)
                    ld = NumpyLoader(ds, batch, rank=rank, world_size=world, seed=1,
                                     shuffle_buffer=3, drop_last=drop_last)
                    assert len(ld) == len(list(ld)) == len(got)
                counts = {len(b) for b in per_rank}
                assert len(counts) == 1, (k, world, workers, counts)  # nobody waits
                sizes = [[len(x["__key__"]) for x in b] for b in per_rank]
                assert all(s == sizes[0] for s in sizes)  # the same batch shapes too
                real = Counter(k for b in per_rank for k in keys(b))
                assert max(real.values(), default=1) == 1  # never a duplicate
                if drop_last:
                    assert all(s == batch for b in sizes for s in b)
                    assert n - len(real) < world * batch + world
                    assert not keys([x for b in per_rank for x in b], padding=True)
                else:
                    assert set(real) == set(truth)  # the epoch exactly once
                    pads = keys([x for b in per_rank for x in b], padding=True)
                    assert len(pads) == world * -(-n // world) - n < world
                    assert set(pads) <= set(truth)


@needs_torch
def test_real_dataloader_workers_with_fewer_shards_than_consumers(corpora):
    root, truth = corpora[2]  # 2 shards, 4 examples; 2 ranks x 3 workers = 6 consumers
    ds = ShardDataset(str(root), "c")
    per_rank = []
    for rank in range(2):
        ld = TorchShardDataset(ds, 1, rank=rank, world_size=2).loader(num_workers=3)
        n = len(ld)
        got = list(ld)
        assert len(got) == n == 2
        per_rank.append(got)
    assert sorted(keys(per_rank[0]) + keys(per_rank[1])) == sorted(truth)
    root, truth = corpora[7]
    ds = ShardDataset(str(root), "c")
    tds = TorchShardDataset(ds, 4, rank=3, world_size=4, shuffle_buffer=5)
    from torch.utils.data import DataLoader

    plain = list(DataLoader(tds, batch_size=None, num_workers=2))  # without StatefulLoader
    assert len(plain) == len(tds) == len(tds.loader(num_workers=2)) == 2


def lockstep(loaders, steps: int) -> tuple[list[str], list[str], dict]:
    """Run every rank ``steps`` batches; (real keys, padding keys, the common state)."""
    real, pads, states = [], [], []
    for ld in loaders:
        it = iter(ld)
        got = [next(it) for _ in range(steps)]
        real += keys(got)
        pads += keys(got, padding=True)
        states.append(json.loads(json.dumps(ld.state_dict())))
    assert all(s == states[0] for s in states)  # global progress, the same on every rank
    return real, pads, states[0]


@pytest.mark.parametrize("shuffle", [0, 4])
@pytest.mark.parametrize(("before", "after", "steps"), [(2, 3, 2), (4, 2, 1)])
def test_elastic_resume_numpy(corpora, shuffle, before, after, steps):
    root, truth = corpora[7]  # 22 examples
    ds = ShardDataset(str(root), "c")
    kw = dict(seed=7, epoch=3, shuffle_buffer=shuffle)
    first = [NumpyLoader(ds, 2, rank=r, world_size=before, **kw) for r in range(before)]
    real, pads, state = lockstep(first, steps)
    assert len(real) == before * 2 * steps and not pads
    second = [NumpyLoader(ds, 3, rank=r, world_size=after, **dict(kw, epoch=0))
              for r in range(after)]
    lens = set()
    for ld in second:
        ld.load_state_dict(state)
        n = len(ld)
        got = list(ld)
        assert len(got) == n
        lens.add(n)
        real += keys(got)
        pads += keys(got, padding=True)
    assert len(lens) == 1  # equal batches after the change too
    assert Counter(real) == Counter(truth)  # the epoch exactly once across the change
    assert len(pads) < after
    # the next iteration is the next epoch, in full
    nxt = [k for b in second[0] for k in keys([b])]
    assert second[0].epoch == 4 and len(nxt) >= len(truth) // after


@needs_torch
@pytest.mark.parametrize("shuffle", [0, 5])
def test_elastic_resume_torch_workers_2_to_3_ranks(corpora, shuffle):
    root, truth = corpora[5]  # 14 examples
    ds = ShardDataset(str(root), "c")

    def loader(rank, world, workers, batch):
        return TorchShardDataset(ds, batch, rank=rank, world_size=world, seed=2,
                                 shuffle_buffer=shuffle).loader(num_workers=workers)

    real, pads, state = lockstep([loader(r, 2, 2, 2) for r in range(2)], 2)
    assert state["epoch"] == 0 and not pads
    rest = []
    counts = set()
    for r in range(3):
        ld = loader(r, 3, 1, 1)
        ld.load_state_dict(state)
        got = list(ld)
        counts.add(len(got))
        rest += got
    assert len(counts) == 1
    assert Counter(real + keys(rest)) == Counter(truth)
    assert len(keys(rest, padding=True)) < 3


def test_state_from_other_shards_or_seed_is_refused(corpora):
    root, _ = corpora[3]
    ds = ShardDataset(str(root), "c")
    ld = NumpyLoader(ds, 2, seed=1, shuffle_buffer=3)
    next(iter(ld))
    state = ld.state_dict()
    with pytest.raises(ShardError, match="saved for other"):
        NumpyLoader(ds, 2, seed=2, shuffle_buffer=3).load_state_dict(state)
    with pytest.raises(ShardError, match="saved for other"):
        NumpyLoader(ShardDataset(str(corpora[4][0]), "c"), 2, seed=1,
                    shuffle_buffer=3).load_state_dict(state)
    with pytest.raises(ShardError, match="rank 2 of 2"):
        NumpyLoader(ds, 2, rank=2, world_size=2)
