"""NumpyLoader's split and resume against the documented contract (docs/training.md), found by
mutation testing (docs/mutation-testing.md). The truth is the list of keys written, in file order
(no shuffle), cut by hand into each rank's contiguous share, a short share padded with the
epoch's first examples; never the loader's own output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_loaders_distributed import build
from test_shards_synth import make_examples
from trajcorpus.errors import ShardError
from trajcorpus.shards import Mixture, NumpyLoader, ShardDataset
from trajcorpus.shards.loaders import batches

try:  # the optional `torch` extra
    import torch
except ImportError:
    torch = None

FILE_ORDER = dict(shuffle_buffer=0, shuffle_shards=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """11 examples in 3 shards (4 + 3 + 4), keys in file order."""
    root = tmp_path_factory.mktemp("split")
    keys = build(root, [4, 3, 4])
    return ShardDataset(str(root), "c"), keys


def share(keys: list[str], rank: int, world: int, batch: int, drop_last: bool
          ) -> list[list[tuple[str, bool]]]:
    """Rank's batches as (key, is_padding) by the contract, from the keys alone."""
    n = len(keys)
    if drop_last:
        per = n // world
        spans = [(r * per, (r + 1) * per) for r in range(world)]
    else:
        per = -(-n // world)
        spans = [(r * n // world, (r + 1) * n // world) for r in range(world)]
    short = sum(1 for a, b in spans[:rank] if b - a < per)
    a, b = spans[rank]
    seq = [(k, False) for k in keys[a:b]] + [(keys[short % n], True)] * (per - (b - a))
    count = per // batch if drop_last else -(-per // batch)
    return [seq[j * batch:(j + 1) * batch] for j in range(count)]


def got(batch_list) -> list[list[tuple[str, bool]]]:
    out = []
    for b in batch_list:
        assert b["is_padding"].dtype == np.bool_ and b["is_padding"].shape == (len(b["__key__"]),)
        out.append(list(zip(b["__key__"], b["is_padding"].tolist(), strict=True)))
    return out


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize(("world", "batch"), [(1, 4), (2, 2), (3, 2), (4, 1), (3, 5)])
def test_every_rank_gets_its_contiguous_padded_share(corpus, world, batch, drop_last):
    ds, keys = corpus
    for rank in range(world):
        ld = NumpyLoader(ds, batch, rank=rank, world_size=world, drop_last=drop_last,
                         **FILE_ORDER)
        want = share(keys, rank, world, batch, drop_last)
        assert len(ld) == len(want)
        assert got(ld) == want, (rank, world, batch, drop_last)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("stop", [0, 1, 2])
def test_a_resumed_rank_continues_its_own_batches(corpus, drop_last, stop):
    """The same shape resumes batch for batch (the deal in progress), drop_last included."""
    ds, keys = corpus
    world, batch = 2, 2
    states = []
    for rank in range(world):
        ld = NumpyLoader(ds, batch, rank=rank, world_size=world, drop_last=drop_last,
                         **FILE_ORDER)
        it = iter(ld)
        for _ in range(stop):
            next(it)
        states.append(json.loads(json.dumps(ld.state_dict())))
    assert states[0] == states[1] and states[0]["finished"] is False
    for rank in range(world):
        again = NumpyLoader(ds, batch, rank=rank, world_size=world, drop_last=drop_last,
                            epoch=5, **FILE_ORDER)
        again.load_state_dict(states[0])
        want = share(keys, rank, world, batch, drop_last)[stop:]
        assert again.epoch == 0 and len(again) == len(want)
        assert got(again) == want, (rank, stop)


def test_a_state_saved_after_a_whole_epoch_starts_the_next(corpus):
    ds, keys = corpus
    ld = NumpyLoader(ds, 3, seed=4, shuffle_buffer=5)
    first = [k for b in ld for k in b["__key__"]]
    state = json.loads(json.dumps(ld.state_dict()))
    assert state["finished"] is True and state["remaining"] == []
    nxt = NumpyLoader(ds, 3, seed=4, shuffle_buffer=5, epoch=1)
    want = [k for b in nxt for k in b["__key__"]]
    assert sorted(first) == sorted(want) == sorted(keys) and want != first
    resumed = NumpyLoader(ds, 3, seed=4, shuffle_buffer=5)
    resumed.load_state_dict(state)
    assert len(resumed) == len(nxt) == 4
    assert [k for b in resumed for k in b["__key__"]] == want and resumed.epoch == 1


def test_len_counts_only_the_batches_left(corpus):
    ds, _ = corpus
    ld = NumpyLoader(ds, 2, rank=1, world_size=2, **FILE_ORDER)
    assert len(ld) == 3
    it = iter(ld)
    next(it)
    assert len(ld) == 2
    list(it)
    assert len(ld) == 3  # finished: the next iteration is the next epoch, in full


# --------------------------------------------------------------------------- batches, Mixture

def test_batches_of_a_finite_stream():
    exs = make_examples(5, seed=1, length=40)
    out = list(batches(iter(exs), 2, False, {"pad_patches_to": 40}))
    assert [b["__key__"] for b in out] == [["ex-00000", "ex-00001"], ["ex-00002", "ex-00003"],
                                           ["ex-00004"]]
    for b in out:
        assert b["is_padding"].dtype == np.bool_ and not b["is_padding"].any()
        assert b["is_padding"].shape == (len(b["__key__"]),) and b["patches"].shape[1] == 40
    kept = list(batches(iter(exs), 2, True, {}))
    assert [b["__key__"] for b in kept] == [["ex-00000", "ex-00001"], ["ex-00002", "ex-00003"]]
    assert [b["__key__"] for b in batches(iter(exs), 1, False, {})] == [[e["__key__"]]
                                                                        for e in exs]
    assert list(batches(iter([]), 3, False, {})) == []
    with pytest.raises(ShardError) as err:
        list(batches(iter(exs), 0, False, {}))
    assert str(err.value) == "batch_size: must be >= 1, got 0"


def test_mixture_batches_are_real_and_need_the_same_world(corpus):
    ds, _ = corpus
    mix = Mixture([ds])
    ld = NumpyLoader(mix, 3, rank=1, world_size=2)
    it = iter(ld)
    for _ in range(3):
        b = next(it)
        assert b["is_padding"].dtype == np.bool_ and b["is_padding"].tolist() == [False] * 3
    state = json.loads(json.dumps(ld.state_dict()))
    assert state["finished"] is False and (state["rank"], state["world_size"]) == (1, 2)
    want = [next(it)["__key__"] for _ in range(2)]
    del state["finished"]  # a state without the flag: not finished, the stream continues
    again = NumpyLoader(mix, 3, rank=1, world_size=2)
    again.load_state_dict(state)
    it = iter(again)
    assert [next(it)["__key__"] for _ in range(2)] == want
    with pytest.raises(ShardError) as err:
        NumpyLoader(mix, 3, rank=0, world_size=3).load_state_dict(state)
    assert str(err.value) == ("loader state: saved by rank 1 of 2, this is rank 0 of 3 (a "
                              "Mixture resumes with the same world size)")


def test_a_mixture_has_no_length(corpus):
    with pytest.raises(TypeError) as err:
        len(NumpyLoader(Mixture([corpus[0]]), 2))
    assert str(err.value) == "a Mixture never ends: it has no length"


@pytest.mark.skipif(torch is None, reason="needs the optional torch extra: pip install -e "
                    "'.[torch]' (make test TORCH=1)")
@pytest.mark.parametrize("stop", [1, 2])
def test_torch_resume_in_the_main_process(corpus, stop):
    """num_workers=0 (the loop's own process): the resumed worker starts at its batch ``stop``
    (the worker-process case is test_torch_resume_equals_uninterrupted_with_workers)."""
    from trajcorpus.shards import TorchShardDataset

    ds, keys = corpus
    want = share(keys, 1, 2, 2, False)

    def loader():
        return TorchShardDataset(ds, 2, rank=1, world_size=2, **FILE_ORDER).loader()

    ld = loader()
    it = iter(ld)
    head = [next(it) for _ in range(stop)]
    state = json.loads(json.dumps(ld.state_dict()))
    again = loader()
    again.load_state_dict(state)
    rest = list(again)
    assert [list(zip(b["__key__"], b["is_padding"].tolist(), strict=True))
            for b in head + rest] == want


def test_a_state_without_the_deal_in_progress_is_dealt_again(corpus):
    """Only the unseen positions (e.g. a state written by hand): dealt for this loader."""
    ds, keys = corpus
    ld = NumpyLoader(ds, 2, **FILE_ORDER)
    it = iter(ld)
    head = [k for _ in range(2) for k in next(it)["__key__"]]
    state = json.loads(json.dumps(ld.state_dict()))
    assert head == keys[:4] and state["remaining"] == [[4, 11]]
    del state["deal"], state["finished"]
    again = NumpyLoader(ds, 3, **FILE_ORDER)
    again.load_state_dict(state)
    assert len(again) == 3 and [b["__key__"] for b in again] == [keys[4:7], keys[7:10],
                                                                  keys[10:]]


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("remaining"), "loader state: not a ShardDataset loader's state"),
    (lambda s: s.update(total=12), "loader state: saved for other shards, seed or shuffle "
     "settings"),
    (lambda s: s.update(fingerprint="x"), "loader state: saved for other shards, seed or "
     "shuffle settings"),
    (lambda s: s.pop("total"), "loader state: saved for other shards, seed or shuffle settings"),
    (lambda s: (s.pop("deal"), s.update(remaining=[[4, 12]])),
     "loader state: remaining positions outside 0..11"),
    (lambda s: s["deal"].update(remaining=[[-1, 3]]),
     "loader state: remaining positions outside 0..11"),
])
def test_a_state_that_does_not_fit_is_refused_by_name(corpus, change, message):
    ds, _ = corpus
    ld = NumpyLoader(ds, 2, **FILE_ORDER)
    next(iter(ld))
    state = json.loads(json.dumps(ld.state_dict()))
    change(state)
    with pytest.raises(ShardError) as err:
        NumpyLoader(ds, 2, **FILE_ORDER).load_state_dict(state)
    assert str(err.value) == message


