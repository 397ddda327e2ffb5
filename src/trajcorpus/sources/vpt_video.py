"""Sequential PyAV decoding of one VPT recording's video, with the recorder's cursor drawn in.

Kept small on purpose (one forward pass, one preallocated output array, nothing else held), so it
can later be folded into the shared video decoder. Memory is the output array plus one decoded
frame, whatever the recording's length: frames are converted to RGB only when their step is kept,
and never listed.

The cursor (VPT's ``data_loader.py`` draws it on GUI-open frames, since the recorder's video has
none): a 16x16 arrow sprite, alpha-blended with its top-left corner at ``int(x * scale),
int(y * scale)`` where ``scale = frame height / 720`` (mouse x/y are in 1280x720 window pixels),
clipped at the right and bottom edges, ``frame * (1 - a) + sprite * a`` truncated to uint8. The
sprite here is drawn by :func:`cursor_sprite` (a black-outlined white arrow in the same 16x16 box,
alpha only in rows 0-15 and columns 0-10 as in the reference's image); the reference's PNG is not
copied.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import fs
from ..errors import SourceError

__all__ = ["cursor_sprite", "draw_cursor", "decode_frames", "WINDOW_HEIGHT"]

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


def _open(uri: str):
    import av

    if fs.is_local(uri):
        return av.open(fs.local_path(uri))
    return av.open(fs.open_uri(uri, "rb", cache_type="readahead"))


def decode_frames(uri: str, n_lines: int, keep: np.ndarray, cursors: Sequence[tuple[int, float,
                  float]], size: tuple[int, int] | None) -> np.ndarray:
    """Frames ``i < n_lines`` with ``keep[i]`` as uint8 RGB [K, H, W, 3], in order.

    ``cursors`` lists (line, x, y) for GUI-open lines (drawn before any resize). ``size`` (H, W)
    resizes with swscale's bilinear filter (VPT uses 128x128); None keeps the recorded size.
    Frames after line ``n_lines - 1`` are never read (they have no action). A video with fewer
    frames than lines, or one PyAV cannot decode, is a SourceError naming the file.
    """
    import av
    from av.video.reformatter import VideoReformatter

    # one reformatter per input kind, reused: PyAV's frame.reformat/to_ndarray build a new
    # swscale context per frame, which costs a third of the conversion at 640x360
    convert = _Convert(VideoReformatter(), VideoReformatter(), VideoReformatter(), size)
    where = {int(i): (x, y) for i, x, y in cursors}
    kept = np.flatnonzero(keep)
    out: np.ndarray | None = None
    j = 0
    n = 0
    try:
        with _open(uri) as container:
            if not container.streams.video:
                raise SourceError(uri, "the file has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if n >= n_lines:
                    break
                if keep[n]:
                    if out is None:
                        h, w = size if size is not None else (frame.height, frame.width)
                        out = np.empty((len(kept), h, w, 3), dtype=np.uint8)
                    out[j] = convert(frame, where.get(n))
                    j += 1
                n += 1
    except av.FFmpegError as e:
        raise SourceError(uri, f"cannot decode the video at frame {n}: {e}") from None
    except OSError as e:
        raise SourceError(uri, f"cannot read the video: {e}") from None
    if n < n_lines:
        raise SourceError(uri, f"the video has {n} frames but the jsonl has {n_lines} lines "
                          "(frame i is line i): a truncated video")
    if out is None:
        return np.zeros((0, *(size or (0, 0)), 3), dtype=np.uint8)
    return out


class _Convert:
    """A decoded frame -> RGB uint8 [H, W, 3] at ``size``, with the cursor drawn if given."""

    def __init__(self, video, full, drawn, size: tuple[int, int] | None):
        # swscale contexts, each kept for one conversion: decoded -> output size, decoded ->
        # recorded size (to draw the cursor on), cursor frame -> output size
        self.video, self.full, self.drawn = video, full, drawn
        self.kw = {} if size is None else {"width": size[1], "height": size[0],
                                           "interpolation": "BILINEAR"}

    def __call__(self, frame, cursor: tuple[float, float] | None) -> np.ndarray:
        import av

        if cursor is None:
            return self.video.reformat(frame, format="rgb24", **self.kw).to_ndarray()
        img = self.full.reformat(frame, format="rgb24").to_ndarray()
        draw_cursor(img, *cursor)
        if not self.kw:
            return img
        return self.drawn.reformat(av.VideoFrame.from_ndarray(img, format="rgb24"),
                                   format="rgb24", **self.kw).to_ndarray()
