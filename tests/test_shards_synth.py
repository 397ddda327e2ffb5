"""Synthetic but realistic training examples for the shard tests (imported by test_shards_*).

Each example is built the way SPEC section 4 lays out a timestep: [text][image patch slots]
[discrete/continuous obs][separator][action], whole timesteps until L, then padding; some carry a
prompt prefix. Patches are random pixels with C = 1 (Atari-like) or C = 3 (COCO-like).
"""

from __future__ import annotations

import json

import numpy as np

from trajcorpus.shards import check_example
from trajcorpus.tokenizers.scheme import CONTINUOUS_OFFSET, SEPARATOR, Modality


def make_example(rng: np.random.Generator, key: str, length: int = 96, channels: int = 1,
                 images_per_step: int = 2, prompt: bool = False) -> dict:
    tokens, modality, loss, local, is_prompt, patches, pos = [], [], [], [], [], [], []
    step = 0
    prompt_len = int(rng.integers(10, length // 3)) if prompt else 0
    while True:
        text = int(rng.integers(0, 3))
        n_img = images_per_step
        disc, cont, act = int(rng.integers(0, 3)), int(rng.integers(0, 3)), 1 + int(rng.integers(0, 2))
        size = text + n_img + disc + cont + 1 + act
        if len(tokens) + size > length:
            break
        obs_local = 0
        t = rng.integers(0, 32000, text)
        for kind, ids in ((Modality.TEXT, t), (Modality.IMAGE, np.full(n_img, -1)),
                          (Modality.DISCRETE, rng.integers(0, 1024, disc)),
                          (Modality.CONTINUOUS, rng.integers(CONTINUOUS_OFFSET, SEPARATOR, cont))):
            for v in ids.tolist():
                tokens.append(v)
                modality.append(int(kind))
                loss.append(1 if kind == Modality.TEXT else 0)
                local.append(obs_local)
                obs_local += 1
        tokens.append(SEPARATOR)
        modality.append(int(Modality.SEPARATOR))
        loss.append(0)
        local.append(-1)
        for v in rng.integers(0, 18, act).tolist():
            tokens.append(v)
            modality.append(int(Modality.ACTION))
            loss.append(1)
            local.append(-1)
        for j in range(n_img):
            patches.append(rng.integers(0, 256, (16, 16, channels), dtype=np.uint8))
            pos.append((j // 2, j % 2))
        step += 1
    n = len(tokens)
    is_prompt = [1 if i < prompt_len else 0 for i in range(n)]
    loss = [0 if p else m for p, m in zip(is_prompt, loss, strict=True)]
    pad = length - n
    ex = {
        "__key__": key,
        "tokens": np.array(tokens + [0] * pad, dtype=np.int32),
        "modality": np.array(modality + [0] * pad, dtype=np.uint8),
        "loss_mask": np.array(loss + [0] * pad, dtype=np.uint8),
        "local_position": np.array(local + [-1] * pad, dtype=np.int16),
        "is_prompt": np.array(is_prompt + [0] * pad, dtype=np.uint8),
        "patches": (np.stack(patches) if patches
                    else np.zeros((0, 16, 16, channels), np.uint8)),
        "patch_position": np.array(pos, dtype=np.int16).reshape(-1, 2),
        "meta": json.dumps({
            "dataset": "synthetic", "task": "game", "agent": "game/run1", "episode_id": key,
            "first_step": 0, "last_step": step - 1,
            # prompt null or an object, lineage keys vary: datasets must not infer a struct
            "prompt": {"episode_id": key + "p", "mode": "goal"} if prompt else None,
            "lineage": ({"uri": "gs://x/a", "offset": int(rng.integers(0, 1e6))} if prompt
                        else {"uri": "gs://x/b"}),
        }),
    }
    return ex


def make_examples(n: int, seed: int = 0, prefix: str = "ex", channels: int = 1,
                  length: int = 96) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [make_example(rng, f"{prefix}-{i:05d}", length=length, channels=channels,
                         images_per_step=int(rng.integers(0, 4)), prompt=i % 4 == 3)
            for i in range(n)]


def assert_same_example(got: dict, want: dict) -> None:
    assert got["__key__"] == want["__key__"]
    for f in ("tokens", "modality", "loss_mask", "local_position", "is_prompt", "patches",
              "patch_position"):
        g = np.asarray(got[f])
        assert g.dtype == want[f].dtype, f
        assert g.shape == want[f].shape, f
        np.testing.assert_array_equal(g, want[f], err_msg=f)
    assert got["meta"] == want["meta"]


def test_synthetic_examples_follow_the_spec():
    for c in (1, 3):
        exs = make_examples(20, seed=c, channels=c)
        for ex in exs:
            check_example(ex)
        assert any(ex["patches"].shape[0] == 0 for ex in exs)
        assert any(ex["patches"].shape[0] > 4 for ex in exs)
        assert any(ex["is_prompt"].any() for ex in exs)