def test_a_state_without_its_total_is_refused_for_a_one_example_epoch(tmp_path):
    build(tmp_path, [1])
    ds = ShardDataset(str(tmp_path), "c")
    state = json.loads(json.dumps(NumpyLoader(ds, 1).state_dict()))
    assert state["total"] == 1
    del state["total"]
    with pytest.raises(ShardError, match="saved for other shards"):
        NumpyLoader(ds, 1).load_state_dict(state)


def test_the_defaults_are_seed_0_in_file_order(corpus):
    """A state of a loader built with the defaults resumes one built with seed=0 (the seed is in
    the state's fingerprint), and the defaults read the epoch in file order."""
    ds, keys = corpus
    ld = NumpyLoader(ds, 4)
    it = iter(ld)
    assert next(it)["__key__"] == keys[:4]
    state = json.loads(json.dumps(ld.state_dict()))
    again = NumpyLoader(ds, 4, seed=0, shuffle_buffer=0, shuffle_shards=False)
    again.load_state_dict(state)
    assert [k for b in again for k in b["__key__"]] == keys[4:]
    with pytest.raises(ShardError) as err:
        NumpyLoader(ds, 0)
    assert str(err.value) == "batch_size: must be >= 1, got 0"


def test_shuffled_shards_keep_their_examples_in_file_order(corpus):
    """shuffle_shards=True without a buffer: whole shards in a seeded order, each read in file
    order; some seed moves them."""
    ds, keys = corpus
    shards = [keys[:4], keys[4:7], keys[7:]]
    orders = []
    for seed in range(4):
        got_keys = [k for b in NumpyLoader(ds, 4, seed=seed, shuffle_buffer=0,
                                           shuffle_shards=True) for k in b["__key__"]]
        order = [next(i for i, sh in enumerate(shards) if k in sh) for k in got_keys[::1]]
        firsts = sorted(set(order), key=order.index)
        assert got_keys == [k for i in firsts for k in shards[i]], seed
        orders.append(firsts)
    assert any(o != [0, 1, 2] for o in orders)


