"""Training sequences of exactly L tokens (SPEC section 5; Gato section 2.3).

Control episodes are cut into windows of whole timesteps; a window drawn to carry a prompt leaves
room for the prompt budget, so no timestep is ever cut or dropped and the concatenation of an
episode's windows is the episode. Vision-language records are packed ``vl_pairs`` at a time,
concatenated, then cropped or padded to L. Padding is token 0, modality 0, loss mask 0, local
position -1, always at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import TokenizeError
from ..tokenizers.scheme import NO_POSITION, PAD_TOKEN, PATCH_SLOT, Modality
from ..tokenizers.tokenized import TokenizedEpisode

__all__ = ["Window", "step_sizes", "cut_windows", "concat_tokenized", "join_steps", "assemble",
           "pack_vl", "SequenceArrays"]


@dataclasses.dataclass(frozen=True)
class Window:
    """Timesteps [start, stop) of one episode, window number ``index``."""

    index: int
    start: int
    stop: int
    wants_prompt: bool  # room for the prompt budget was left in this window


def step_sizes(tok: TokenizedEpisode) -> np.ndarray:
    return np.diff(np.asarray(tok.step_offsets, dtype=np.int64))


def cut_windows(sizes: np.ndarray, length: int, prompt_budget: int,
                wants_prompt: Callable[[int], bool], episode_id: str) -> list[Window]:
    """Greedy whole-timestep windows of at most ``length`` tokens (``length - prompt_budget`` for
    windows drawn to carry a prompt; a window whose first step does not fit that goes without)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size and int(sizes.max()) > length:
        t = int(np.argmax(sizes))
        raise TokenizeError(f"episode {episode_id!r}", f"timestep {t} has {int(sizes[t])} tokens, "
                            f"more than the sequence length L={length}; raise sequence.length")
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    windows: list[Window] = []
    start, index, n = 0, 0, sizes.size
    while start < n:
        prompt = prompt_budget > 0 and wants_prompt(index)
        cap = length - prompt_budget if prompt else length
        if prompt and sizes[start] > cap:
            prompt, cap = False, length
        stop = int(np.searchsorted(offsets, offsets[start] + cap, side="right")) - 1
        windows.append(Window(index, start, stop, prompt))
        start, index = stop, index + 1
    return windows


def concat_tokenized(parts: Sequence[TokenizedEpisode]) -> TokenizedEpisode:
    """Consecutive spans joined back into one (offsets re-based)."""
    if len(parts) == 1:
        return parts[0]
    tok_base = np.cumsum([0] + [p.num_tokens for p in parts[:-1]])
    patch_base = np.cumsum([0] + [p.patches.shape[0] for p in parts[:-1]])
    step_offsets = np.concatenate(
        [parts[0].step_offsets[:1]] + [p.step_offsets[1:] + b for p, b in zip(parts, tok_base, strict=True)])
    patch_offsets = np.concatenate(
        [parts[0].patch_offsets[:1]] + [p.patch_offsets[1:] + b for p, b in zip(parts, patch_base, strict=True)])
    return TokenizedEpisode(
        np.concatenate([p.tokens for p in parts]), np.concatenate([p.modality for p in parts]),
        np.concatenate([p.loss_mask for p in parts]),
        np.concatenate([p.local_position for p in parts]), step_offsets,
        np.concatenate([p.patches for p in parts]),
        np.concatenate([p.patch_position for p in parts]), patch_offsets)


def join_steps(parts: Sequence[tuple[int, TokenizedEpisode]], start: int, stop: int
               ) -> TokenizedEpisode:
    """Timesteps [start, stop) of an episode from its consecutive windows, given as (first step,
    tokens): each window is cut to the asked steps before joining, so only those are copied."""
    spans = []
    for first, tok in parts:
        a, b = max(start, first), min(stop, first + tok.num_steps)
        if a < b:
            spans.append(tok.span(a - first, b - first))
    if sum(p.num_steps for p in spans) != stop - start or not spans:
        raise TokenizeError(f"steps [{start}, {stop})", "the windows given do not cover them")
    return concat_tokenized(spans)


