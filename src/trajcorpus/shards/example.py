"""The training example contract (SPEC section 6): field names, dtypes, shapes and checks.

An example is a dict with the eight SPEC fields plus ``"__key__"``, the unique sort key. The key
names tar members (``{key}.{field}.npy.zst``), so it is restricted to characters that are safe as
a WebDataset sample prefix and short enough for a USTAR header (:func:`safe_key` builds one from
any text).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np
import zstandard

from ..errors import ShardError
from ..tokenizers.scheme import PAD_TOKEN, PATCH_SLOT, Modality
from ..tokenizers.schemes import MAX_MODALITY, PATCH_SIZES

__all__ = [
    "EXAMPLE_FIELDS", "SEQUENCE_FIELDS", "FIELD_DTYPES", "KEY_MAX", "check_example",
    "example_nbytes", "safe_key", "example_tokens",
]

SEQUENCE_FIELDS = ("tokens", "modality", "loss_mask", "local_position", "is_prompt")
EXAMPLE_FIELDS = SEQUENCE_FIELDS + ("patches", "patch_position", "meta")
FIELD_DTYPES: dict[str, np.dtype] = {
    "tokens": np.dtype(np.int32),
    "modality": np.dtype(np.uint8),
    "loss_mask": np.dtype(np.uint8),
    "local_position": np.dtype(np.int16),
    "is_prompt": np.dtype(np.uint8),
    "patches": np.dtype(np.uint8),
    "patch_position": np.dtype(np.int16),
}
# USTAR names are at most 100 bytes; the longest member suffix is ".patch_position.npy.zst" (23).
KEY_MAX = 76
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_MAX_MODALITY = MAX_MODALITY  # the largest code of any token scheme (MGDT's reward, 8)


def _fail(key: Any, field: str, reason: str) -> ShardError:
    return ShardError(f"example {key!r} field {field!r}", reason)


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise _fail(key, "__key__", f"must be a str, got {type(key).__name__}")
    if not key or len(key) > KEY_MAX or not _KEY_RE.match(key):
        raise _fail(key, "__key__", f"must be 1..{KEY_MAX} characters of [A-Za-z0-9_-] "
                    "(no '.' or '/': WebDataset splits member names at them); use safe_key()")


def _check_array(key: str, ex: dict, field: str, ndim: int) -> np.ndarray:
    arr = ex[field]
    if not isinstance(arr, np.ndarray):
        raise _fail(key, field, f"must be a numpy array, got {type(arr).__name__}")
    want = FIELD_DTYPES[field]
    if arr.dtype != want:
        raise _fail(key, field, f"dtype {arr.dtype}, expected {want}")
    if arr.ndim != ndim:
        raise _fail(key, field, f"shape {arr.shape}, expected {ndim} dimensions")
    return arr


def check_example(ex: dict) -> None:
    """Raise ShardError naming the field and the reason unless ``ex`` follows SPEC section 6.

    Beyond dtypes and shapes it checks the cross-field invariants a trainer relies on: one patch
    per image slot, -1 at image slots, 0 tokens at padding, known modality codes, JSON-object meta.
    """
    if not isinstance(ex, dict):
        raise ShardError("example", f"must be a dict, got {type(ex).__name__}")
    key = ex.get("__key__")
    _check_key(key)
    missing = [f for f in EXAMPLE_FIELDS if f not in ex]
    if missing:
        raise _fail(key, missing[0], f"missing (an example needs {', '.join(EXAMPLE_FIELDS)})")
    seq = {f: _check_array(key, ex, f, 1) for f in SEQUENCE_FIELDS}
    length = seq["tokens"].shape[0]
    if length == 0:
        raise _fail(key, "tokens", "empty sequence")
    for f, arr in seq.items():
        if arr.shape[0] != length:
            raise _fail(key, f, f"length {arr.shape[0]}, tokens has {length}")
    patches = _check_array(key, ex, "patches", 4)
    side = patches.shape[1]  # the scheme's patch size (16 Gato, 14 MGDT): the shard carries it
    if patches.shape[2] != side or side not in PATCH_SIZES or not 1 <= patches.shape[3] <= 4:
        raise _fail(key, "patches", f"shape {patches.shape}, expected [P, S, S, C] with S in "
                    f"{sorted(PATCH_SIZES)} and C in 1..4")
    pos = _check_array(key, ex, "patch_position", 2)
    if pos.shape != (patches.shape[0], 2):
        raise _fail(key, "patch_position", f"shape {pos.shape}, expected ({patches.shape[0]}, 2)")
    modality = seq["modality"]
    if int(modality.max()) > _MAX_MODALITY:
        raise _fail(key, "modality", f"code {int(modality.max())} outside 0..{_MAX_MODALITY}")
    image = modality == Modality.IMAGE
    slots = int(np.count_nonzero(image))
    if slots != patches.shape[0]:
        raise _fail(key, "patches", f"{patches.shape[0]} patches for {slots} image-patch slots")
    tokens = seq["tokens"]
    if slots and np.any(tokens[image] != PATCH_SLOT):
        raise _fail(key, "tokens", f"image-patch slots must hold {PATCH_SLOT}")
    if np.any(tokens[modality == Modality.PAD] != PAD_TOKEN):
        raise _fail(key, "tokens", f"padding must hold {PAD_TOKEN}")
    for f in ("loss_mask", "is_prompt"):
        if int(seq[f].max()) > 1:
            raise _fail(key, f, "values must be 0 or 1")
    meta = ex["meta"]
    if not isinstance(meta, str):
        raise _fail(key, "meta", f"must be a JSON string, got {type(meta).__name__}")
    try:
        parsed = json.loads(meta)
    except ValueError as e:
        raise _fail(key, "meta", f"not valid JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise _fail(key, "meta", f"must be a JSON object, got {type(parsed).__name__}")


_ESTIMATOR = zstandard.ZstdCompressor(level=1)


def example_nbytes(ex: dict, fmt: str = "parquet") -> int:
    """Estimated encoded size of ``ex`` for sizing shards by a byte target.

    Pixels dominate and compress 10-100x depending on the domain, so raw sizes would mislead: the
    array bytes are compressed with zstd level 1 (several GB/s) as a stand-in for the writer's
    level. Both formats compress across neighbouring examples (Parquet pages, the tar shard's
    gzip stream), which a per-example estimate cannot see, so on Atari the estimate is 2.35x the
    Parquet bytes and 1.45x the ``.tar.gz`` bytes (on data that compresses less, e.g. photos,
    the gap closes): shards come out smaller than the target, never larger.
    """
    sizes = [len(_ESTIMATOR.compress(np.ascontiguousarray(ex[f]).data))
             for f in FIELD_DTYPES]
    sizes.append(len(ex["meta"].encode("utf-8")))
    from .codecs import get_codec  # here: the codec modules import this one

    return get_codec(fmt).estimate(sizes, ex["__key__"])


def example_tokens(ex: dict) -> int:
    """Token positions of an example (its sequence length L)."""
    return int(ex["tokens"].shape[0])


def safe_key(text: str) -> str:
    """A valid ``__key__`` from any text: kept as is when already valid, else the disallowed
    characters become '_' and a short hash of the original keeps distinct inputs distinct."""
    if text and len(text) <= KEY_MAX and _KEY_RE.match(text):
        return text
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
    cleaned = re.sub(r"[^A-Za-z0-9_\-]", "_", text)[: KEY_MAX - 13]
    return f"{cleaned}-{digest}" if cleaned else digest