def test_a_buffer_shuffles_within_blocks_without_moving_shards(corpus):
    ds, keys = corpus
    got_keys = [k for b in NumpyLoader(ds, 4, seed=1, shuffle_buffer=5, shuffle_shards=False)
                for k in b["__key__"]]
    assert got_keys != keys
    assert [sorted(got_keys[i:i + 5]) for i in (0, 5, 10)] == [keys[0:5], keys[5:10], keys[10:]]


def test_verify_false_reads_a_shard_the_manifest_hashes_differently(corpus, tmp_path):
    import shutil

    src = corpus[0].out
    shutil.copytree(src, tmp_path / "out")
    raw = json.loads((tmp_path / "out" / "manifest.json").read_text())
    raw["files"][0]["sha256"] = "0" * 64
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(raw))
    ds = ShardDataset(str(tmp_path / "out"), "c")
    with pytest.raises(ShardError, match="refusing a changed shard"):
        list(NumpyLoader(ds, 4))
    assert [k for b in NumpyLoader(ds, 4, verify=False) for k in b["__key__"]] == corpus[1]
    with pytest.raises(ShardError, match="refusing a changed shard"):
        next(iter(NumpyLoader(Mixture([ds]), 4)))
    it = iter(NumpyLoader(Mixture([ds]), 4, verify=False))
    assert [k for _ in range(2) for k in next(it)["__key__"]] == corpus[1][:8]


def test_collate_options_reach_every_batch(corpus):
    """pad_patches_to, channels and normalize as given, against the examples written."""
    from trajcorpus.tokenizers import normalize_patches

    ds, keys = corpus
    truth = {e["__key__"]: e for e in make_examples(len(keys), seed=0, prefix="e", length=40)}
    seen = []
    for b in NumpyLoader(ds, 4, pad_patches_to=40, channels=3, normalize=True, **FILE_ORDER):
        assert b["patches"].dtype == np.float32 and b["patches"].shape[1:] == (40, 16, 16, 3)
        for i, key in enumerate(b["__key__"]):
            raw = truth[key]["patches"]
            c = raw.shape[0]
            want = normalize_patches(np.broadcast_to(raw, (c, 16, 16, 3)))
            np.testing.assert_array_equal(b["patches"][i, :c], want)
            assert not b["patches"][i, c:].any()
            seen.append(key)
    assert seen == keys


def test_a_mixture_starts_at_the_epoch_given(corpus):
    """One component: the draws are that dataset's epoch, in its order for that epoch."""
    ds, keys = corpus
    kw = dict(seed=5, shuffle_buffer=0, shuffle_shards=True)
    for epoch in (0, 1):
        want = [k for b in NumpyLoader(ds, 11, epoch=epoch, **kw) for k in b["__key__"]]
        it = iter(NumpyLoader(Mixture([ds]), 11, epoch=epoch, **kw))
        assert next(it)["__key__"] == want, epoch
    assert [k for b in NumpyLoader(ds, 11, epoch=0, **kw) for k in b["__key__"]] != want
