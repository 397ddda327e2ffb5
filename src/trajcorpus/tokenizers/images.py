"""Images -> 16x16 uint8 patches in raster order, with their (row, col) grid positions.

Whole-episode operations: channel conversion, resizing and patchifying all take a ``[T, H, W, C]``
stack and never loop per pixel (the one loop is over chunks of frames, to bound memory).

Channel rule (documented in docs/tokenization.md): ``[T, H, W]`` and ``C == 1`` stay grayscale
(C = 1); RGB stays RGB; RGBA (and gray+alpha) is alpha-composited over white, the way a browser
shows a transparent image, so it becomes RGB (gray). ``channels=1`` or ``3`` forces a count: RGB ->
gray uses ITU-R 601-2 luma with PIL's integer rounding, gray -> RGB replicates the plane. Palette
and 16-bit images never reach here: :mod:`trajcorpus.sources.imagecodec` decodes them to RGB(A)/L.

Resampling methods (``resize_images``):

- ``"nearest"``: index-based (PIL's NEAREST sampling points). When the ratio is close to 1, the
  kept rows/columns form a few contiguous runs that are copied as slices, which is as fast as a
  plain copy; this is what makes Atari's 84x84 -> 80x80 cheap.
- ``"bilinear"``: antialiased triangle filter (PIL's BILINEAR weights, support scaled by the
  downscale factor), applied as two matrix products with precomputed weight matrices, in exact
  fixed-point arithmetic so results never depend on BLAS or batching.
- ``"box"``: PIL's BOX filter (each output averages the inputs whose centres it covers), same
  machinery.
- ``"auto"`` (the default): identity when the size already matches; ``"nearest"`` when every
  resized side shrinks by at most 10% (84 -> 80: one row in 21 is skipped, never two neighbouring
  ones, so every feature at least 2 pixels wide survives and no new pixel value is invented);
  ``"bilinear"`` otherwise (photos, upscaling).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ..errors import TokenizeError
from .scheme import PATCH, PATCH_NORM_DIVISOR

__all__ = [
    "RESAMPLE_METHODS",
    "NEAREST_MIN_RATIO",
    "default_image_size",
    "to_channels",
    "resize_images",
    "resample_method",
    "resize_weights",
    "patchify",
    "patchify_batch",
    "resize_patchify",
    "patch_grid",
    "unpatchify",
    "normalize_patches",
]

RESAMPLE_METHODS = ("auto", "nearest", "bilinear", "box")
NEAREST_MIN_RATIO = 0.9  # "auto" uses nearest when out/in >= this on every resized side
_CHUNK_ELEMENTS = 1 << 20  # float32 working set per chunk of frames (4 MiB)
_MAX_RUNS = 16  # copy index runs as slices up to this many, else np.take
_WEIGHT_ONE = 1 << 16  # fixed-point resampling weights: integers scaled by 2**16
_BAND = 32  # outputs per banded GEMM block


def default_image_size(height: int, width: int) -> tuple[int, int]:
    """The rule for ``TokenizeSettings.image_size = None``: each side rounded down to a multiple
    of 16 (84x84 -> 80x80, 640x480 -> 640x480), at least 16."""
    return max(PATCH, height // PATCH * PATCH), max(PATCH, width // PATCH * PATCH)


# --- channels -----------------------------------------------------------------------------------

def _composite_over_white(x: np.ndarray) -> np.ndarray:
    """[..., C+1] colour+alpha -> [..., C]: round(c * a / 255 + 255 * (1 - a / 255)), in uint16."""
    colour = x[..., :-1].astype(np.uint16)
    alpha = x[..., -1:].astype(np.uint16)
    colour *= alpha
    colour += 255 * (255 - alpha)  # <= 65025 in all: fits uint16
    colour += 127
    colour //= 255
    return colour.astype(np.uint8)


def _luma(x: np.ndarray) -> np.ndarray:
    """RGB -> L with PIL's integer ITU-R 601-2 weights (R 0.299, G 0.587, B 0.114)."""
    w = np.array([19595, 38470, 7471], dtype=np.uint32)
    y = x.astype(np.uint32) @ w
    y += 0x8000
    y >>= 16
    return y.astype(np.uint8)[..., None]


