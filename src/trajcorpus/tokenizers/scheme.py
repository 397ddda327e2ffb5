"""Every constant of the unified token scheme (SPEC section 4; Gato section 2.1), in one place."""

from __future__ import annotations

import enum

__all__ = [
    "TEXT_VOCAB_SIZE", "NUM_BINS", "DISCRETE_LIMIT", "CONTINUOUS_OFFSET", "SEPARATOR", "VOCAB_SIZE",
    "MU", "M", "PATCH", "PATCH_SLOT", "PAD_TOKEN", "NO_POSITION", "PATCH_NORM_DIVISOR", "Modality",
    "MODALITY_NAMES",
]

TEXT_VOCAB_SIZE = 32000  # SentencePiece ids live in [0, 32000)
NUM_BINS = 1024  # continuous values: uniform bins over [-1, 1]
DISCRETE_LIMIT = 1024  # discrete values in [0, 1024), sharing the low range with text
CONTINUOUS_OFFSET = 32000  # continuous tokens in [32000, 33024)
SEPARATOR = CONTINUOUS_OFFSET + NUM_BINS  # '|' between observation and action: 33024
VOCAB_SIZE = SEPARATOR + 1  # 33025 ids in all
MU = 100  # mu-law companding: F(x) = sgn(x) log(|x| mu + 1) / log(M mu + 1)
M = 256
PATCH = 16  # image patches are 16x16
PATCH_SLOT = -1  # token id at an image-patch slot (its pixels are in `patches`)
PAD_TOKEN = 0  # token id at padding (modality PAD, loss mask 0)
NO_POSITION = -1  # local position of separator, actions and padding
PATCH_NORM_DIVISOR = 4.0  # sqrt(PATCH): Gato's x / 255 * 2 - 1, then / sqrt(16)


class Modality(enum.IntEnum):
    """Per-token modality codes of the output's ``modality`` field (SPEC section 6)."""

    PAD = 0
    TEXT = 1
    IMAGE = 2
    DISCRETE = 3
    CONTINUOUS = 4
    SEPARATOR = 5
    ACTION = 6


# The audit's and the card's names for the modality codes, in code order (SPEC section 7).
MODALITY_NAMES: tuple[str, ...] = tuple(m.name.lower() for m in Modality)
