"""The Multi-Game Decision Transformer token scheme (Lee et al. 2022, arXiv 2205.15241), every
constant of it in one place, and the tokenizer that turns an Atari episode into it.

Per timestep, in stream order (the reference's ``DecisionTransformer``: obs, return, action,
reward)::

    [36 frame-patch slots][return-to-go][action][reward]        39 tokens

- frame: 84x84 grayscale, cut into 6x6 patches of 14x14 in raster order, stored as pixels beside
  the tokens (``patches`` [36 per step, 14, 14, 1]) with their (row, col) in the 6x6 grid;
- return-to-go: the sum of the stored (clipped) rewards from this step to the episode's end,
  :func:`encode_return`;
- action: the full 18-action ALE index (``tokenizers.ale_actions``);
- reward: :func:`encode_reward`.

Each token id is local to its modality (return ids [0, 120), action ids [0, 18), reward ids
[0, 4)), as the reference embeds each kind with its own table; the ``modality`` code says which.
Loss targets: return-to-go, action and reward (the reference's three cross-entropy terms). docs/
tokenization.md ("Multi-Game Decision Transformer") documents the layout and the choices.
"""

from __future__ import annotations

import numpy as np

from ..errors import TokenizeError
from .ale_actions import to_full_action_set
from .images import resize_images, to_channels
from .scheme import MODALITY_NAMES as GATO_MODALITY_NAMES
from .scheme import NO_POSITION, PATCH_SLOT, Modality
from .tokenized import TokenizedEpisode

__all__ = [
    "FRAME_SIZE", "PATCH", "GRID", "NUM_PATCHES", "CHANNELS", "RETURN_RANGE", "NUM_RETURNS",
    "REWARD_NONE", "REWARD_POSITIVE", "REWARD_GAME_END", "REWARD_NEGATIVE", "NUM_REWARDS",
    "NUM_ACTIONS", "CONTEXT_STEPS", "TOKENS_PER_STEP", "RETURN_TO_GO", "REWARD", "MODALITY_NAMES",
    "returns_to_go", "encode_return", "decode_return", "encode_reward", "patchify_frames",
    "normalize_patches", "MgdtTokenizer", "validate", "layout_record",
]

FRAME_SIZE = (84, 84)  # (H, W) of a frame, as the DQN Replay Dataset stores it
PATCH = 14  # patch side: 84 / 14 = 6 patches per side
GRID = FRAME_SIZE[0] // PATCH  # 6
NUM_PATCHES = GRID * GRID  # 36 patch slots per timestep
CHANNELS = 1  # grayscale
RETURN_RANGE = (-20, 100)  # the reference's ATARI_RETURN_RANGE
NUM_RETURNS = RETURN_RANGE[1] - RETURN_RANGE[0]  # 120 return-to-go ids
# reward ids, the reference's encoding: 0 no reward, 1 positive, 3 negative; 2 ("game end") is
# the reference's own inference-time marker and never occurs in data
REWARD_NONE, REWARD_POSITIVE, REWARD_GAME_END, REWARD_NEGATIVE = 0, 1, 2, 3
NUM_REWARDS = 4
NUM_ACTIONS = 18  # ALE's full action set
CONTEXT_STEPS = 4  # timesteps per training sequence (the paper's context)
TOKENS_PER_STEP = NUM_PATCHES + 3
RETURN_TO_GO = 7  # modality codes beside Gato's 0..6 (PAD, IMAGE and ACTION are shared)
REWARD = 8
MODALITY_NAMES: tuple[str, ...] = GATO_MODALITY_NAMES + ("return_to_go", "reward")
_RET_COL, _ACT_COL, _REW_COL = NUM_PATCHES, NUM_PATCHES + 1, NUM_PATCHES + 2


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """float64 [T]: at step t, the sum of ``rewards[t:]`` (the rewards as stored, e.g. clipped)."""
    r = np.asarray(rewards, dtype=np.float64)
    return np.cumsum(r[::-1])[::-1]