def to_channels(images: np.ndarray, channels: int | None = None, *,
                field: str = "image") -> np.ndarray:
    """[T, H, W] or [T, H, W, C] uint8 -> [T, H, W, C'] with C' = 1 or 3 (see the module doc)."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise TokenizeError(f"field {field!r}", f"images must be uint8, got {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 2, 3, 4):
        raise TokenizeError(f"field {field!r}", "images must be [T, H, W] or [T, H, W, C] with C "
                            f"in 1..4, got shape {tuple(np.shape(images))}")
    if x.shape[-1] in (2, 4):
        x = _composite_over_white(x)
    if channels is None or channels == x.shape[-1]:
        return x
    if channels == 1:
        return _luma(x)
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    raise TokenizeError(f"field {field!r}", f"channels must be 1 or 3, got {channels}")


# --- resizing -----------------------------------------------------------------------------------

def _box(x: np.ndarray) -> np.ndarray:
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - np.abs(x))


_FILTERS = {"box": (_box, 0.5), "bilinear": (_triangle, 1.0)}


@functools.lru_cache(maxsize=64)
def _filter_weights(n_in: int, n_out: int, method: str) -> np.ndarray:
    fn, support = _FILTERS[method]
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    support *= fscale
    centre = (np.arange(n_out, dtype=np.float64) + 0.5) * scale
    lo = np.clip(np.trunc(centre - support + 0.5), 0, n_in)
    hi = np.clip(np.trunc(centre + support + 0.5), 0, n_in)
    j = np.arange(n_in, dtype=np.float64)
    w = fn((j[None, :] + 0.5 - centre[:, None]) / fscale)
    w *= (j[None, :] >= lo[:, None]) & (j[None, :] < hi[:, None])
    total = w.sum(axis=1, keepdims=True)
    w /= np.where(total == 0, 1.0, total)
    w.flags.writeable = False
    return w


def resize_weights(n_in: int, n_out: int, method: str) -> np.ndarray:
    """The [n_out, n_in] resampling matrix of one axis (float64, rows sum to 1).

    Output pixel i samples the filter around centre (i + 0.5) * n_in / n_out with its support
    widened by the downscale factor (antialiasing), PIL's formulation. PIL rounds these weights
    to 2**22 and we to 2**16, so results agree with ``PIL.Image.resize`` to within one grey level
    per resized axis (2 when both sides change; the reason is in docs/tokenization.md).
    """
    return _filter_weights(n_in, n_out, method).copy()


@functools.lru_cache(maxsize=64)
def _fixed_weights(n_in: int, n_out: int, method: str) -> np.ndarray:
    """The [n_out, n_in] weights as integers scaled by 2**16 (held in float32), each row summing
    to exactly 2**16 (its largest weight absorbs the rounding), so constants stay constant."""
    w = np.rint(_filter_weights(n_in, n_out, method) * _WEIGHT_ONE)
    w[np.arange(n_out), np.argmax(w, axis=1)] += _WEIGHT_ONE - w.sum(axis=1)
    w = w.astype(np.float32)
    w.flags.writeable = False
    return w


@functools.lru_cache(maxsize=64)
def _bands(n_in: int, n_out: int, method: str) -> tuple[tuple[int, int, int, int], ...]:
    """Blocks (out_lo, out_hi, in_lo, in_hi) of _BAND outputs and the input window they read.

    The filters are banded, so a block of outputs only needs a short window of inputs: one GEMM
    per block skips the zeros of a dense product (5x less work for 640 -> 192). A single block
    covering everything when banding would not pay.
    """
    nz = _fixed_weights(n_in, n_out, method) != 0
    first = np.argmax(nz, axis=1)
    last = n_in - np.argmax(nz[:, ::-1], axis=1)
    blocks = tuple((a, min(a + _BAND, n_out), int(first[a:a + _BAND].min()),
                    int(last[a:a + _BAND].max())) for a in range(0, n_out, _BAND))
    if sum(b - a for _, _, a, b in blocks) * 2 > n_in * len(blocks):  # windows > half the input
        return ((0, n_out, 0, n_in),)
    return blocks


def _width_pass(f: np.ndarray, n_out: int, method: str) -> np.ndarray:
    """[n, H, W, C] -> [n, H, C, w]: resample the last spatial axis, banded GEMMs."""
    n, h, w_in, c = f.shape
    g = np.ascontiguousarray(f.transpose(0, 1, 3, 2)).reshape(n * h * c, w_in)
    weights = _fixed_weights(w_in, n_out, method)
    out = np.empty((n * h * c, n_out), dtype=np.float32)
    for a, b, lo, hi in _bands(w_in, n_out, method):
        np.matmul(g[:, lo:hi], weights[a:b, lo:hi].T, out=out[:, a:b])
    return out.reshape(n, h, c, n_out)


def _height_pass(f: np.ndarray, n_out: int, method: str) -> np.ndarray:
    """[n, H, C, w] -> [h, n, C, w]: resample the rows, banded GEMMs over all columns at once."""
    n, h_in, c, w = f.shape
    g = np.ascontiguousarray(f.transpose(1, 0, 2, 3)).reshape(h_in, n * c * w)
    weights = _fixed_weights(h_in, n_out, method)
    out = np.empty((n_out, n * c * w), dtype=np.float32)
    for a, b, lo, hi in _bands(h_in, n_out, method):
        np.matmul(weights[a:b, lo:hi], g[lo:hi], out=out[a:b])
    return out.reshape(n_out, n, c, w)


@functools.lru_cache(maxsize=64)
def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    idx = np.floor((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def _runs(idx: np.ndarray) -> list[tuple[int, int, int]]:
    """(out_start, in_start, length) of maximal runs where idx increases by exactly 1."""
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate(([0], breaks))
    stops = np.concatenate((breaks, [idx.shape[0]]))
    return [(int(a), int(idx[a]), int(b - a)) for a, b in zip(starts, stops, strict=True)]


def _take(x: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    """``np.take(x, idx, axis)``, as a few block copies when idx is a few contiguous runs.

    Each run is copied as one strided array of opaque items (a run of ``n`` slices along
    ``axis`` with every later axis folded in is one ``n * rest``-byte item), so NumPy moves whole
    blocks instead of iterating over short inner rows or a trailing channel axis of size 1.
    """
    runs = _runs(idx)
    if len(runs) > _MAX_RUNS:
        return np.take(x, idx, axis=axis)
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape[:axis] + (idx.shape[0],) + x.shape[axis + 1:], dtype=x.dtype)
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    rest = x.itemsize * int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    if lead == 0 or rest == 0:
        return out
    stride_in, stride_out = x.shape[axis] * rest, idx.shape[0] * rest
    for o, i, n in runs:
        item = np.dtype((np.void, n * rest))
        src = np.ndarray((lead,), dtype=item, buffer=x, offset=i * rest, strides=(stride_in,))
        dst = np.ndarray((lead,), dtype=item, buffer=out, offset=o * rest, strides=(stride_out,))
        dst[...] = src
    return out


def _resize_nearest(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if h != x.shape[1]:
        x = _take(x, _nearest_index(x.shape[1], h), 1)
    if w != x.shape[2]:
        x = _take(x, _nearest_index(x.shape[2], w), 2)
    return x


def _resize_filtered(x: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """Separable filtered resize as two float32 GEMMs in exact fixed-point arithmetic.

    Weights are integers scaled by 2**16 that sum to 2**16 per output, pixels are integers in
    [0, 255], and the width pass is rounded back to integers in [0, 255] before the height pass
    (as PIL does). Every product and partial sum is then an integer below 255 * 2**16 < 2**24,
    which float32 represents exactly: the result does not depend on BLAS kernels, summation
    order, threads or how many frames share a chunk, so the corpus stays byte-reproducible.
    """
    t, hi, wi, c = x.shape
    h, w = size
    out = np.empty((t, h, w, c), dtype=np.uint8)
    step = max(1, _CHUNK_ELEMENTS // max(1, hi * wi * c))
    for s in range(0, t, step):
        f = x[s:s + step].astype(np.float32)  # [n, H, W, C]
        # width pass: one GEMM over all rows of the chunk -> [n, H, C, w], rounded to integers
        if w != wi:
            f = _width_pass(f, w, method)
            _round_scaled(f)
        else:
            f = f.transpose(0, 1, 3, 2)
        # height pass: one GEMM over all columns of the chunk -> [h, n, C, w]
        if h != hi:
            f = _height_pass(f, h, method)
            _round_scaled(f)
        else:
            f = f.transpose(1, 0, 2, 3)
        np.copyto(out[s:s + step], f.transpose(1, 0, 3, 2), casting="unsafe")
    return out


def _round_scaled(f: np.ndarray) -> None:
    """In place: an exact integer at scale 2**16 -> the nearest integer (half up) in [0, 255]."""
    f *= 1.0 / _WEIGHT_ONE  # a power of two: exact
    f += 0.5
    np.floor(f, out=f)
    np.clip(f, 0.0, 255.0, out=f)


def resample_method(in_size: tuple[int, int], out_size: tuple[int, int],
                    method: str = "auto") -> str:
    """The concrete method "auto" picks for this pair of sizes ("identity" when they match)."""
    if method not in RESAMPLE_METHODS:
        raise TokenizeError("resize", f"unknown method {method!r} (known: {RESAMPLE_METHODS})")
    if tuple(in_size) == tuple(out_size):
        return "identity"
    if method != "auto":
        return method
    ratios = [o / i for i, o in zip(in_size, out_size, strict=True) if i != o]
    return "nearest" if all(NEAREST_MIN_RATIO <= r < 1.0 for r in ratios) else "bilinear"


def resize_images(images: np.ndarray, size: Sequence[int], method: str = "auto") -> np.ndarray:
    """Resize a stack ``[T, H, W]`` or ``[T, H, W, C]`` (uint8) to ``size = (h, w)``.

    Returns the input itself when the size already matches. Output has the input's ndim.
    """
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise TokenizeError("resize", f"expected uint8 [T, H, W(, C)], got {x.dtype} {x.shape}")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise TokenizeError("resize", f"target size must be positive, got {(h, w)}")
    chosen = resample_method(x.shape[1:3], (h, w), method)
    if chosen == "identity":
        return x
    x4 = x if x.ndim == 4 else x[..., None]
    if chosen == "nearest":
        y = _resize_nearest(x4, (h, w))
    else:
        y = _resize_filtered(x4, (h, w), chosen)
    return y if x.ndim == 4 else y[..., 0]


# --- patches ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _grid(rows: int, cols: int) -> np.ndarray:
    r, c = np.divmod(np.arange(rows * cols, dtype=np.int16), np.int16(cols))
    g = np.stack([r, c], axis=1).astype(np.int16)
    g.flags.writeable = False
    return g


def patch_grid(height: int, width: int) -> np.ndarray:
    """int16 [P, 2] (row, col) of each 16x16 patch of an image, raster order."""
    return _grid(height // PATCH, width // PATCH)


def _check_sides(h: int, w: int) -> None:
    if h % PATCH or w % PATCH or h == 0 or w == 0:
        raise TokenizeError("patchify", f"image sides must be positive multiples of {PATCH}, "
                            f"got {h}x{w} (resize first)")


def patchify_batch(images: np.ndarray) -> np.ndarray:
    """[T, H, W, C] uint8 -> [T, P, 16, 16, C] (one copy; P = H/16 * W/16, raster order).

    One patch row (16 pixels x C bytes) is viewed as a single opaque item, so the transposing
    copy moves 16*C-byte blocks rather than single bytes: about 4x faster than a uint8 transpose.
    """
    t, h, w, c = images.shape
    _check_sides(h, w)
    gh, gw = h // PATCH, w // PATCH
    x = np.ascontiguousarray(images).reshape(t, h, w * c)
    rows = x.view(np.dtype((np.void, PATCH * c))).reshape(t, gh, PATCH, gw)
    out = np.ascontiguousarray(rows.transpose(0, 1, 3, 2))  # [T, gh, gw, 16] patch rows
    return out.view(np.uint8).reshape(t, gh * gw, PATCH, PATCH, c)


def resize_patchify(images: np.ndarray, size: Sequence[int], method: str = "auto") -> np.ndarray:
    """``patchify_batch(resize_images(images, size, method))``: [T, H, W, C] -> [T, P, 16, 16, C]."""
    x = np.asarray(images)
    _check_sides(int(size[0]), int(size[1]))
    return patchify_batch(resize_images(x if x.ndim == 4 else x[..., None], size, method))


def patchify(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HxW or HxWxC uint8 image (sides multiples of 16) -> (patches uint8 [P, 16, 16, C],
    positions int16 [P, 2] as (row, col) in the patch grid, raster order)."""
    x = np.asarray(image)
    if x.dtype != np.uint8 or x.ndim not in (2, 3):
        raise TokenizeError("patchify", f"expected a uint8 HxW or HxWxC image, got {x.dtype} "
                            f"{x.shape}")
    x = x[None, ..., None] if x.ndim == 2 else x[None]
    patches = patchify_batch(x)[0]
    return patches, patch_grid(x.shape[1], x.shape[2]).copy()


