"""Continuous values -> tokens in [32000, 33024) and back (SPEC section 4; Gato section 2.1).

Encoding: optional mu-law companding F(x) = sgn(x) log(|x| mu + 1) / log(M mu + 1), clip to
[-1, 1], 1024 uniform bins over [-1, 1] with bin = floor((y + 1) / 2 * 1024) (so 1.0 -> 1023),
plus 32000. Decoding takes the bin centre and inverts the mu-law, so a trainer can turn predicted
action tokens back into environment actions.

Arithmetic runs in float64 for float64 (and integer) inputs and in float32 otherwise, so the bin
of a value is the SPEC formula evaluated in the precision the value is stored in. Every step is a
whole-array NumPy operation, done in place on one buffer.
"""

from __future__ import annotations

import numpy as np

from ..errors import TokenizeError
from .scheme import CONTINUOUS_OFFSET, MU, NUM_BINS, M

__all__ = [
    "MU_LAW_RANGE",
    "mu_law_transform",
    "inverse_mu_law",
    "encode_continuous",
    "decode_continuous",
    "bin_centres",
]

MU_LAW_RANGE = float(M)  # |x| <= 256 maps into [-1, 1] under F; larger values are clipped
_LOG_DENOM = float(np.log1p(M * MU))  # log(M mu + 1)
_HALF_BINS = NUM_BINS // 2  # (y + 1) / 2 * 1024 == y * 512 + 512 exactly (power-of-two scaling)


def _work_dtype(a: np.ndarray) -> type[np.floating]:
    return np.float64 if a.dtype == np.float64 or a.dtype.kind in "iu" else np.float32


def _as_numeric(x, field: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TokenizeError(f"field {field!r}", f"continuous values must be numeric, got {a.dtype}")
    return a


def mu_law_transform(x, *, dtype=None) -> np.ndarray:
    """F(x) = sgn(x) log(|x| mu + 1) / log(M mu + 1), elementwise, without clipping."""
    a = np.asarray(x)
    y = np.abs(a).astype(dtype or _work_dtype(a), copy=True)
    with np.errstate(over="ignore"):  # |x| mu beyond the float range is inf: F = +-1 after all
        y *= MU
    np.log1p(y, out=y)
    y /= _LOG_DENOM
    np.copysign(y, a, out=y)
    return y


def inverse_mu_law(y, *, dtype=np.float64) -> np.ndarray:
    """F^-1(y) = sgn(y) ((M mu + 1)^|y| - 1) / mu, elementwise."""
    b = np.asarray(y)
    x = np.abs(b).astype(dtype, copy=True)
    x *= _LOG_DENOM
    np.expm1(x, out=x)
    x /= MU
    np.copysign(x, b, out=x)
    return x


def encode_continuous(x, mu_law: bool = True, *, field: str = "value") -> np.ndarray:
    """Float array -> int32 tokens of the same shape, in [32000, 33024).

    ``mu_law=False`` is for fields already in [-1, 1] (e.g. normalised actions): they are only
    clipped. NaN is an error (a TokenizeError naming ``field`` and the index); +-inf clip.
    """
    a = _as_numeric(x, field)
    with np.errstate(over="ignore"):  # huge values overflow to +-inf, which then clip
        y = mu_law_transform(a) if mu_law else a.astype(_work_dtype(a), copy=True)
        # clip(y, -1, 1), floor((y + 1) * 512), min 1023 == floor(clip(y*512 + 512, 0, 1023))
        y *= _HALF_BINS
        y += _HALF_BINS
    np.clip(y, 0, NUM_BINS - 1, out=y)
    if np.isnan(y).any():
        idx = tuple(int(i) for i in np.argwhere(np.isnan(a))[0])
        raise TokenizeError(f"field {field!r}", f"NaN at index {idx} cannot be tokenized")
    tokens = y.astype(np.int32)  # truncation == floor: every value is >= 0 here
    tokens += CONTINUOUS_OFFSET
    return tokens


def bin_centres(dtype=np.float64) -> np.ndarray:
    """The 1024 bin centres in the clipped (post mu-law) domain [-1, 1]."""
    return ((np.arange(NUM_BINS, dtype=dtype) + 0.5) / _HALF_BINS - 1).astype(dtype)


def decode_continuous(tokens, mu_law: bool = True, *, field: str = "tokens") -> np.ndarray:
    """Tokens in [32000, 33024) -> float32 values at their bin centres (inverse mu-law if asked).

    ``mu_law`` must match the encoding. A token outside the continuous range is a TokenizeError.
    """
    t = np.asarray(tokens)
    if t.dtype.kind not in "iu":
        raise TokenizeError(f"field {field!r}", f"tokens must be integers, got {t.dtype}")
    if t.size:
        bad = (t < CONTINUOUS_OFFSET) | (t >= CONTINUOUS_OFFSET + NUM_BINS)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise TokenizeError(f"field {field!r}", f"token {int(t[idx])} at index {idx} is not "
                                f"a continuous token [{CONTINUOUS_OFFSET}, "
                                f"{CONTINUOUS_OFFSET + NUM_BINS})")
    y = bin_centres()[t.astype(np.int64) - CONTINUOUS_OFFSET]
    if mu_law:
        y = inverse_mu_law(y)
    return y.astype(np.float32)