def encode_return(ret, return_range: tuple[int, int] = RETURN_RANGE) -> np.ndarray:
    """Returns-to-go -> int32 ids in [0, hi - lo): truncate toward zero (the reference casts to
    int32), clip, shift by ``-lo``.

    The reference clips to [lo, hi] and so gives hi - lo (120) for returns >= 100, one past its
    120-row embedding, whose JAX lookup clamps it to 119. Clipping to hi - 1 stores that 119 and
    keeps every id inside the 120-id range.
    """
    lo, hi = return_range
    r = np.trunc(np.asarray(ret, dtype=np.float64))
    return (np.clip(r, lo, hi - 1) - lo).astype(np.int32)


def decode_return(ids, return_range: tuple[int, int] = RETURN_RANGE) -> np.ndarray:
    """Return-to-go ids -> the integer returns they stand for (id + lo), int32."""
    return (np.asarray(ids).astype(np.int32) + np.int32(return_range[0])).astype(np.int32)


def encode_reward(rew) -> np.ndarray:
    """Rewards -> int32 ids: 0 for 0, 1 for a positive reward, 3 for a negative one."""
    r = np.asarray(rew)
    return ((r > 0) * REWARD_POSITIVE + (r < 0) * REWARD_NEGATIVE).astype(np.int32)


def patchify_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 [T, 84, 84, 1] -> [T, 36, 14, 14, 1], patches in raster order."""
    t, h, w, c = frames.shape
    g = h // PATCH
    x = frames.reshape(t, g, PATCH, w // PATCH, PATCH, c).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(x).reshape(t, g * (w // PATCH), PATCH, PATCH, c)


def normalize_patches(patches: np.ndarray) -> np.ndarray:
    """The reference's pixel scaling for its patch embedding: float32 x / 255 (not Gato's)."""
    return np.asarray(patches, dtype=np.float32) / np.float32(255.0)


_MODALITY = np.array([Modality.IMAGE] * NUM_PATCHES + [RETURN_TO_GO, Modality.ACTION, REWARD],
                     dtype=np.uint8)
_LOSS = np.array([0] * NUM_PATCHES + [1, 1, 1], dtype=np.uint8)
_LOCAL = np.array(list(range(NUM_PATCHES)) + [NO_POSITION] * 3, dtype=np.int16)
_GRID_POS = np.stack(np.divmod(np.arange(NUM_PATCHES), GRID), axis=1).astype(np.int16)


class MgdtTokenizer:
    """Tokenizes whole episodes into the MGDT layout. Picklable (a Beam DoFn holds one).

    ``full_action_set`` maps the episode's actions (minimal-action-set indices of its game,
    found from the task name) to ALE's 18 actions; without it they must already be in [0, 18).
    ``resample`` is used only for frames that are not 84x84.
    """

    def __init__(self, full_action_set: bool = True, resample: str = "auto"):
        self.full_action_set = full_action_set
        self.resample = resample

    def frames(self, ep) -> np.ndarray:
        """The episode's one image observation as uint8 [T, 84, 84, 1]."""
        names = [n for n, k in ep.observation_kinds.items() if k == "image"]
        if len(names) != 1:
            raise TokenizeError(f"episode {ep.episode_id!r}", "the mgdt scheme needs exactly one "
                                f"image observation (the frame), found {len(names)}")
        x = to_channels(np.asarray(ep.observations[names[0]]), CHANNELS)
        if x.shape[1:3] != FRAME_SIZE:
            x = resize_images(x, FRAME_SIZE, self.resample)
        return x

    def actions(self, ep) -> np.ndarray:
        where = f"episode {ep.episode_id!r} field 'actions'"
        if ep.action_kind != "discrete" or np.asarray(ep.actions).ndim != 1:
            raise TokenizeError(where, "the mgdt scheme needs one discrete action per step, got "
                                f"{ep.action_kind} {np.asarray(ep.actions).shape}")
        if self.full_action_set:
            return to_full_action_set(ep.actions, ep.task)
        a = np.asarray(ep.actions).astype(np.int64)
        bad = (a < 0) | (a >= NUM_ACTIONS)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TokenizeError(where, f"action {int(a[i])} at step {i} is outside [0, "
                                f"{NUM_ACTIONS})")
        return a.astype(np.int32)

    def tokenize(self, ep) -> TokenizedEpisode:
        frames = self.frames(ep)
        t = frames.shape[0]
        if t != ep.length:
            raise TokenizeError(f"episode {ep.episode_id!r}", f"{t} frames for {ep.length} steps")
        tokens = np.full((t, TOKENS_PER_STEP), PATCH_SLOT, dtype=np.int32)
        tokens[:, _RET_COL] = encode_return(returns_to_go(ep.rewards))
        tokens[:, _ACT_COL] = self.actions(ep)
        tokens[:, _REW_COL] = encode_reward(ep.rewards)
        steps = np.arange(t + 1, dtype=np.int64)
        return TokenizedEpisode(
            tokens.reshape(-1), np.tile(_MODALITY, t), np.tile(_LOSS, t), np.tile(_LOCAL, t),
            steps * TOKENS_PER_STEP, patchify_frames(frames).reshape(-1, PATCH, PATCH, CHANNELS),
            np.tile(_GRID_POS, (t, 1)), steps * NUM_PATCHES)


