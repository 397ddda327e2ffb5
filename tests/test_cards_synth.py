"""Synthetic but realistic examples and output folders for the dataset-card tests.

The audit numbers are computed here independently of the pipeline (the SPEC section 3 formulas on
known returns), so the card can be checked against them.
"""

from __future__ import annotations

import json
import math

import numpy as np

from trajcorpus.sources.base import kind_facts
from trajcorpus.tokenizers.scheme import CONTINUOUS_OFFSET, NUM_BINS, SEPARATOR, Modality

L_ATARI = 96  # up to 3 Atari steps (27 tokens each) + padding
L_MUJOCO = 32  # 2 MuJoCo steps (11 obs + 1 sep + 3 actions = 15 tokens each) + 2 padding
L_VL = 128


def pong_frames(t0: int, n: int) -> np.ndarray:
    """80x80 grayscale frames: a ball moving right, a paddle at the right edge."""
    frames = np.full((n, 80, 80), 40, dtype=np.uint8)
    for k in range(n):
        x = 8 + 6 * (t0 + k)
        frames[k, 36:44, x:x + 8] = 236
        frames[k, 20 + 2 * k:44 + 2 * k, 72:76] = 150
    return frames


def patchify(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if img.ndim == 2:
        img = img[..., None]
    h, w, c = img.shape
    gh, gw = h // 16, w // 16
    p = img.reshape(gh, 16, gw, 16, c).transpose(0, 2, 1, 3, 4).reshape(gh * gw, 16, 16, c)
    rr, cc = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    return p, np.stack([rr.ravel(), cc.ravel()], 1).astype(np.int16)


def _pad(parts: dict[str, list], length: int) -> dict[str, np.ndarray]:
    n = len(parts["tokens"])
    assert n <= length, (n, length)
    pad = length - n
    return {
        "tokens": np.array(parts["tokens"] + [0] * pad, np.int32),
        "modality": np.array(parts["modality"] + [0] * pad, np.uint8),
        "loss_mask": np.array(parts["loss_mask"] + [0] * pad, np.uint8),
        "local_position": np.array(parts["local_position"] + [-1] * pad, np.int16),
        "is_prompt": np.array(parts["is_prompt"] + [0] * pad, np.uint8),
    }


def atari_example(key: str, episode: str, task: str, t0: int, actions: list[int],
                  prompt: bool = False) -> dict:
    """Two (or more) Atari steps: 25 patch slots, separator, one discrete action each."""
    parts = {k: [] for k in ("tokens", "modality", "loss_mask", "local_position", "is_prompt")}
    patches, positions = [], []
    steps = [(True, f, a) for f, a in zip(pong_frames(0, 1), [0], strict=True)] if prompt else []
    steps += [(False, f, a) for f, a in zip(pong_frames(t0, len(actions)), actions, strict=True)]
    for is_p, frame, action in steps:
        p, pos = patchify(frame)
        patches.append(p)
        positions.append(pos)
        parts["tokens"] += [-1] * 25 + [SEPARATOR, action]
        parts["modality"] += [Modality.IMAGE] * 25 + [Modality.SEPARATOR, Modality.ACTION]
        parts["loss_mask"] += [0] * 26 + [0 if is_p else 1]
        parts["local_position"] += list(range(25)) + [-1, -1]
        parts["is_prompt"] += [int(is_p)] * 27
    ex = _pad(parts, L_ATARI)
    ex["patches"] = np.concatenate(patches)
    ex["patch_position"] = np.concatenate(positions)
    ex["meta"] = json.dumps({
        "dataset": "demo-atari", "task": task, "agent": f"{task}/run1", "episode_id": episode,
        "first_step": t0, "last_step": t0 + len(actions) - 1,
        "prompt": {"episode_id": "Pong-000", "mode": "end"} if prompt else None,
        "lineage": {"uri": f"{task}/1/replay_logs"}}, sort_keys=True)
    ex["__key__"] = key
    return ex


def continuous_tokens(x: np.ndarray) -> np.ndarray:
    """SPEC section 4 binning without mu-law (values already in [-1, 1])."""
    y = np.clip(x, -1, 1)
    return (np.minimum(np.floor((y + 1) / 2 * NUM_BINS), NUM_BINS - 1) + CONTINUOUS_OFFSET
            ).astype(np.int32)


def mujoco_example(key: str, obs: np.ndarray, actions: np.ndarray) -> dict:
    """Steps of 11 continuous observation tokens, separator, 3 continuous action tokens."""
    parts = {k: [] for k in ("tokens", "modality", "loss_mask", "local_position", "is_prompt")}
    for o, a in zip(obs, actions, strict=True):
        parts["tokens"] += continuous_tokens(o).tolist() + [SEPARATOR] + \
            continuous_tokens(a).tolist()
        parts["modality"] += [Modality.CONTINUOUS] * len(o) + [Modality.SEPARATOR] + \
            [Modality.ACTION] * len(a)
        parts["loss_mask"] += [0] * (len(o) + 1) + [1] * len(a)
        parts["local_position"] += list(range(len(o))) + [-1] * (1 + len(a))
        parts["is_prompt"] += [0] * (len(o) + 1 + len(a))
    ex = _pad(parts, L_MUJOCO)
    ex["patches"] = np.zeros((0, 16, 16, 1), np.uint8)
    ex["patch_position"] = np.zeros((0, 2), np.int16)
    ex["meta"] = json.dumps({"dataset": "demo-mujoco", "task": "Hopper-v5", "agent": "expert",
                             "episode_id": "ep0", "first_step": 0, "last_step": len(obs) - 1,
                             "prompt": None, "lineage": {"uri": "main_data.hdf5"}})
    ex["__key__"] = key
    return ex


def vl_example(key: str, images: list[np.ndarray], captions: list[list[int]]) -> dict:
    """Image-caption pairs: [image patches][caption text], no separator, no actions."""
    parts = {k: [] for k in ("tokens", "modality", "loss_mask", "local_position", "is_prompt")}
    patches, positions = [], []
    for img, cap in zip(images, captions, strict=True):
        p, pos = patchify(img)
        patches.append(p)
        positions.append(pos)
        parts["tokens"] += [-1] * len(p) + cap
        parts["modality"] += [Modality.IMAGE] * len(p) + [Modality.TEXT] * len(cap)
        parts["loss_mask"] += [0] * len(p) + [1] * len(cap)
        parts["local_position"] += list(range(len(p) + len(cap)))
        parts["is_prompt"] += [0] * (len(p) + len(cap))
    ex = _pad(parts, L_VL)
    ex["patches"] = np.concatenate(patches)
    ex["patch_position"] = np.concatenate(positions)
    ex["meta"] = json.dumps({"dataset": "demo-captions", "task": "coco", "agent": "coco",
                             "episode_id": "img0", "first_step": 0, "last_step": 0,
                             "prompt": None, "lineage": {"uri": "captions.json"}})
    ex["__key__"] = key
    return ex


def color_image(seed: int) -> np.ndarray:
    """A 32x32 RGB image with a coloured square, recognisable once reassembled."""
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., seed % 3] = 60
    img[4 + seed:20 + seed, 6:22, (seed + 1) % 3] = 255
    return img


