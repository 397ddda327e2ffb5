"""The cursor VPT's data loader draws on GUI-open frames (the recorder's video has none).

A 16x16 arrow sprite, alpha-blended with its top-left corner at ``int(x * scale), int(y * scale)``
where ``scale = frame height / 720`` (mouse x/y are in 1280x720 window pixels), clipped at the
right and bottom edges, ``frame * (1 - a) + sprite * a`` truncated to uint8, on the frame at its
recorded size (before any resize, as the reference does). The sprite here is drawn by
:func:`cursor_sprite` (a black-outlined white arrow in the same 16x16 box, alpha only in rows 0-15
and columns 0-10 as in the reference's image); the reference's PNG is not copied. Decoding itself
is the shared :meth:`.video.VideoReader.steps`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cursor_sprite", "draw_cursor", "WINDOW_HEIGHT"]

WINDOW_HEIGHT = 720  # the game window's height; mouse x/y are in these pixels


def cursor_sprite() -> tuple[np.ndarray, np.ndarray]:
    """(rgb [16, 16, 3] float64, alpha [16, 16, 1] float64 in [0, 1]): an arrow whose tip is the
    top-left pixel, white inside a one-pixel black outline."""
    r, c = np.mgrid[0:16, 0:16]
    head = (c <= r) & (r <= 11) & (c <= 10) & (c + r <= 21) | ((c <= 2) & (r <= 15))
    stem = (r >= 10) & (r <= 15) & (c >= (r - 10) // 2 + 3) & (c <= (r - 10) // 2 + 5)
    shape = head | stem
    inner = np.zeros_like(shape)
    inner[1:-1, 1:-1] = (shape[1:-1, 1:-1] & shape[:-2, 1:-1] & shape[2:, 1:-1]
                         & shape[1:-1, :-2] & shape[1:-1, 2:])
    rgb = np.where(inner[..., None], 255.0, 0.0).repeat(3, axis=2)
    alpha = shape[..., None].astype(np.float64)
    return rgb, alpha


_SPRITE = cursor_sprite()


def draw_cursor(frame: np.ndarray, x: float, y: float) -> None:
    """Blend the cursor into ``frame`` (uint8 [H, W, 3], in place) at window position (x, y)."""
    h, w = frame.shape[:2]
    scale = h / WINDOW_HEIGHT
    x0, y0 = int(x * scale), int(y * scale)
    rgb, alpha = _SPRITE
    # clip at every edge (the reference only meets the right and bottom ones)
    sx0, sy0 = max(0, -x0), max(0, -y0)
    x1, y1 = min(w, x0 + 16), min(h, y0 + 16)
    if x1 <= max(x0, 0) or y1 <= max(y0, 0):
        return
    region = frame[max(y0, 0):y1, max(x0, 0):x1]
    a = alpha[sy0:sy0 + region.shape[0], sx0:sx0 + region.shape[1]]
    c = rgb[sy0:sy0 + region.shape[0], sx0:sx0 + region.shape[1]]
    region[...] = (region * (1.0 - a) + c * a).astype(np.uint8)
