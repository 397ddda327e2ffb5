"""Tokenization throughput per core: EpisodeTokenizer vs a straightforward NumPy baseline.

Run by hand (never in CI):

    .venv/bin/python bench/tokenization.py [--atari-steps 200000] [--mujoco-steps 2000000]

Data: the bundled fixtures (real frames and actions): Pong DQN Replay frames (84x84 grayscale,
discrete actions) and HalfCheetah Minari rollouts (17-dim float64 observations, 6-dim float32
actions), cut into 1000-step episodes and repeated up to the requested step counts.

Both sides produce the same token stream (checked before timing): the baseline is the plain
per-step NumPy code one would write first (per-frame index resize + reshape/transpose patchify,
per-step np.log mu-law formula, per-step concatenation of the parallel arrays).
BLAS and OpenMP are pinned to one thread, so the figures are per core.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from trajcorpus.schemas.catalog import TokenizeSettings  # noqa: E402
from trajcorpus.schemas.episode import Episode  # noqa: E402
from trajcorpus.tokenizers import (  # noqa: E402
    EpisodeTokenizer,
    TokenizedEpisode,
    train_text_model,
)
from trajcorpus.tokenizers.images import _nearest_index  # noqa: E402
from trajcorpus.tokenizers.scheme import (  # noqa: E402
    CONTINUOUS_OFFSET,
    MU,
    NUM_BINS,
    PATCH,
    SEPARATOR,
    M,
    Modality,
)

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures"
EPISODE_STEPS = 1000


def _npy_gz(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)


def atari_episodes(steps: int) -> list[Episode]:
    logs = FIX / "atari_dqn_replay" / "Pong" / "1" / "replay_logs"
    frames = _npy_gz(logs / "$store$_observation_ckpt.0.gz")
    actions = _npy_gz(logs / "$store$_action_ckpt.0.gz")
    n = frames.shape[0] // EPISODE_STEPS
    eps = []
    for i in range(-(-steps // EPISODE_STEPS)):
        s = (i % n) * EPISODE_STEPS
        eps.append(_episode(f"pong-{i}", {"frame": frames[s:s + EPISODE_STEPS]}, {"frame": "image"},
                            actions[s:s + EPISODE_STEPS], "discrete"))
    return eps


def mujoco_episodes(steps: int) -> list[Episode]:
    path = FIX / "mujoco" / "minari" / "trajcorpus-fixtures" / "halfcheetah" / "mixed-v0" / "data"
    with h5py.File(path / "main_data.hdf5", "r") as f:
        keys = sorted(f, key=lambda k: int(k.split("_")[1]))
        obs = np.concatenate([f[k]["observations"][:-1] for k in keys])
        act = np.concatenate([f[k]["actions"][:] for k in keys])
    n = obs.shape[0] // EPISODE_STEPS
    eps = []
    for i in range(-(-steps // EPISODE_STEPS)):
        s = (i % n) * EPISODE_STEPS
        eps.append(_episode(f"cheetah-{i}", {"obs": obs[s:s + EPISODE_STEPS]},
                            {"obs": "continuous"}, act[s:s + EPISODE_STEPS], "continuous"))
    return eps


def coco_records(n: int) -> list[Episode]:
    """Caption records from the 20 COCO fixture photos (decoded once, RGB), repeated to n."""
    root = FIX / "image_caption" / "coco"
    truth = json.loads((root / "ground_truth.json").read_text())
    photos = []
    for rec in truth:
        with Image.open(root / "train2017" / rec["file_name"]) as im:
            photos.append((np.asarray(im.convert("RGB")), rec["captions"][0]))
    eps = []
    for i in range(n):
        px, cap = photos[i % len(photos)]
        eps.append(_episode(f"coco-{i}", {"image": px[None], "caption": np.array([cap], object)},
                            {"image": "image", "caption": "text"}, np.zeros((1, 0), np.float32),
                            "none"))
    return eps


def _episode(eid, obs, kinds, actions, kind) -> Episode:
    t = actions.shape[0]
    return Episode("bench", "bench", "bench", eid, (0,), obs, kinds, actions, kind,
                   np.zeros(t, np.float32), False, True, 0.0, {"uri": "fixture"})


# --- the straightforward baseline ---------------------------------------------------------------

def _baseline_mu_law_tokens(x: np.ndarray, mu_law: bool) -> np.ndarray:
    x = x.astype(np.float64)
    if mu_law:
        x = np.sign(x) * np.log(np.abs(x) * MU + 1.0) / np.log(M * MU + 1.0)
    x = np.clip(x, -1.0, 1.0)
    b = np.floor((x + 1.0) / 2.0 * NUM_BINS).astype(np.int64)
    return (np.minimum(b, NUM_BINS - 1) + CONTINUOUS_OFFSET).astype(np.int32)


def baseline_atari(ep: Episode, size: tuple[int, int]) -> TokenizedEpisode:
    frames = ep.observations["frame"]
    rows = _nearest_index(frames.shape[1], size[0])
    cols = _nearest_index(frames.shape[2], size[1])
    gh, gw = size[0] // PATCH, size[1] // PATCH
    grid = np.stack(np.divmod(np.arange(gh * gw), gw), axis=1).astype(np.int16)
    toks, mods, locs, patches, positions, offs = [], [], [], [], [], [0]
    for t in range(ep.length):
        img = frames[t][rows][:, cols]
        p = img.reshape(gh, PATCH, gw, PATCH).transpose(0, 2, 1, 3).reshape(-1, PATCH, PATCH, 1)
        n = p.shape[0]
        toks.append(np.concatenate([np.full(n, -1), [SEPARATOR], [int(ep.actions[t])]]))
        mods.append(np.concatenate([np.full(n, Modality.IMAGE), [Modality.SEPARATOR],
                                    [Modality.ACTION]]))
        locs.append(np.concatenate([np.arange(n), [-1, -1]]))
        patches.append(p)
        positions.append(grid)
        offs.append(offs[-1] + n + 2)
    mod = np.concatenate(mods).astype(np.uint8)
    return TokenizedEpisode(
        np.concatenate(toks).astype(np.int32), mod,
        ((mod == Modality.TEXT) | (mod == Modality.ACTION)).astype(np.uint8),
        np.concatenate(locs).astype(np.int16), np.array(offs, np.int64),
        np.stack(patches).reshape(-1, PATCH, PATCH, 1), np.concatenate(positions),
        np.arange(ep.length + 1, dtype=np.int64) * gh * gw)


def baseline_mujoco(ep: Episode) -> TokenizedEpisode:
    obs = ep.observations["obs"]
    toks, mods, locs, offs = [], [], [], [0]
    for t in range(ep.length):
        o = _baseline_mu_law_tokens(obs[t], True)
        a = _baseline_mu_law_tokens(ep.actions[t], False)
        toks.append(np.concatenate([o, [SEPARATOR], a]))
        mods.append(np.concatenate([np.full(o.size, Modality.CONTINUOUS), [Modality.SEPARATOR],
                                    np.full(a.size, Modality.ACTION)]))
        locs.append(np.concatenate([np.arange(o.size), np.full(a.size + 1, -1)]))
        offs.append(offs[-1] + o.size + 1 + a.size)
    mod = np.concatenate(mods).astype(np.uint8)
    return TokenizedEpisode(
        np.concatenate(toks).astype(np.int32), mod,
        ((mod == Modality.TEXT) | (mod == Modality.ACTION)).astype(np.uint8),
        np.concatenate(locs).astype(np.int16), np.array(offs, np.int64),
        np.zeros((0, PATCH, PATCH, 3), np.uint8), np.zeros((0, 2), np.int16),
        np.zeros(ep.length + 1, np.int64))


# --- timing -------------------------------------------------------------------------------------

def _same(a: TokenizedEpisode, b: TokenizedEpisode) -> None:
    for name in ("tokens", "modality", "loss_mask", "local_position", "step_offsets", "patches",
                 "patch_position", "patch_offsets"):
        x, y = getattr(a, name), getattr(b, name)
        if x.shape != y.shape or not np.array_equal(x, y):
            raise SystemExit(f"baseline and tokenizer disagree on {name}")


def _time(fn, episodes, repeat: int) -> tuple[float, float]:
    """Best-of-``repeat`` (wall seconds, CPU seconds) for fn over all episodes, best by CPU time:
    on a shared machine wall time also counts other processes' turns on the core."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        for ep in episodes:
            fn(ep)
        w, c = time.perf_counter() - w, time.process_time() - c
        if c < best[1]:
            best = (w, c)
    return best