def best_window(returns: np.ndarray, fraction: float = 0.8, window_fraction: float = 0.1,
                max_window: int = 1000) -> tuple[int, int, float, float, np.ndarray]:
    """SPEC section 3, written out plainly (a loop over windows, unlike the pipeline's)."""
    n = len(returns)
    w = max(1, min(max_window, math.floor(window_fraction * n)))
    means = [sum(returns[j:j + w]) / w for j in range(n - w + 1)]
    j = int(np.argmax(means))
    expert = float(means[j])
    thr = fraction * expert if expert >= 0 else expert - (1 - fraction) * abs(expert)
    return int(w), j, expert, float(thr), np.asarray(returns) >= thr


# --- a whole output folder -----------------------------------------------------------------------

CAPTIONS = ["a red square on a dark background", "a green square on a dark background",
            "a blue square on a dark background", "a small red block", "a green block on blue",
            "a square of blue light", "red and green squares", "dark blue background"]
MODALITIES = ("pad", "text", "image", "discrete", "continuous", "separator", "action")


def _token_counts(examples: list[dict]) -> dict[str, int]:
    counts = np.zeros(len(MODALITIES), np.int64)
    for ex in examples:
        counts += np.bincount(ex["modality"], minlength=len(MODALITIES))
    return dict(zip(MODALITIES, counts.tolist(), strict=True))


