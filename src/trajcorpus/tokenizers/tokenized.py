"""The tokenized form of one episode: flat token arrays plus the per-step offsets that let the
sequence builder cut windows at whole timesteps."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import TokenizeError
from .scheme import (
    CONTINUOUS_OFFSET,
    DISCRETE_LIMIT,
    NO_POSITION,
    NUM_BINS,
    PATCH,
    PATCH_SLOT,
    SEPARATOR,
    TEXT_VOCAB_SIZE,
    Modality,
)

__all__ = ["TokenizedEpisode"]

_DTYPES = {
    "tokens": np.int32, "modality": np.uint8, "loss_mask": np.uint8, "local_position": np.int16,
    "step_offsets": np.int64, "patches": np.uint8, "patch_position": np.int16,
    "patch_offsets": np.int64,
}
# token id range [lo, hi) allowed for each modality
_RANGES = {
    Modality.TEXT: (0, TEXT_VOCAB_SIZE),
    Modality.IMAGE: (PATCH_SLOT, PATCH_SLOT + 1),
    Modality.DISCRETE: (0, DISCRETE_LIMIT),
    Modality.CONTINUOUS: (CONTINUOUS_OFFSET, CONTINUOUS_OFFSET + NUM_BINS),
    Modality.SEPARATOR: (SEPARATOR, SEPARATOR + 1),
}


@dataclasses.dataclass
class TokenizedEpisode:
    """Parallel arrays over the N tokens of an episode, in stream order.

    ``step_offsets[t]:step_offsets[t+1]`` are the tokens of timestep t (length T+1), and
    ``patch_offsets[t]:patch_offsets[t+1]`` its rows of ``patches``/``patch_position``. For an
    image-caption record T == 1.
    """

    tokens: np.ndarray  # int32 [N]; PATCH_SLOT (-1) at image-patch slots
    modality: np.ndarray  # uint8 [N]
    loss_mask: np.ndarray  # uint8 [N]
    local_position: np.ndarray  # int16 [N]
    step_offsets: np.ndarray  # int64 [T+1]
    patches: np.ndarray  # uint8 [P, 16, 16, C]
    patch_position: np.ndarray  # int16 [P, 2]
    patch_offsets: np.ndarray  # int64 [T+1]

    @property
    def num_steps(self) -> int:
        return int(self.step_offsets.shape[0] - 1)

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])

    def span(self, start: int, stop: int) -> TokenizedEpisode:
        """Timesteps [start, stop) as a TokenizedEpisode of their own (views, no copies)."""
        a, b = int(self.step_offsets[start]), int(self.step_offsets[stop])
        pa, pb = int(self.patch_offsets[start]), int(self.patch_offsets[stop])
        return TokenizedEpisode(
            self.tokens[a:b], self.modality[a:b], self.loss_mask[a:b], self.local_position[a:b],
            self.step_offsets[start:stop + 1] - a, self.patches[pa:pb], self.patch_position[pa:pb],
            self.patch_offsets[start:stop + 1] - pa,
        )

    def validate(self, where: str = "tokenized episode") -> TokenizedEpisode:
        """Check the invariants every consumer relies on; raise TokenizeError naming the first
        broken one, return self otherwise. Vectorised: cheap enough to run on every episode."""

        def fail(reason: str) -> None:
            raise TokenizeError(where, reason)

        for name, dtype in _DTYPES.items():
            if getattr(self, name).dtype != dtype:
                fail(f"{name} must be {np.dtype(dtype)}, got {getattr(self, name).dtype}")
        n = self.tokens.shape[0]
        for name in ("modality", "loss_mask", "local_position"):
            if getattr(self, name).shape != (n,):
                fail(f"{name} has shape {getattr(self, name).shape}, tokens has ({n},)")
        so, po = self.step_offsets, self.patch_offsets
        if so.ndim != 1 or so.shape[0] < 2 or po.shape != so.shape:
            fail(f"step_offsets {so.shape} and patch_offsets {po.shape} must both be [T+1], T>=1")
        if so[0] != 0 or so[-1] != n or (np.diff(so) <= 0).any():
            fail("step_offsets must rise strictly from 0 to the token count")
        p = self.patches.shape[0]
        if po[0] != 0 or po[-1] != p or (np.diff(po) < 0).any():
            fail("patch_offsets must rise from 0 to the patch count")
        if self.patches.ndim != 4 or self.patches.shape[1:3] != (PATCH, PATCH):
            fail(f"patches must be [P, {PATCH}, {PATCH}, C], got {self.patches.shape}")
        if self.patch_position.shape != (p, 2):
            fail(f"patch_position must be [{p}, 2], got {self.patch_position.shape}")
        mod = self.modality
        slots = mod == Modality.IMAGE
        slot_counts = np.diff(np.concatenate(([0], np.cumsum(slots)))[so])
        if (slot_counts != np.diff(po)).any():
            t = int(np.flatnonzero(slot_counts != np.diff(po))[0])
            fail(f"timestep {t} has {slot_counts[t]} patch slots but {np.diff(po)[t]} patches")
        known = np.zeros(n, dtype=bool)
        for m, (lo, hi) in _RANGES.items():
            sel = mod == m
            known |= sel
            if sel.any():
                tk = self.tokens[sel]
                if tk.min() < lo or tk.max() >= hi:
                    fail(f"{m.name} token outside [{lo}, {hi})")
        act = mod == Modality.ACTION
        known |= act
        a = self.tokens[act]
        if ((a < 0) | ((a >= DISCRETE_LIMIT) & (a < CONTINUOUS_OFFSET))
                | (a >= CONTINUOUS_OFFSET + NUM_BINS)).any():
            fail("ACTION token neither discrete [0, 1024) nor continuous [32000, 33024)")
        if not known.all():
            i = int(np.flatnonzero(~known)[0])
            fail(f"token {i} has modality {int(mod[i])}, not one of the episode's modalities")
        target = (mod == Modality.TEXT) | (mod == Modality.ACTION)
        if (self.loss_mask != target).any():
            fail("loss_mask must be 1 exactly at text and action tokens")
        obs = (mod != Modality.SEPARATOR) & (mod != Modality.ACTION)
        if (self.local_position[~obs] != NO_POSITION).any():
            fail("separator and action tokens must have local position -1")
        if (self.local_position[obs] < 0).any():
            fail("observation tokens must have a local position >= 0")
        return self