def _row(name: str, steps: int, wall: float, cpu: float, base_cpu: float | None) -> str:
    ratio = f"{base_cpu / cpu:.1f}x" if base_cpu else "1.0x (baseline)"
    return (f"| {name} | {steps:,} | {cpu:.3f} | {wall:.3f} | {steps / cpu:,.0f} | "
            f"{steps / wall:,.0f} | {ratio} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atari-steps", type=int, default=200_000)
    ap.add_argument("--mujoco-steps", type=int, default=2_000_000)
    ap.add_argument("--photos", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"Python {platform.python_version()}, NumPy {np.__version__}")
    print(f"load average before the run: {os.getloadavg()[0]:.2f}")
    print("| workload | steps | CPU s | wall s | steps/s per core (CPU) | steps/s (wall) | "
          "vs baseline (CPU) |")
    print("|---|---|---|---|---|---|---|")

    atari = atari_episodes(args.atari_steps)
    steps = sum(e.length for e in atari)
    settings = TokenizeSettings(image_size=(80, 80))
    fast = EpisodeTokenizer(settings)  # resample "auto" -> nearest for 84 -> 80
    filt = EpisodeTokenizer(settings, resample="bilinear")
    _same(fast.tokenize(atari[0]), baseline_atari(atari[0], (80, 80)))
    bw, bc = _time(lambda e: baseline_atari(e, (80, 80)), atari, 1)
    print(_row("Atari 84x84 -> 80x80, discrete action: baseline (per frame)", steps, bw, bc, None))
    w, c = _time(fast.tokenize, atari, args.repeat)
    print(_row("Atari: EpisodeTokenizer, resample auto (= nearest)", steps, w, c, bc))
    w, c = _time(filt.tokenize, atari, args.repeat)
    print(_row("Atari: EpisodeTokenizer, resample bilinear (antialiased)", steps, w, c, bc))

    cheetah = mujoco_episodes(args.mujoco_steps)
    steps = sum(e.length for e in cheetah)
    tok = EpisodeTokenizer(TokenizeSettings(mu_law=True, mu_law_exempt=("actions",)))
    _same(tok.tokenize(cheetah[0]), baseline_mujoco(cheetah[0]))
    base_eps = cheetah[: max(1, len(cheetah) // 20)]  # the baseline is slow: time 1/20, scale up
    bw, bc = _time(baseline_mujoco, base_eps, 1)
    scale = steps / sum(e.length for e in base_eps)
    bw, bc = bw * scale, bc * scale
    print(_row("MuJoCo 17-dim obs (mu-law) + 6-dim actions: baseline (per step)", steps, bw, bc,
               None))
    w, c = _time(tok.tokenize, cheetah, args.repeat)
    print(_row("MuJoCo: EpisodeTokenizer", steps, w, c, bc))

    photos = coco_records(args.photos)
    text = train_text_model([e.text() for e in photos[:20]], None, 32000, fit_vocab=True)
    vl = EpisodeTokenizer(TokenizeSettings(image_size=(192, 192)), text)
    w, c = _time(vl.tokenize, photos, args.repeat)
    print(_row("COCO fixture photos (102x102 to 640x640 RGB) -> 192x192 + caption, records",
               len(photos), w, c, None).replace("1.0x (baseline)", "-"))


if __name__ == "__main__":
    main()
