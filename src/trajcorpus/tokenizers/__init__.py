"""Gato's unified token scheme (SPEC section 4). Constants live in :mod:`.scheme`."""

from .scheme import (
    CONTINUOUS_OFFSET,
    DISCRETE_LIMIT,
    MU,
    NUM_BINS,
    PATCH,
    SEPARATOR,
    TEXT_VOCAB_SIZE,
    VOCAB_SIZE,
    M,
    Modality,
)
from .tokenized import TokenizedEpisode

__all__ = [
    "CONTINUOUS_OFFSET", "DISCRETE_LIMIT", "NUM_BINS", "PATCH", "SEPARATOR", "TEXT_VOCAB_SIZE",
    "VOCAB_SIZE", "M", "MU", "Modality", "TokenizedEpisode",
]
