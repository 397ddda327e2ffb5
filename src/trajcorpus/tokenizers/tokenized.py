"""The tokenized form of one episode: flat token arrays plus the per-step offsets that let the
sequence builder cut windows at whole timesteps."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["TokenizedEpisode"]


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
