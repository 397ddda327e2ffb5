"""Round trips on the bundled real corpora: tokenize, then get the actions and pixels back.

The raw fixture data is loaded here directly (gzip + npy header, h5py, PIL), independently of the
readers, and checked against ground_truth.json first, so the test is about the tokenizer. Settings
come from the real catalog.yaml's demo entries. RLDS is read with the project's reader (parsing
TFRecord protos by hand here would duplicate it) and checked against its ground truth.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from trajcorpus.schemas.catalog import load_catalog
from trajcorpus.schemas.episode import Episode
from trajcorpus.tokenizers import (
    EpisodeTokenizer,
    Modality,
    TokenizedEpisode,
    decode_continuous,
    mu_law_transform,
    observation_tokens,
    resize_images,
    to_channels,
    train_text_model,
    unpatchify,
)

FIX = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
HALF_BIN = 1.0 / 1024


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(str(REPO / "catalog.yaml"))


def npy_gz_head(path: Path, n: int) -> np.ndarray:
    """The first n rows of a gzipped .npy, streamed: no need to inflate a whole checkpoint."""
    with gzip.open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
        assert not fortran and not dtype.hasobject
        row = int(np.prod(shape[1:], dtype=np.int64))
        data = f.read(n * row * dtype.itemsize)
    return np.frombuffer(data, dtype=dtype).reshape((n,) + tuple(shape[1:]))


def episode(eid, obs, kinds, actions, kind, rewards=None) -> Episode:
    t = actions.shape[0]
    rewards = np.zeros(t, np.float32) if rewards is None else rewards.astype(np.float32)
    return Episode("fixture", "task", "agent", eid, (0,), obs, kinds, actions, kind, rewards,
                   False, False, float(rewards.sum(dtype=np.float64)), {"uri": "fixture"})


def step_images(tok: TokenizedEpisode) -> list[np.ndarray]:
    return [unpatchify(tok.patches[a:b], tok.patch_position[a:b])
            for a, b in zip(tok.patch_offsets[:-1], tok.patch_offsets[1:], strict=True)]


# --- Atari: DQN Replay, Pong --------------------------------------------------------------------

@pytest.mark.parametrize("game", ["Pong", "Breakout"])
def test_dqn_replay_round_trip(game, catalog):
    root = FIX / "atari_dqn_replay" / game / "1"
    truth = json.loads((root / "ground_truth.json").read_text())
    first = truth["episodes"][0]
    assert int(first["checkpoint"]) == 0 and not first["spans_checkpoints"]
    start, stop = int(first["start_index"]), int(first["end_index"]) + 1
    logs = root / "replay_logs"
    frames = npy_gz_head(logs / "$store$_observation_ckpt.0.gz", stop)[start:]
    actions = npy_gz_head(logs / "$store$_action_ckpt.0.gz", stop)[start:]
    rewards = npy_gz_head(logs / "$store$_reward_ckpt.0.gz", stop)[start:]
    # the right episode: its length, return and action set are the ground truth's
    assert len(actions) == int(first["length"])
    assert float(rewards.sum()) == float(first["return_clipped"])
    assert actions.max() < int(first["num_actions"])

    ep = episode(f"{game}-0", {"observation": frames}, {"observation": "image"}, actions,
                 "discrete", rewards).validate()
    tk = EpisodeTokenizer(catalog.get("demo-dqn-replay").tokenize)
    tok = tk.tokenize(ep).validate()
    assert tok.num_steps == len(actions) and tok.num_tokens == 27 * len(actions)
    assert (tk.decode_actions(tok)[:, 0] == actions).all()  # discrete: exact
    resized = resize_images(frames, (80, 80))
    images = step_images(tok)
    assert all((img[..., 0] == r).all() for img, r in zip(images, resized, strict=True))
    for t in (0, len(actions) // 2, len(actions) - 1):  # independent check against PIL
        pil = np.asarray(Image.fromarray(frames[t]).resize((80, 80), Image.NEAREST))
        assert (images[t][..., 0] == pil).all()


# --- MuJoCo: Minari Hopper and HalfCheetah --------------------------------------------------------

@pytest.mark.parametrize("env", ["hopper", "halfcheetah"])
def test_minari_round_trip(env, catalog):
    base = FIX / "mujoco" / "minari" / "trajcorpus-fixtures" / env / "mixed-v0"
    truth = json.loads((base / "ground_truth.json").read_text())
    tk = EpisodeTokenizer(catalog.get("demo-minari").tokenize)
    assert tk.mu_law_for("observation") and not tk.mu_law_for("actions")
    with h5py.File(base / "data" / "main_data.hdf5", "r") as f:
        for rec in truth["episodes"][:6]:
            g = f[f"episode_{rec['index']}"]
            obs = g["observations"][:-1]  # Minari stores T+1 observations
            act = g["actions"][:]
            rew = g["rewards"][:]
            assert len(act) == int(rec["length"])
            assert abs(float(rew.sum()) - float(rec["return"])) < 1e-9
            ep = episode(f"{env}-{rec['index']}", {"observation": obs},
                         {"observation": "continuous"}, act, "continuous").validate()
            tok = tk.tokenize(ep).validate()
            width = obs.shape[1] + 1 + act.shape[1]
            assert tok.step_offsets.tolist() == list(range(0, width * len(act) + 1, width))
            # actions are already in [-1, 1]: no mu-law, back within half a bin
            back = tk.decode_actions(tok)
            assert np.abs(back - act).max() <= HALF_BIN + 1e-6
            # observations: mu-law, back within half a bin in the mu-law domain
            o = np.stack(observation_tokens(tok))
            assert o.shape == obs.shape
            assert (o >= 32000).all() and (tok.modality[tok.loss_mask == 1] == 6).all()
            dec = decode_continuous(o, mu_law=True)
            clipped = np.clip(mu_law_transform(obs), -1, 1)
            assert np.abs(mu_law_transform(dec.astype(np.float64)) - clipped).max() <= (
                HALF_BIN + 1e-6)


# --- image-caption: COCO -------------------------------------------------------------------------

def test_coco_round_trip(catalog):
    root = FIX / "image_caption" / "coco"
    truth = json.loads((root / "ground_truth.json").read_text())
    captions = [c for rec in truth for c in rec["captions"]]
    text = train_text_model(captions, None, 32000, fit_vocab=True)
    settings = catalog.get("demo-coco-captions").tokenize
    tk = EpisodeTokenizer(settings, text)
    size = tuple(settings.image_size)
    for rec in truth[:8]:
        with Image.open(root / "train2017" / rec["file_name"]) as im:
            assert (im.width, im.height) == (rec["width"], rec["height"])
            pixels = np.asarray(im.convert("RGB") if im.mode != "L" else im)
        for cap in rec["captions"]:
            ep = episode(f"coco-{rec['image_id']}", {"image": pixels[None],
                                                     "caption": np.array([cap], dtype=object)},
                         {"image": "image", "caption": "text"}, np.zeros((1, 0), np.float32),
                         "none").validate()
            tok = tk.tokenize(ep).validate()
            n_patches = (size[0] // 16) * (size[1] // 16)
            assert (tok.modality[:n_patches] == Modality.IMAGE).all()
            assert text.decode(tok.tokens[n_patches:]) == cap  # the caption is the target
            assert (tok.loss_mask == (tok.modality == Modality.TEXT)).all()
            img = step_images(tok)[0]
            expected = resize_images(to_channels(pixels[None], 3), size)[0]
            assert (img == expected).all()
            pil = np.asarray(Image.fromarray(to_channels(pixels[None], 3)[0]).resize(
                (size[1], size[0]), Image.BILINEAR))
            assert np.abs(img.astype(int) - pil).max() <= 1


# --- robot: RLDS Jaco stacking --------------------------------------------------------------------

def test_rlds_round_trip(catalog):
    from trajcorpus.sources import open_source

    root = FIX / "robot_stacking" / "rlds"
    truth = json.loads((root / "ground_truth.json").read_text())
    eps = list(open_source("rlds", str(root / "dmc_jaco_stack_2_bricks_vision" / "1.0.0"))
               .episodes())
    assert len(eps) == truth["num_episodes"]
    text = train_text_model([e.text() for e in eps], None, 32000, fit_vocab=True)
    settings = catalog.get("demo-rlds").tokenize.model_copy(update={"mu_law_exempt": ()})
    tk = EpisodeTokenizer(settings, text)
    for ep, rec in list(zip(eps, truth["episodes"], strict=True))[:4]:
        image = ep.observations["image"]
        # the reader delivered the recorded pixels and actions (checked independently)
        assert hashlib.sha256(np.ascontiguousarray(image[0]).tobytes()).hexdigest() == (
            rec["first_image_sha256"])
        assert np.allclose(ep.actions[0], rec["first_action"])
        tok = tk.tokenize(ep).validate()
        n_text = len(text.encode(rec["instruction"]))
        assert text.decode(tok.tokens[:n_text]) == rec["instruction"]  # per-episode, step 0
        assert (tok.modality[n_text:tok.step_offsets[1]] != Modality.TEXT).all()
        # 9-dim actions (finger velocities up to +-5): mu-law, back within half a bin
        back = tk.decode_actions(tok)
        err = np.abs(mu_law_transform(back.astype(np.float64)) - mu_law_transform(ep.actions))
        assert back.shape == ep.actions.shape and err.max() <= HALF_BIN + 1e-6
        resized = resize_images(image, (80, 80))
        assert all((a == b).all() for a, b in zip(step_images(tok), resized, strict=True))
