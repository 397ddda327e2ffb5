"""The job end to end on the bundled DQN fixture: demo-dqn-replay-mgdt's output is read by every
loader and by ``datasets.load_dataset`` like any other config. (That the Gato build of
demo-dqn-replay is byte for byte what the code built before schemes existed is
tests/test_golden_demo.py's check: its record predates them.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from trajcorpus.pipelines.job import run_job
from trajcorpus.shards import ShardDataset, ShardStream
from trajcorpus.shards.loaders import NumpyLoader
from trajcorpus.tokenizers import mgdt

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("mgdt")
    cwd = os.getcwd()
    os.chdir(ROOT)  # the manifest records the command with the catalog's relative input
    try:
        out = base / "mgdt"
        run_job(catalog="catalog.yaml", dataset="demo-dqn-replay-mgdt", output=str(out),
                progress=False)
    finally:
        os.chdir(cwd)
    return None, out


def test_mgdt_manifest_records_the_scheme_and_the_action_mapping(built):
    _, out = built
    info = json.loads((out / "manifest.json").read_text())["configs"][
        "demo-dqn-replay-mgdt"]["info"]
    tk = info["tokenization"]
    assert tk["patch_size"] == [14, 14] and tk["context_steps"] == 4
    assert tk["tokens_per_step"] == 39 and info["sequence_length"] == 156
    assert info["action_mapping"]["minimal_to_full"] == {"Breakout": [0, 1, 3, 4],
                                                         "Pong": [0, 1, 3, 4, 11, 12]}
    audit = json.loads((out / "audit" / "demo-dqn-replay-mgdt.json").read_text())
    # top 10%: ceil(0.1 * 111) = 12 of Breakout's episodes, ceil(0.1 * 38) = 4 of Pong's
    assert (audit["Breakout"]["kept"], audit["Pong"]["kept"]) == (12, 4)
    assert audit["Pong"]["rule"] == "top_fraction" and audit["Pong"]["top_fraction"] == 0.1
    assert audit["Pong"]["tokens"]["return_to_go"] == audit["Pong"]["tokens"]["action"]
    kept = [json.loads(x) for x in (out / "audit" / "demo-dqn-replay-mgdt.episodes.jsonl")
            .read_text().splitlines()]
    pong = sorted((r for r in kept if r["task"] == "Pong"),
                  key=lambda r: (-r["return"], r["episode_id"]))
    assert [r["kept"] for r in pong] == [True] * 4 + [False] * (len(pong) - 4)
    card = (out / "README.md").read_text()
    assert "top_fraction" in card and "**FAIL**" not in card  # the card's own checks pass
    assert "| action | return_to_go | reward | total |" in card
    assert "`demo-dqn-replay-mgdt` use the Multi-Game Decision Transformer scheme" in card


def test_card_decodes_mgdt_examples_into_whole_timesteps(built):
    from trajcorpus.cards.decode import decode_example

    _, out = built
    ex = next(iter(ShardStream(ShardDataset(str(out), "demo-dqn-replay-mgdt"))))
    dec = decode_example(ex)
    assert len(dec.steps) == ex["patches"].shape[0] // 36
    assert all(s.images[0].shape == (84, 84, 1) and len(s.actions) == 1 for s in dec.steps)


def test_loaders_read_mgdt_shards(built):
    _, out = built
    for fmt in ("parquet", "webdataset"):
        ds = ShardDataset(str(out), "demo-dqn-replay-mgdt", fmt=fmt)
        assert ds.patch_size == 14
        batch = next(iter(NumpyLoader(ds, batch_size=8)))
        assert batch["tokens"].shape == (8, 156)
        assert batch["patches"].shape[2:] == (14, 14, 1)
        full = batch["patch_count"] == 4 * 36
        assert full.any()
        i = int(np.flatnonzero(full)[0])
        steps = batch["tokens"][i].reshape(4, 39)
        assert (batch["modality"][i].reshape(4, 39)[:, 36:] == [7, 6, 8]).all()
        assert (steps[:, 36] < mgdt.NUM_RETURNS).all() and (steps[:, 38] < 4).all()
        norm = next(iter(NumpyLoader(ds, batch_size=2, normalize=True)))["patches"]
        assert norm.dtype == np.float32 and 0.0 <= norm.min() and norm.max() <= 1.0


def test_torch_loader_and_datasets_read_mgdt(built):
    _, out = built
    torch = pytest.importorskip("torch")  # the torch extra; NumpyLoader is checked above
    from trajcorpus.shards.torchloader import TorchShardDataset

    batch = next(iter(TorchShardDataset(ShardDataset(str(out), "demo-dqn-replay-mgdt"),
                                        batch_size=4)))
    assert batch["patches"].shape[2:] == torch.Size([14, 14, 1])


def test_datasets_load_dataset_reads_mgdt(built):
    from datasets import load_dataset

    _, out = built
    ds = load_dataset(str(out), "demo-dqn-replay-mgdt", split="train", streaming=True)
    ex = next(iter(ds))
    assert len(ex["tokens"]) == 156 and list(ex["patches_shape"][1:]) == [14, 14, 1]
