"""Examples -> one batch of arrays: fixed-length fields stacked, patches padded with counts.

Batch keys: ``tokens`` int32 [B, L], ``modality`` uint8, ``loss_mask`` uint8, ``local_position``
int16, ``is_prompt`` uint8 (all [B, L]; shorter sequences, which only a mixture of different L
produces, are padded as SPEC pads), ``patches`` uint8 [B, P, S, S, C] (S the patch size the
shards hold: 16 Gato, 14 MGDT; or float32 when normalised) zero beyond each example's ``patch_count`` int32 [B], ``patch_position`` int16
[B, P, 2] (-1 beyond the count), ``meta`` and ``__key__`` lists of str.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ShardError
from ..tokenizers.scheme import NO_POSITION, PAD_TOKEN
from ..tokenizers.schemes import scheme_by_patch_size
from .example import FIELD_DTYPES, SEQUENCE_FIELDS

__all__ = ["collate", "SEQUENCE_PAD"]

SEQUENCE_PAD = {"tokens": PAD_TOKEN, "modality": 0, "loss_mask": 0,
                "local_position": NO_POSITION, "is_prompt": 0}


def _stack_sequences(examples: Sequence[dict], field: str, length: int) -> np.ndarray:
    arrays = [ex[field] for ex in examples]
    if all(a.shape[0] == length for a in arrays):
        return np.stack(arrays)
    out = np.full((len(examples), length), SEQUENCE_PAD[field], dtype=FIELD_DTYPES[field])
    for i, a in enumerate(arrays):
        out[i, :a.shape[0]] = a
    return out


def collate(examples: Sequence[dict], *, pad_patches_to: int | None = None,
            channels: int | None = None, normalize: bool = False) -> dict:
    """Batch ``examples``.

    ``pad_patches_to`` fixes P (static shapes for JAX/XLA; an example with more patches is an
    error), else P is the batch maximum. ``channels`` fixes C; grayscale patches are repeated to
    3 channels when a batch mixes C=1 and C=3 domains (Atari with COCO). ``normalize`` applies
    the patches' scheme's pixel scaling (Gato's x / 255 * 2 - 1, / 4 for 16x16 patches; MGDT's
    x / 255 for 14x14 ones) and keeps padding at 0.
    """
    if not examples:
        raise ShardError("collate", "empty batch")
    length = max(ex["tokens"].shape[0] for ex in examples)
    batch: dict = {f: _stack_sequences(examples, f, length) for f in SEQUENCE_FIELDS}
    counts = np.array([ex["patches"].shape[0] for ex in examples], dtype=np.int32)
    chans = {int(ex["patches"].shape[3]) for ex in examples}
    c = channels or max(chans)
    if any(k != c and not (k == 1 and c == 3) for k in chans):
        raise ShardError("collate", f"cannot batch patches with {sorted(chans)} channels "
                         f"as {c} (only grayscale -> RGB is converted)")
    p = int(counts.max()) if pad_patches_to is None else int(pad_patches_to)
    if counts.max() > p:
        worst = examples[int(counts.argmax())]["__key__"]
        raise ShardError(f"example {worst!r} field 'patches'",
                         f"{int(counts.max())} patches exceed pad_patches_to={p}")
    sides = {tuple(ex["patches"].shape[1:3]) for ex in examples}  # read from the shards
    if len(sides) > 1:
        raise ShardError("collate", f"cannot batch patches of sizes {sorted(sides)} (token "
                         "schemes differ); batch each config on its own")
    ph, pw = sides.pop()
    # empty + explicit padding: zero-filling the whole buffer first costs a pass over memory
    patches = np.empty((len(examples), p, ph, pw, c), dtype=np.uint8)
    position = np.empty((len(examples), p, 2), dtype=np.int16)
    for i, ex in enumerate(examples):
        n = counts[i]
        patches[i, :n] = ex["patches"]  # broadcasts C=1 over 3 channels
        patches[i, n:] = 0
        position[i, :n] = ex["patch_position"]
        position[i, n:] = NO_POSITION
    if normalize:
        patches = scheme_by_patch_size(ph).normalize_patches(patches)
        valid = np.arange(p)[None, :] < counts[:, None]
        patches[~valid] = 0.0
    batch["patches"] = patches
    batch["patch_count"] = counts
    batch["patch_position"] = position
    batch["meta"] = [ex["meta"] for ex in examples]
    batch["__key__"] = [ex["__key__"] for ex in examples]
    return batch
