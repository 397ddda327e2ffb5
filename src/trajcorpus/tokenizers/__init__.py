"""Gato's unified token scheme (SPEC section 4). Constants live in :mod:`.scheme`.

:class:`EpisodeTokenizer` turns a whole :class:`~trajcorpus.schemas.episode.Episode` into a
:class:`TokenizedEpisode`; the per-modality encoders below are its building blocks and part of
the public API. docs/tokenization.md describes every choice.
"""

from .continuous import (
    bin_centres,
    decode_continuous,
    encode_continuous,
    inverse_mu_law,
    mu_law_transform,
)
from .discrete import decode_discrete, encode_discrete
from .images import (
    default_image_size,
    normalize_patches,
    patch_grid,
    patchify,
    patchify_batch,
    resize_images,
    to_channels,
    unpatchify,
)
from .scheme import (
    CONTINUOUS_OFFSET,
    DISCRETE_LIMIT,
    MU,
    NUM_BINS,
    PATCH,
    PATCH_SLOT,
    SEPARATOR,
    TEXT_VOCAB_SIZE,
    VOCAB_SIZE,
    M,
    Modality,
)
from .text import TextTokenizer, train_text_model
from .timesteps import (
    EpisodeTokenizer,
    action_tokens,
    decode_actions,
    decode_mixed_actions,
    observation_tokens,
)
from .tokenized import TokenizedEpisode

__all__ = [
    "CONTINUOUS_OFFSET", "DISCRETE_LIMIT", "NUM_BINS", "PATCH", "PATCH_SLOT", "SEPARATOR",
    "TEXT_VOCAB_SIZE", "VOCAB_SIZE", "M", "MU", "Modality", "TokenizedEpisode",
    "encode_continuous", "decode_continuous", "mu_law_transform", "inverse_mu_law", "bin_centres",
    "encode_discrete", "decode_discrete",
    "patchify", "patchify_batch", "patch_grid", "unpatchify", "normalize_patches",
    "resize_images", "to_channels", "default_image_size",
    "TextTokenizer", "train_text_model",
    "EpisodeTokenizer", "decode_actions", "decode_mixed_actions", "action_tokens", "observation_tokens",
]