@dataclasses.dataclass
class SequenceArrays:
    """The array fields of one output example (SPEC section 6)."""

    tokens: np.ndarray
    modality: np.ndarray
    loss_mask: np.ndarray
    local_position: np.ndarray
    is_prompt: np.ndarray
    patches: np.ndarray
    patch_position: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """The fields by name, the arrays themselves (``dataclasses.asdict`` would deep-copy)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _pad(x: np.ndarray, n: int, value: int, dtype) -> np.ndarray:
    out = np.full(n, value, dtype=dtype)
    out[: x.shape[0]] = x
    return out


def _check_slots(tok: np.ndarray, modality: np.ndarray, num_patches: int, where: str) -> None:
    slots = int(np.count_nonzero(modality == Modality.IMAGE))
    if slots != num_patches:
        raise TokenizeError(where, f"{slots} image-patch slots but {num_patches} patches")
    marked = int(np.count_nonzero(tok == PATCH_SLOT))
    if marked != slots:
        raise TokenizeError(where, f"{marked} tokens hold the patch slot id {PATCH_SLOT} but "
                            f"{slots} have the image modality")


def assemble(window: TokenizedEpisode, prompt: TokenizedEpisode | None, length: int,
             where: str = "sequence") -> SequenceArrays:
    """[prompt][window][padding] as exactly ``length`` tokens; prompt tokens get loss mask 0."""
    parts = [prompt, window] if prompt is not None else [window]
    n_prompt = prompt.num_tokens if prompt is not None else 0
    total = sum(p.num_tokens for p in parts)
    if total > length:
        raise TokenizeError(where, f"{total} tokens do not fit in L={length}")

    def cat(name: str, dtype) -> np.ndarray:  # one part: no copy
        arrays = [getattr(p, name) for p in parts]
        out = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        return out.astype(dtype, copy=False)

    tokens, modality = cat("tokens", np.int32), cat("modality", np.uint8)
    mask = cat("loss_mask", np.uint8)
    if n_prompt:
        mask = mask.copy()
        mask[:n_prompt] = 0
    local = cat("local_position", np.int16)
    patches, positions = cat("patches", np.uint8), cat("patch_position", np.int16)
    _check_slots(tokens, modality, patches.shape[0], where)
    is_prompt = np.zeros(length, dtype=np.uint8)
    is_prompt[:n_prompt] = 1
    return SequenceArrays(
        _pad(tokens, length, PAD_TOKEN, np.int32), _pad(modality, length, Modality.PAD, np.uint8),
        _pad(mask, length, 0, np.uint8), _pad(local, length, NO_POSITION, np.int16), is_prompt,
        np.ascontiguousarray(patches), np.ascontiguousarray(positions))


def pack_vl(records: Sequence[TokenizedEpisode], length: int) -> tuple[TokenizedEpisode, bool]:
    """Image-caption records concatenated in the given order, cropped to ``length`` tokens.

    Returns the packed tokens (one pseudo-timestep) and whether anything was cropped; patches of
    cropped slots are dropped with them.
    """
    joined = concat_tokenized(records)
    n = joined.num_tokens
    cropped = n > length
    if cropped:
        keep_patches = int(np.count_nonzero(joined.modality[:length] == Modality.IMAGE))
        joined = TokenizedEpisode(
            joined.tokens[:length], joined.modality[:length], joined.loss_mask[:length],
            joined.local_position[:length], np.array([0, length], dtype=np.int64),
            joined.patches[:keep_patches], joined.patch_position[:keep_patches],
            np.array([0, keep_patches], dtype=np.int64))
    else:
        joined = dataclasses.replace(
            joined, step_offsets=np.array([0, n], dtype=np.int64),
            patch_offsets=np.array([0, joined.patches.shape[0]], dtype=np.int64))
    return joined, cropped
