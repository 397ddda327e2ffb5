"""Discrete values -> tokens in [0, 1024) (SPEC section 4), with no silent wrap or clip.

A discrete value is its own token, sharing the low range with text as in Gato. Anything that is
not an integer in [0, 1024) is bad input: a :class:`TokenizeError` names the field, the first
offending value and its index, so a corrupt source is found rather than trained on.
"""

from __future__ import annotations

import numpy as np

from ..errors import TokenizeError
from .scheme import DISCRETE_LIMIT

__all__ = ["encode_discrete", "decode_discrete"]


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def encode_discrete(x, *, field: str = "value") -> np.ndarray:
    """Integer array -> int32 tokens of the same shape (the stream order is row-major).

    Accepts integer and bool arrays, and float arrays whose every value is a whole number (some
    sources store discrete actions as floats). Negative, too large, fractional or NaN values raise.
    """
    a = np.asarray(x)
    where = f"field {field!r}"
    if a.dtype.kind == "b":
        return a.astype(np.int32)
    if a.dtype.kind == "f":
        whole = np.isfinite(a) & (a == np.floor(a))
        if not whole.all():
            idx = _first(~whole)
            raise TokenizeError(where, f"discrete value {a[idx]!r} at index {idx} is not an "
                                "integer")
    elif a.dtype.kind not in "iu":
        raise TokenizeError(where, f"discrete values must be integers, got dtype {a.dtype}")
    if a.size:
        lo, hi = a.min(), a.max()
        if lo < 0 or hi >= DISCRETE_LIMIT:
            idx = _first((a < 0) | (a >= DISCRETE_LIMIT))
            value = a[idx].item()
            raise TokenizeError(where, f"discrete value {value!r} at index {idx} is outside "
                                f"[0, {DISCRETE_LIMIT}) (negative and large values are never "
                                "wrapped or clipped)")
    return a.astype(np.int32)


def decode_discrete(tokens, *, field: str = "tokens") -> np.ndarray:
    """Tokens -> int64 values; the inverse of :func:`encode_discrete` (checks the range)."""
    t = np.asarray(tokens)
    if t.dtype.kind not in "iu":
        raise TokenizeError(f"field {field!r}", f"tokens must be integers, got {t.dtype}")
    if t.size and (t.min() < 0 or t.max() >= DISCRETE_LIMIT):
        idx = _first((t < 0) | (t >= DISCRETE_LIMIT))
        raise TokenizeError(f"field {field!r}", f"token {int(t[idx])} at index {idx} is not a "
                            f"discrete token [0, {DISCRETE_LIMIT})")
    return t.astype(np.int64)