def validate(tok: TokenizedEpisode, where: str = "mgdt episode") -> TokenizedEpisode:
    """Check the MGDT layout of a tokenized episode (or a span of whole timesteps)."""
    t = tok.num_steps
    n = t * TOKENS_PER_STEP
    if tok.tokens.shape != (n,) or (np.diff(tok.step_offsets) != TOKENS_PER_STEP).any():
        raise TokenizeError(where, f"every timestep must have {TOKENS_PER_STEP} tokens")
    if tok.patches.shape != (t * NUM_PATCHES, PATCH, PATCH, CHANNELS):
        raise TokenizeError(where, f"patches must be [{t * NUM_PATCHES}, {PATCH}, {PATCH}, "
                            f"{CHANNELS}], got {tok.patches.shape}")
    grid = tok.tokens.reshape(t, TOKENS_PER_STEP)
    if (tok.modality.reshape(t, -1) != _MODALITY).any() or (
            tok.loss_mask.reshape(t, -1) != _LOSS).any() or (
            tok.local_position.reshape(t, -1) != _LOCAL).any():
        raise TokenizeError(where, "modality, loss mask or local position off the MGDT layout")
    for col, hi, name in ((_RET_COL, NUM_RETURNS, "return-to-go"),
                          (_ACT_COL, NUM_ACTIONS, "action"), (_REW_COL, NUM_REWARDS, "reward")):
        if grid[:, col].min() < 0 or grid[:, col].max() >= hi:
            raise TokenizeError(where, f"{name} token outside [0, {hi})")
    if (grid[:, :NUM_PATCHES] != PATCH_SLOT).any():
        raise TokenizeError(where, f"patch slots must hold {PATCH_SLOT}")
    return tok


def layout_record(context_steps: int) -> dict:
    """The scheme's facts for the manifest: what a loader needs to read and batch its shards."""
    return {
        "scheme": "mgdt", "frame_size": list(FRAME_SIZE), "patch_size": [PATCH, PATCH],
        "channels": CHANNELS, "patches_per_step": NUM_PATCHES,
        "tokens_per_step": TOKENS_PER_STEP, "context_steps": context_steps,
        "step_layout": [f"{NUM_PATCHES} x image", "return_to_go", "action", "reward"],
        "return_range": list(RETURN_RANGE), "num_returns": NUM_RETURNS,
        "num_actions": NUM_ACTIONS, "num_rewards": NUM_REWARDS,
        "reward_ids": {"none": REWARD_NONE, "positive": REWARD_POSITIVE,
                       "game_end (never in data)": REWARD_GAME_END,
                       "negative": REWARD_NEGATIVE},
        "modalities": {str(i): name for i, name in enumerate(MODALITY_NAMES)},
        "loss_targets": ["return_to_go", "action", "reward"],
        "patch_normalization": "x / 255",
    }