def _episode_rows(task: str, returns: np.ndarray, kept: np.ndarray) -> list[dict]:
    # written in a shuffled order: the card must sort by (order, episode_id) itself
    rows = [{"task": task, "agent": f"{task}/run1", "episode_id": f"{task}-{i:03d}",
             "order": [i // 10, i % 10], "return": float(returns[i]), "length": 50 + i,
             "kept": bool(kept[i])} for i in range(len(returns))]
    perm = np.random.default_rng(len(returns)).permutation(len(rows))
    return [rows[i] for i in perm]


def _write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _text_model(captions: list[str]) -> bytes:
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(captions), model_writer=buf,
                                   vocab_size=30, model_type="unigram", num_threads=1,
                                   character_coverage=1.0, minloglevel=2,
                                   shuffle_input_sentence=False)
    return buf.getvalue()


def build_out(root) -> dict:
    """Write a small but complete output folder (three configs) with the real shard writers.

    Returns what the test expects: per config the audit as written, the examples, the captions.
    """
    import hashlib

    import sentencepiece as spm

    from trajcorpus.shards.hub import hub_configs  # noqa: F401  (the README's configs source)
    from trajcorpus.shards.layout import shard_relpath
    from trajcorpus.shards.manifest import write_manifest
    from trajcorpus.shards.writer import write_shard

    out = str(root)
    (root / "audit").mkdir(parents=True, exist_ok=True)
    expected: dict = {}

    # ---- Atari: two tasks, filter on, rejects, both formats
    rng = np.random.default_rng(7)
    audit, episodes, examples = {}, [], []
    rejects = [
        {"task": "Pong", "kind": "SourceError", "reason": "truncated gzip member",
         "location": "Pong/1/replay_logs/$store$_reward_ckpt.2.gz @ offset 44"},
        {"task": "Pong", "kind": "SourceError", "reason": "truncated gzip member",
         "location": "Pong/1/replay_logs/$store$_action_ckpt.2.gz @ offset 12"},
        {"task": "Pong", "kind": "EpisodeError", "reason": "field 'rewards': non-finite | NaN",
         "location": "Pong/1/replay_logs ckpt 1 episode 7"},
        {"task": "(unattributed)", "kind": "SourceError", "reason": "unreadable checkpoint",
         "location": "Seaquest/1/replay_logs/$store$_observation_ckpt.0.gz"},
    ]
    for task, n in (("Breakout", 25), ("Pong", 40)):
        if task == "Pong":
            returns = np.round(np.linspace(-21, 6, n) + rng.normal(0, 3, n))
        else:
            returns = np.round(rng.gamma(2.0, 4.0, n))
        w, j, e, thr, kept = best_window(returns)
        episodes += _episode_rows(task, returns, kept)
        task_examples = []
        for i in np.flatnonzero(kept):
            key = f"{task}-{i:03d}-0000"
            task_examples.append(atari_example(key, f"{task}-{i:03d}", task, 3,
                                               [int(i) % 6, (int(i) + 1) % 6],
                                               prompt=len(task_examples) % 3 == 0))
        examples += task_examples
        rej = sum(r["task"] == task for r in rejects)
        audit[task] = {
            "read": n + rej, "rejected": rej, "filtered": int(n - kept.sum()),
            "kept": int(kept.sum()), "episodes_total": n, "window": w, "best_window_start": j,
            "expert_return": e, "threshold": thr, "sequences": len(task_examples),
            "prompted_sequences": int(sum(bool(ex["is_prompt"].any()) for ex in task_examples)),
            "tokens": _token_counts(task_examples),
        }
    audit["(unattributed)"] = {
        "read": 1, "rejected": 1, "filtered": 0, "kept": 0, "episodes_total": 0, "window": None,
        "best_window_start": None, "expert_return": None, "threshold": None, "sequences": 0,
        "prompted_sequences": 0, "tokens": dict.fromkeys(MODALITIES, 0)}
    examples.sort(key=lambda ex: ex["__key__"])
    files = []
    for fmt, parts in (("parquet", 2), ("webdataset", 1)):
        chunks = np.array_split(np.arange(len(examples)), parts)
        for i, idx in enumerate(chunks):
            files.append(write_shard([examples[k] for k in idx], out,
                                     shard_relpath("demo-atari", "train", fmt, i, parts), fmt))
    (root / "audit" / "demo-atari.json").write_text(json.dumps(audit, indent=2, sort_keys=True))
    _write_jsonl(root / "audit" / "demo-atari.episodes.jsonl", episodes)
    _write_jsonl(root / "audit" / "demo-atari.rejected.jsonl", rejects)
    write_manifest(out, files, "demo-atari", {
        "catalog_entry": {"id": "demo-atari", "kind": "dqn-replay",
                          "uri": "tests/fixtures/atari_dqn_replay", "license": "CC-BY-4.0",
                          "citation": "Agarwal, Schuurmans, Norouzi. An Optimistic Perspective "
                                      "on Offline Reinforcement Learning. ICML 2020.",
                          "homepage": "https://research.google/resources/datasets/dqn-replay/",
                          "description": "Synthetic Pong/Breakout frames for the card tests.",
                          "task": "{task}", "agent": "{task}/run{agent}", "mixture_weight": 1.0},
        "settings": {"filter": {"enabled": True, "fraction": 0.8, "window_fraction": 0.1,
                                "max_window": 1000},
                     "tokenize": {"image_size": [80, 80], "mu_law": True, "mu_law_exempt": []},
                     "sequence": {"length": L_ATARI, "prompt_probability": 0.25,
                                  "prompt_tokens": 27, "prompt_end_share": 0.5, "vl_pairs": 5},
                     "formats": ["parquet", "webdataset"]},
        "sequence_length": L_ATARI, "seed": 3, "code_version": "0.1.0",
        "command": "trajcorpus run --catalog catalog.yaml --dataset demo-atari --output OUT "
                   "--seed 3 --format both",
        "text_model": None, "tokenizer_sha256": None,
        "source": kind_facts("dqn-replay"),
    })
    expected["demo-atari"] = {"audit": audit, "examples": examples, "rejects": rejects}

    # ---- captions: filter off, a real SentencePiece model stored in OUT
    model = _text_model(CAPTIONS)
    (root / "tokenizer").mkdir(exist_ok=True)
    (root / "tokenizer" / "demo-captions.model").write_bytes(model)
    sp = spm.SentencePieceProcessor(model_proto=model)
    records = [(color_image(k % 9), CAPTIONS[k % len(CAPTIONS)]) for k in range(10)]
    vl = []
    for s in range(2):
        pairs = records[5 * s:5 * s + 5]
        vl.append(vl_example(f"coco-{s:04d}", [p[0] for p in pairs],
                             [sp.encode(p[1]) for p in pairs]))
    for ex in vl:
        assert int((ex["modality"] != 0).sum()) <= L_VL
    vl_audit = {"coco": {
        "read": 10, "rejected": 0, "filtered": 0, "kept": 10, "episodes_total": 10,
        "window": None, "best_window_start": None, "expert_return": None, "threshold": None,
        "sequences": 2, "prompted_sequences": 0, "tokens": _token_counts(vl)}}
    (root / "audit" / "demo-captions.json").write_text(json.dumps(vl_audit, indent=2))
    _write_jsonl(root / "audit" / "demo-captions.episodes.jsonl", [
        {"task": "coco", "agent": "coco", "episode_id": f"img{k}", "order": [k], "return": 0.0,
         "length": 1, "kept": True} for k in range(10)])
    _write_jsonl(root / "audit" / "demo-captions.rejected.jsonl", [])
    vl_files = [write_shard(vl, out, shard_relpath("demo-captions", "train", "parquet", 0, 1),
                            "parquet")]
    write_manifest(out, vl_files, "demo-captions", {
        "catalog_entry": {"id": "demo-captions", "kind": "coco-captions",
                          "uri": "tests/fixtures/image_caption/coco",
                          "license": "CC0-1.0 and public domain (see PROVENANCE.md)",
                          "citation": "Chen et al. Microsoft COCO Captions. 2015.",
                          "description": "Synthetic coloured squares with captions."},
        "settings": {"filter": {"enabled": False}, "tokenize": {"image_size": [32, 32]},
                     "sequence": {"length": L_VL, "vl_pairs": 5}},
        "sequence_length": L_VL, "seed": 3, "code_version": "0.1.0",
        "text_model": {"path": "tokenizer/demo-captions.model",
                       "sha256": hashlib.sha256(model).hexdigest(), "vocab_size": 30},
        "tokenizer_sha256": hashlib.sha256(model).hexdigest(),
        "source": kind_facts("coco-captions"),
    })
    expected["demo-captions"] = {"audit": vl_audit, "examples": vl,
                                 "captions": [r[1] for r in records]}

    # ---- MuJoCo: continuous observations, actions exempt from mu-law, one task
    rng = np.random.default_rng(11)
    returns = np.round(rng.normal(1000, 300, 30), 3)
    w, j, e, thr, kept = best_window(returns)
    mj = [mujoco_example(f"hop-{i:03d}", rng.uniform(-1, 1, (2, 11)), rng.uniform(-1, 1, (2, 3)))
          for i in np.flatnonzero(kept)]
    mj_audit = {"Hopper-v5": {
        "read": 30, "rejected": 0, "filtered": int(30 - kept.sum()), "kept": int(kept.sum()),
        "episodes_total": 30, "window": w, "best_window_start": j, "expert_return": e,
        "threshold": thr, "sequences": len(mj), "prompted_sequences": 0,
        "tokens": _token_counts(mj)}}
    (root / "audit" / "demo-mujoco.json").write_text(json.dumps(mj_audit, indent=2))
    _write_jsonl(root / "audit" / "demo-mujoco.episodes.jsonl",
                 _episode_rows("Hopper-v5", returns, kept))
    mj_files = [write_shard(mj, out, shard_relpath("demo-mujoco", "train", "parquet", 0, 1),
                            "parquet")]
    write_manifest(out, mj_files, "demo-mujoco", {
        "catalog_entry": {"id": "demo-mujoco", "kind": "minari",
                          "uri": "tests/fixtures/mujoco/minari/trajcorpus-fixtures",
                          "license": "CC-BY-4.0", "citation": "Younis et al. Minari. 2024."},
        "settings": {"filter": {"enabled": True, "fraction": 0.8, "window_fraction": 0.1,
                                "max_window": 1000},
                     "tokenize": {"mu_law": False, "mu_law_exempt": ["actions"]},
                     "sequence": {"length": L_MUJOCO}},
        "sequence_length": L_MUJOCO, "seed": 3, "code_version": "0.1.0",
        "source": kind_facts("minari"),
    })
    expected["demo-mujoco"] = {"audit": mj_audit, "examples": mj}
    return expected