def unpatchify(patches: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The inverse of :func:`patchify`: patches at their (row, col) -> one HxWxC image."""
    p = np.asarray(patches)
    pos = np.asarray(positions).astype(np.int64)
    if p.ndim != 4 or p.shape[1:3] != (PATCH, PATCH) or pos.shape != (p.shape[0], 2):
        raise TokenizeError("unpatchify", f"expected [P, 16, 16, C] patches and [P, 2] positions, "
                            f"got {p.shape} and {pos.shape}")
    if p.shape[0] == 0:
        raise TokenizeError("unpatchify", "no patches")
    gh, gw = int(pos[:, 0].max()) + 1, int(pos[:, 1].max()) + 1
    out = np.zeros((gh, PATCH, gw, PATCH, p.shape[3]), dtype=p.dtype)
    out[pos[:, 0], :, pos[:, 1]] = p
    return out.reshape(gh * PATCH, gw * PATCH, p.shape[3])


def normalize_patches(patches: np.ndarray) -> np.ndarray:
    """Gato's trainer-side normalisation: x / 255 * 2 - 1, then divided by sqrt(16) = 4.

    uint8 [0, 255] -> float32 [-0.25, 0.25]. The corpus stores raw uint8; this is for trainers.
    """
    x = np.asarray(patches).astype(np.float32)
    x /= 255.0
    x *= 2.0
    x -= 1.0
    x /= PATCH_NORM_DIVISOR
    return x
