"""Streaming readers (issue 8): exactly-once splits, seeded shuffle, exact resume, mixture,
integrity at read time, gs://. Outputs are compared with the synthetic input examples."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from test_shards_synth import assert_same_example, make_examples
from trajcorpus.errors import ShardError
from trajcorpus.shards import (
    Mixture,
    NumpyLoader,
    ShardDataset,
    ShardRef,
    collate,
    shard_relpath,
    write_manifest,
    write_shard,
)
from trajcorpus.shards.epoch import EpochPlan
from trajcorpus.shards.stream import consumer_span
from trajcorpus.tokenizers import normalize_patches

try:
    import torch  # the optional `torch` extra (the Makefile installs it when it can)
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(
    torch is None, reason="needs the optional torch extra: pip install -e '.[torch]' (make test "
    "TORCH=1); the NumPy loader tests cover the same streams without it")

COUNTS = [5, 3, 8, 1, 6, 4, 7]  # 7 uneven shards, 34 examples
FORMATS = ("parquet", "webdataset")


def build(out: Path, config: str, examples: list[dict], counts: list[int]) -> None:
    files, start = [], 0
    chunks = []
    for c in counts:
        chunks.append(examples[start:start + c])
        start += c
    for fmt in FORMATS:
        for i, part in enumerate(chunks):
            files.append(write_shard(part, str(out), shard_relpath(config, "train", fmt, i,
                                                                   len(chunks)), fmt))
    write_manifest(str(out), files, config, {"catalog_entry": {"id": config}})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    gray = make_examples(sum(COUNTS), seed=21, prefix="g", length=64)
    rgb = make_examples(12, seed=22, prefix="r", channels=3, length=80)
    build(out, "gray", gray, COUNTS)
    build(out, "rgb", rgb, [5, 7])
    return out, {e["__key__"]: e for e in gray + rgb}


def unbatch(batch: dict) -> list[dict]:
    out = []
    for i, key in enumerate(batch["__key__"]):
        n = int(batch["patch_count"][i])
        ex = {"__key__": key, "meta": batch["meta"][i]}
        for f in ("tokens", "modality", "loss_mask", "local_position", "is_prompt"):
            ex[f] = np.asarray(batch[f][i])
        ex["patches"] = np.asarray(batch["patches"][i, :n])
        ex["patch_position"] = np.asarray(batch["patch_position"][i, :n])
        out.append(ex)
    return out


def keys_of(batches) -> list[str]:
    return [k for b in batches for k in b["__key__"]]


# --------------------------------------------------------------------------- plan

def test_consumer_spans_cover_exactly_once():
    for total in (0, 1, 7, 34, 100):
        for consumers in (1, 2, 6, 7, 9):
            spans = [consumer_span(total, c, consumers) for c in range(consumers)]
            assert spans[0][0] == 0 and spans[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
            sizes = [b - a for a, b in spans]
            assert max(sizes) - min(sizes) <= 1


def test_epoch_order_is_a_block_local_permutation_independent_of_consumers():
    plan = EpochPlan([200, 300], seed=3, epoch=1, shuffle_buffer=16, shuffle_shards=False)
    order = plan.file_positions(np.arange(500))
    assert sorted(order.tolist()) == list(range(500)) and order.tolist() != list(range(500))
    assert (order // 16 == np.arange(500) // 16).all()  # a reader holds one block at most
    # any subset of positions maps the same as the whole epoch (no dependence on consumers)
    some = np.array([499, 3, 250, 17])
    assert plan.file_positions(some).tolist() == order[some].tolist()
    again = EpochPlan([200, 300], seed=3, epoch=2, shuffle_buffer=16, shuffle_shards=False)
    assert again.file_positions(np.arange(500)).tolist() != order.tolist()


# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("fmt", FORMATS)
def test_numpy_loader_round_trip(corpus, fmt):
    out, truth = corpus
    for config, n in (("gray", 34), ("rgb", 12)):
        ds = ShardDataset(str(out), config, fmt=fmt)
        assert len(ds) == n
        seen = []
        for batch in NumpyLoader(ds, batch_size=5):
            assert batch["tokens"].dtype == np.int32 and batch["tokens"].shape[0] <= 5
            assert batch["patches"].dtype == np.uint8 and batch["patches"].ndim == 5
            assert batch["patch_position"].dtype == np.int16
            for ex in unbatch(batch):
                assert_same_example(ex, truth[ex["__key__"]])
                seen.append(ex["__key__"])
        assert sorted(seen) == sorted(k for k in truth if k[0] == config[0])
        assert seen == sorted(seen)  # no shuffle: file order


@needs_torch
@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_batches_round_trip(corpus, fmt):
    from trajcorpus.shards import TorchShardDataset

    out, truth = corpus
    tds = TorchShardDataset(ShardDataset(str(out), "gray", fmt=fmt), batch_size=4,
                            shuffle_buffer=6, seed=3)
    got = list(tds.loader(num_workers=2))
    for b in got:
        assert isinstance(b["tokens"], torch.Tensor) and b["tokens"].dtype == torch.int32
        assert b["patches"].dtype == torch.uint8 and b["patch_count"].dtype == torch.int32
        for ex in unbatch({k: v.numpy() if isinstance(v, torch.Tensor) else v
                           for k, v in b.items()}):
            assert_same_example(ex, truth[ex["__key__"]])
    assert sorted(keys_of(got)) == sorted(k for k in truth if k[0] == "g")


# --------------------------------------------------------------------------- exactly once

@needs_torch
@pytest.mark.parametrize("fmt", FORMATS)
def test_exactly_once_two_nodes_three_workers(corpus, fmt):
    from trajcorpus.shards import TorchShardDataset

    out, truth = corpus
    ds = ShardDataset(str(out), "gray", fmt=fmt)
    per_rank = []
    for rank in range(2):
        tds = TorchShardDataset(ds, batch_size=2, shuffle_buffer=4, seed=5, rank=rank,
                                world_size=2)
        per_rank.append(keys_of(tds.loader(num_workers=3)))
    all_keys = per_rank[0] + per_rank[1]
    assert Counter(all_keys) == Counter(k for k in truth if k[0] == "g")  # no dup, no gap
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 3
    # the six consumers' slices, read directly, are balanced within one example
    sizes = [len(ds.stream(c, 6)) for c in range(6)]
    assert sum(sizes) == 34 and max(sizes) - min(sizes) <= 1


def test_shuffle_is_seeded_per_epoch(corpus):
    out, _ = corpus
    ds = ShardDataset(str(out), "gray")

    def epoch_keys(seed, epoch, rank=0, world=1):
        return keys_of(NumpyLoader(ds, 4, seed=seed, epoch=epoch, shuffle_buffer=8,
                                   rank=rank, world_size=world))

    a = epoch_keys(1, 0)
    assert a == epoch_keys(1, 0)
    assert sorted(a) == sorted(epoch_keys(1, 1)) == sorted(epoch_keys(2, 0))
    assert a != epoch_keys(1, 1) and a != epoch_keys(2, 0) and a != sorted(a)
    for epoch in (0, 1):  # every epoch is exactly once across nodes too
        assert sorted(epoch_keys(1, epoch, 0, 2) + epoch_keys(1, epoch, 1, 2)) == sorted(a)
    # iterating a finished loader starts the next epoch
    ld = NumpyLoader(ds, 4, seed=1, shuffle_buffer=8)
    first, second = keys_of(ld), keys_of(ld)
    assert first == a and second == epoch_keys(1, 1)


# --------------------------------------------------------------------------- resume

@pytest.mark.parametrize("fmt", FORMATS)
def test_numpy_resume_equals_uninterrupted(corpus, fmt):
    out, _ = corpus
    ds = ShardDataset(str(out), "gray", fmt=fmt)
    kw = dict(batch_size=3, seed=9, epoch=2, shuffle_buffer=7, rank=1, world_size=2)
    full = keys_of(NumpyLoader(ds, **kw))
    assert len(full) == 17
    for stop in (0, 1, 3, 5, 6):
        ld = NumpyLoader(ds, **kw)
        it = iter(ld)
        head = keys_of(next(it) for _ in range(stop))
        state = json.loads(json.dumps(ld.state_dict()))
        fresh = NumpyLoader(ds, **dict(kw, epoch=0))
        fresh.load_state_dict(state)
        assert head + keys_of(fresh) == full, stop
    bad = NumpyLoader(ds, **dict(kw, seed=10))
    with pytest.raises(ShardError, match="saved for other"):
        bad.load_state_dict(state)


@needs_torch
def test_torch_resume_equals_uninterrupted_with_workers(corpus):
    from trajcorpus.shards import StatefulLoader, TorchShardDataset

    out, _ = corpus
    ds = ShardDataset(str(out), "gray")

    def loader() -> StatefulLoader:
        return TorchShardDataset(ds, batch_size=2, seed=4, shuffle_buffer=5).loader(
            num_workers=3)

    full = [b["__key__"] for b in loader()]
    assert sorted(k for b in full for k in b) == sorted(ds_keys(ds))
    for stop in (1, 4, 7, len(full) - 1):
        ld = loader()
        head = []
        for b in ld:
            head.append(b["__key__"])
            if len(head) == stop:
                break
        state = json.loads(json.dumps(ld.state_dict()))
        resumed = loader()
        resumed.load_state_dict(state)
        assert head + [b["__key__"] for b in resumed] == full, stop
    # after a complete pass, the loader moves to the next epoch, which is a new order
    ld = loader()
    assert [b["__key__"] for b in ld] == full
    nxt = [b["__key__"] for b in ld]
    assert nxt != full and sorted(map(tuple, nxt)) != [] and \
        sorted(k for b in nxt for k in b) == sorted(ds_keys(ds))
    # another worker count continues the same epoch with exactly the examples not yet seen
    other = TorchShardDataset(ds, batch_size=2, seed=4, shuffle_buffer=5).loader(num_workers=2)
    other.load_state_dict(state)
    rest = [k for b in other for k in b["__key__"]]
    assert sorted(rest + [k for b in head for k in b]) == sorted(ds_keys(ds))


def ds_keys(ds: ShardDataset) -> list[str]:
    return keys_of(NumpyLoader(ds, 100))


# --------------------------------------------------------------------------- mixture

def test_mixture_is_weighted_deterministic_and_resumable(corpus):
    out, truth = corpus
    mix = Mixture([ShardDataset(str(out), "gray"), ShardDataset(str(out), "rgb")],
                  weights={"gray": 3.0, "rgb": 1.0})

    def draws(n, loader):
        it = iter(loader)
        return [next(it) for _ in range(n)]

    kw = dict(batch_size=4, seed=11, shuffle_buffer=4, channels=3)
    batches = draws(100, NumpyLoader(mix, **kw))
    keys = keys_of(batches)
    share = sum(k[0] == "g" for k in keys) / len(keys)
    assert 0.68 < share < 0.82  # 3:1 weights over 400 draws
    assert keys == keys_of(draws(100, NumpyLoader(mix, **kw)))
    assert keys != keys_of(draws(100, NumpyLoader(mix, **dict(kw, seed=12))))
    # components loop over epochs: every gray example appears ~ 300 / 34 times
    counts = Counter(k for k in keys if k[0] == "g")
    assert set(counts) == {k for k in truth if k[0] == "g"} and min(counts.values()) >= 5
    # mixed channels: grayscale broadcast to RGB, arrays match the inputs
    for b in batches[:10]:
        assert b["patches"].shape[-1] == 3
        for ex in unbatch(b):
            want = truth[ex["__key__"]]
            np.testing.assert_array_equal(ex["patches"], np.broadcast_to(
                want["patches"], want["patches"].shape[:3] + (3,)))
    # resume mid-stream, across component epoch boundaries
    ld = NumpyLoader(mix, **kw)
    head = keys_of(draws(37, ld))
    state = json.loads(json.dumps(ld.state_dict()))
    again = NumpyLoader(mix, **kw)
    again.load_state_dict(state)
    assert head + keys_of(draws(63, again)) == keys
    with pytest.raises(ShardError, match="weights"):
        Mixture([ShardDataset(str(out), "gray")], weights=[-1.0])


@needs_torch
def test_mixture_with_torch_workers(corpus):
    from trajcorpus.shards import TorchShardDataset

    out, _ = corpus
    mix = Mixture([ShardDataset(str(out), "gray"), ShardDataset(str(out), "rgb")],
                  weights={"gray": 3.0, "rgb": 1.0})
    # torch workers: every worker draws its own share of the same mixture
    tds = TorchShardDataset(mix, batch_size=4, seed=11, shuffle_buffer=4, channels=3)
    it = iter(tds.loader(num_workers=2))
    got = keys_of(next(it) for _ in range(20))
    assert {k[0] for k in got} == {"g", "r"}


# --------------------------------------------------------------------------- collation

def test_collate_pads_normalizes_and_checks():
    exs = make_examples(6, seed=30, channels=1) + make_examples(2, seed=31, channels=3,
                                                                prefix="c", length=70)
    b = collate(exs, channels=3)
    assert b["tokens"].shape == (8, 96)
    counts = [e["patches"].shape[0] for e in exs]
    assert b["patch_count"].tolist() == counts and b["patches"].shape[1] == max(counts)
    assert (b["local_position"][6:, 70:] == -1).all() and (b["tokens"][6:, 70:] == 0).all()
    assert (b["patch_position"][np.arange(b["patches"].shape[1])[None] >= np.array(counts)[:, None]]
            == -1).all()
    n = collate(exs, channels=3, normalize=True, pad_patches_to=max(counts) + 2)
    assert n["patches"].dtype == np.float32 and n["patches"].shape[1] == max(counts) + 2
    for i, e in enumerate(exs):
        c = counts[i]
        want = normalize_patches(np.broadcast_to(e["patches"], (c, 16, 16, 3)))
        np.testing.assert_allclose(n["patches"][i, :c], want)
        assert (n["patches"][i, c:] == 0).all()
    assert n["patches"].max() <= 0.25 and n["patches"].min() >= -0.25
    with pytest.raises(ShardError, match="exceed pad_patches_to"):
        collate(exs, pad_patches_to=max(counts) - 1, channels=3)
    with pytest.raises(ShardError, match="channels"):
        collate(exs, channels=1)


# --------------------------------------------------------------------------- integrity

def copy_corpus(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("fmt", FORMATS)
def test_tampered_shard_is_refused(corpus, tmp_path, fmt):
    out = copy_corpus(corpus[0], tmp_path / "c")
    ext = "parquet" if fmt == "parquet" else "tar.gz"
    victim = out / f"data/gray/train-00002-of-00007.{ext}"
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x01  # same size, one bit
    victim.write_bytes(bytes(data))
    ds = ShardDataset(str(out), "gray", fmt=fmt)
    with pytest.raises(ShardError, match="sha256 .* refusing a changed shard") as e:
        keys_of(NumpyLoader(ds, 4))
    assert str(victim) in str(e.value)
    # skip_bad: the shard is skipped and counted, everything else arrives exactly once
    ld = NumpyLoader(ds, 4, skip_bad=True)
    keys = keys_of(ld)
    assert len(keys) == 34 - 8 == len(set(keys))
    assert ld.stats.lost_examples == 8 and ld.stats.bad_shards[0][0] == str(victim)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_shard_gives_a_clear_error(corpus, tmp_path, fmt):
    out = copy_corpus(corpus[0], tmp_path / "c")
    ext = "parquet" if fmt == "parquet" else "tar.gz"
    victim = out / f"data/gray/train-00004-of-00007.{ext}"
    full = victim.read_bytes()
    victim.write_bytes(full[: len(full) // 2])
    ds = ShardDataset(str(out), "gray", fmt=fmt)
    with pytest.raises(ShardError, match="truncated: .* bytes, the manifest lists"):
        keys_of(NumpyLoader(ds, 4, verify=False))
    # without a manifest's sizes the codecs themselves detect it
    ref = ShardRef(str(victim), 6, fmt)
    with pytest.raises(ShardError, match="truncated|not a readable"):
        keys_of(NumpyLoader(ShardDataset(shards=[ref]), 4))
    ld = NumpyLoader(ShardDataset(shards=[ref]), 4, skip_bad=True)
    got = keys_of(ld)
    assert len(got) + ld.stats.lost_examples == 6 and len(ld.stats.bad_shards) == 1


def _tar_with(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_hostile_tars_are_refused_without_touching_the_file_system(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    link = tarfile.TarInfo("k.tokens.npy.zst")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    path = tmp_path / "link.tar"
    path.write_bytes(_tar_with([(link, b"")]))
    with pytest.raises(ShardError, match="not a regular file"):
        keys_of(NumpyLoader(ShardDataset(shards=[ShardRef(str(path), 1, "webdataset")]), 1))
    # a path-like member name is only ever a sample key; an object (pickled) npy is refused
    import zstandard

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    evil = zstandard.ZstdCompressor().compress(buf.getvalue())
    members = [(tarfile.TarInfo(f"../../escape/k.{f}"), evil) for f in (
        "is_prompt.npy.zst", "local_position.npy.zst", "loss_mask.npy.zst", "meta.txt",
        "modality.npy.zst", "patch_position.npy.zst", "patches.npy.zst", "tokens.npy.zst")]
    path = tmp_path / "evil.tar"
    path.write_bytes(_tar_with(members))
    with pytest.raises(ShardError, match="object arrays are refused|dtype"):
        keys_of(NumpyLoader(ShardDataset(shards=[ShardRef(str(path), 1, "webdataset")]), 1))
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "escape").exists()


# --------------------------------------------------------------------------- gs://

def test_readers_over_gcs(corpus, gcs):
    out, truth = corpus
    uri = gcs.upload(out, "shards-test/out")
    for fmt in FORMATS:
        for verify in (True, False):
            ds = ShardDataset(uri, "gray", fmt=fmt)
            assert ds.shards[0].uri.startswith("gs://trajcorpus-test/shards-test/out/data/")
            got = []
            for b in NumpyLoader(ds, 8, verify=verify, shuffle_buffer=5, seed=2):
                got += unbatch(b)
            assert sorted(e["__key__"] for e in got) == sorted(k for k in truth if k[0] == "g")
            for ex in got:
                assert_same_example(ex, truth[ex["__key__"]])


@needs_torch
def test_torch_reader_over_gcs(corpus, gcs):
    from trajcorpus.shards import TorchShardDataset

    uri = gcs.upload(corpus[0], "shards-test/out-torch")
    tds = TorchShardDataset(ShardDataset(uri, "rgb"), batch_size=5, rank=1, world_size=2)
    keys = keys_of(tds.loader(num_workers=0))
    assert len(keys) == 6 and all(k[0] == "r" for k in keys)


def test_corrupt_tar_header_is_named_without_verification(corpus, tmp_path):
    out = copy_corpus(corpus[0], tmp_path / "c")
    victim = out / "data/gray/train-00000-of-00007.tar.gz"
    data = bytearray(gzip.decompress(victim.read_bytes()))
    second = 512 + -(-int(data[124:136].split(b"\0")[0].strip() or b"0", 8) // 512) * 512
    data[second + 3] ^= 0x20  # a byte of the second member's name, inside a valid gzip stream
    victim.write_bytes(gzip.compress(bytes(data)))  # another size: read without the manifest
    ds = ShardDataset(shards=[ShardRef(str(victim), COUNTS[0], "webdataset")])
    with pytest.raises(ShardError, match=f"offset {second}: tar header checksum mismatch"):
        keys_of(NumpyLoader(ds, 4, verify=False))


def test_corrupt_gzip_stream_is_named_without_verification(corpus, tmp_path):
    out = copy_corpus(corpus[0], tmp_path / "c")
    victim = out / "data/gray/train-00002-of-00007.tar.gz"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the codec can notice
    victim.write_bytes(bytes(data))
    ds = ShardDataset(str(out), "gray", fmt="webdataset")
    with pytest.raises(ShardError, match="corrupt|truncated") as e:
        keys_of(NumpyLoader(ds, 4, verify=False))
    assert str(victim) in str(e.value)
