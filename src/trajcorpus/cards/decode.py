"""Turn one stored example back into what a person recognises: frames, actions, captions.

This is the card's evidence that the tokens mean what they should, so it decodes with the same
public inverses a trainer would use (``decode_continuous``) and reassembles images from the stored
patch grid positions, never from any knowledge of how the sequence was built.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import ShardError
from ..tokenizers import decode_continuous
from ..tokenizers.mgdt import REWARD as MGDT_REWARD
from ..tokenizers.scheme import CONTINUOUS_OFFSET, PATCH, Modality

__all__ = ["DecodedStep", "DecodedSequence", "decode_example", "assemble_images",
           "decode_continuous_tokens"]


@dataclasses.dataclass
class DecodedStep:
    """One timestep (or one image-caption pair) of a sequence."""

    is_prompt: bool
    images: list[np.ndarray]  # uint8 [H, W, C] each
    text_tokens: np.ndarray  # int32
    text: str | None  # decoded caption / instruction when a text model is available
    continuous_obs: np.ndarray  # float32 decoded observation values
    discrete_obs: np.ndarray  # int32
    actions: np.ndarray  # float32 (continuous) or int32 (discrete)
    action_kind: str  # "continuous", "discrete", "mixed" or "none"


@dataclasses.dataclass
class DecodedSequence:
    meta: dict[str, Any]
    steps: list[DecodedStep]
    length: int  # L
    pad: int  # padding tokens at the end
    obs_mu_law: bool = True  # how continuous values were decoded
    action_mu_law: bool = True


def decode_continuous_tokens(tokens: np.ndarray, mu_law: bool) -> np.ndarray:
    """The tokenizer's inverse (bin centre, inverse mu-law) through its public function."""
    tokens = np.asarray(tokens, dtype=np.int32)
    return np.asarray(decode_continuous(tokens, mu_law=mu_law), dtype=np.float32)


def assemble_images(patches: np.ndarray, positions: np.ndarray) -> list[np.ndarray]:
    """Images from patches in slot order: a new image starts where the grid position is (0, 0)."""
    if len(patches) == 0:
        return []
    positions = np.asarray(positions, dtype=np.int64)
    starts = np.flatnonzero((positions[:, 0] == 0) & (positions[:, 1] == 0))
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    bounds = np.append(starts, len(patches))
    images = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        rows, cols = positions[a:b, 0], positions[a:b, 1]
        gh, gw = int(rows.max()) + 1, int(cols.max()) + 1
        c = patches.shape[-1] if patches.ndim == 4 else 1
        s = patches.shape[1] if patches.ndim == 4 else PATCH  # the scheme's patch size
        grid = np.zeros((gh, gw, s, s, c), dtype=np.uint8)
        grid[rows, cols] = patches[a:b].reshape(b - a, s, s, c)
        images.append(grid.transpose(0, 2, 1, 3, 4).reshape(gh * s, gw * s, c))
    return images


def _field(ex: Mapping[str, Any], name: str, dtype: Any) -> np.ndarray:
    if name not in ex:
        raise ShardError(str(ex.get("__key__", "<example>")), f"missing field {name!r}")
    return np.asarray(ex[name]).astype(dtype, copy=False)


def _step_starts(modality: np.ndarray, is_prompt: np.ndarray) -> np.ndarray:
    """Token indices where a new timestep (or image-caption pair) begins."""
    n = len(modality)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    prev = np.concatenate([[-1], modality[:-1]])
    prev_prompt = np.concatenate([[is_prompt[0]], is_prompt[:-1]])
    new = prev == Modality.ACTION
    new &= (modality != Modality.ACTION) & (modality != MGDT_REWARD)
    new |= (prev == MGDT_REWARD) & (modality != MGDT_REWARD)  # an MGDT step ends with its reward
    if not (modality == Modality.SEPARATOR).any():  # image-caption records: [image][caption]
        new |= (modality == Modality.IMAGE) & (prev == Modality.TEXT)
    new |= is_prompt != prev_prompt
    new[0] = True
    return np.flatnonzero(new)


def decode_example(ex: Mapping[str, Any], *, obs_mu_law: bool = True, action_mu_law: bool = True,
                   text_decoder: Callable[[list[int]], str] | None = None) -> DecodedSequence:
    """Split an example into timesteps and decode each one.

    ``obs_mu_law``/``action_mu_law`` are the dataset's tokenize settings (actions listed in
    ``mu_law_exempt`` were only clipped, so they decode without the inverse mu-law).
    """
    tokens = _field(ex, "tokens", np.int64)
    modality = _field(ex, "modality", np.int64)
    is_prompt = _field(ex, "is_prompt", np.int64) if "is_prompt" in ex else np.zeros_like(tokens)
    patches = np.asarray(ex.get("patches", np.zeros((0, PATCH, PATCH, 1), np.uint8)), np.uint8)
    positions = np.asarray(ex.get("patch_position", np.zeros((0, 2), np.int16)), np.int64)
    meta = ex.get("meta") or {}
    if isinstance(meta, (bytes, str)):
        meta = json.loads(meta)
    content = np.flatnonzero(modality != Modality.PAD)
    end = int(content[-1]) + 1 if len(content) else 0
    # patch k belongs to the k-th image slot of the sequence
    slot_index = np.cumsum(modality == Modality.IMAGE) - 1
    starts = _step_starts(modality[:end], is_prompt[:end])
    bounds = np.append(starts, end)
    has_sep = bool((modality == Modality.SEPARATOR).any())
    steps = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        m, t = modality[a:b], tokens[a:b]
        img = m == Modality.IMAGE
        if img.any():
            idx = slot_index[a:b][img]
            images = assemble_images(patches[idx], positions[idx])
        else:
            images = []
        text_tokens = t[m == Modality.TEXT].astype(np.int32)
        act = t[m == Modality.ACTION]
        if len(act) and (act >= CONTINUOUS_OFFSET).all():
            actions, kind = decode_continuous_tokens(act, action_mu_law), "continuous"
        elif len(act) and (act >= CONTINUOUS_OFFSET).any():  # mixed: ids, then continuous
            cont = act >= CONTINUOUS_OFFSET
            actions, kind = act.astype(np.float32), "mixed"
            actions[cont] = decode_continuous_tokens(act[cont], action_mu_law)
        elif len(act):
            actions, kind = act.astype(np.int32), "discrete"
        else:
            actions, kind = np.zeros(0, np.float32), "none" if not has_sep else "discrete"
        steps.append(DecodedStep(
            is_prompt=bool(is_prompt[a]), images=images, text_tokens=text_tokens,
            text=text_decoder(text_tokens.tolist()) if text_decoder and len(text_tokens) else None,
            continuous_obs=decode_continuous_tokens(t[m == Modality.CONTINUOUS], obs_mu_law),
            discrete_obs=t[m == Modality.DISCRETE].astype(np.int32),
            actions=actions, action_kind=kind,
        ))
    return DecodedSequence(meta=dict(meta), steps=steps, length=len(tokens),
                           pad=len(tokens) - end, obs_mu_law=obs_mu_law,
                           action_mu_law=action_mu_law)
