"""Frame decoding for readers whose camera streams are video files (LeRobot, VPT), with PyAV.

PyAV's wheels carry their own FFmpeg (AV1 through libdav1d, H.264, HEVC), so no system FFmpeg is
needed. The API is small on purpose:

* :func:`open_video` opens a local, ``gs://`` or ``hf://`` file (through :mod:`trajcorpus.fs`)
  as a :class:`VideoReader` (a context manager).
* :meth:`VideoReader.frames` (callable again on the same reader, any order) seeks to the keyframe at or before ``start`` and yields
  ``(time, HxWx3 uint8 RGB)`` for the frames presented in ``[start, end)``, in presentation
  order (B-frames are reordered by the decoder; frames are never counted in decode order).
* :meth:`VideoReader.frames_at` returns the frames for given row timestamps: each row gets the
  frame whose presentation time is nearest, and must lie within ``tolerance`` (half a frame
  period is the rule for rows recorded at the video's rate), else :class:`VideoError` names the
  file and the first unmatched time. It also counts the frames presented in a ``span`` so a
  reader can check "one frame per row".

Memory is the output array plus the decoder's few reference frames: decoding starts at the
nearest keyframe before the first wanted time and stops at the first frame past the last one, so a
file holding many episodes back to back is never decoded whole. Resizing is not done here (the
tokenizer resizes).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from fractions import Fraction
from typing import IO, Any

import numpy as np

from .. import fs
from ..errors import SourceError, one_line

__all__ = ["VideoError", "VideoReader", "VideoStream", "open_video", "EPSILON"]

EPSILON = 1e-6  # seconds: float sums of timestamps (2.1333333333333333) are compared with this


class VideoError(SourceError):
    """A video file cannot give the frames asked for (missing, truncated, too short)."""


@dataclasses.dataclass(frozen=True)
class VideoStream:
    """What the container says about its first video stream."""

    codec: str
    width: int
    height: int
    fps: float | None  # average frame rate, None when the container does not say
    time_base: Fraction
    duration: float | None  # seconds, None when unknown


class VideoReader:
    """One open video file; use :func:`open_video`. Not thread-safe (one decoder)."""

    def __init__(self, uri: str):
        import av  # imported here: only video readers need it

        self.uri = uri
        self._av = av
        self._file: IO[bytes] | None = None
        self._used = False
        try:
            if fs.is_local(uri):
                self._container = av.open(fs.local_path(uri), "r")
            else:
                self._file = fs.open_uri(uri, "rb", cache_type="readahead")
                self._container = av.open(self._file, "r")
        except FileNotFoundError:
            self.close()
            raise VideoError(uri, "missing video file") from None
        except (av.FFmpegError, OSError, ValueError) as e:
            self.close()
            raise VideoError(uri, f"cannot open video: {_reason(e)}") from None
        if not self._container.streams.video:
            self.close()
            raise VideoError(uri, "no video stream in the file")
        self._stream = self._container.streams.video[0]
        s = self._stream
        tb = s.time_base or Fraction(1, 1)
        duration = float(s.duration * tb) if s.duration else (
            self._container.duration / 1e6 if self._container.duration else None)
        rate = s.average_rate or s.guessed_rate
        self.info = VideoStream(codec=s.codec_context.name, width=int(s.codec_context.width),
                                height=int(s.codec_context.height),
                                fps=float(rate) if rate else None, time_base=Fraction(tb),
                                duration=duration)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if getattr(self, "_container", None) is not None:
                self._container.close()
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None

    def frames(self, start: float = 0.0, end: float | None = None,
               key: str | None = None) -> Iterator[tuple[float, np.ndarray]]:
        """``(time in seconds, HxWx3 uint8 RGB)`` for each frame presented in ``[start, end)``
        (``end`` None: to the end of the file), decoding from the keyframe at or before
        ``start``; ``key`` names the field in errors."""
        av, s = self._av, self._stream
        tb = float(self.info.time_base)  # pts * float: exact enough for half-frame matching
        try:
            if start > 0 or self._used:  # a reused reader always seeks (and so flushes)
                self._container.seek(max(0, int(start / self.info.time_base)), stream=s,
                                     backward=True, any_frame=False)
            self._used = True
            for frame in self._container.decode(s):
                if frame.pts is None:
                    raise VideoError(self.uri, "a decoded frame has no presentation time",
                                     key=key)
                t = frame.pts * tb
                if t < start - EPSILON:
                    continue
                if end is not None and t >= end - EPSILON:
                    return
                yield t, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as e:
            raise VideoError(self.uri, f"cannot decode: {_reason(e)}", key=key) from None

    def frames_at(self, times: np.ndarray, tolerance: float,
                  span: tuple[float, float | None] | None = None,
                  key: str | None = None) -> tuple[np.ndarray, int]:
        """``(frames [N, H, W, 3] uint8, presented)``: for each of ``times`` (seconds, any
        order) the frame presented nearest to it, within ``tolerance``; ``presented`` counts
        the frames in ``span`` = ``[start, end)`` (default: the matched range), so a caller can
        check that the video holds one frame per row. ``key`` names the field in errors."""
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if times.size == 0:
            return np.zeros((0, self.info.height, self.info.width, 3), np.uint8), 0
        order = np.argsort(times, kind="stable")
        sorted_t = times[order]
        lo, hi = float(sorted_t[0]) - tolerance, float(sorted_t[-1]) + tolerance
        s_lo, s_hi = span if span is not None else (lo, hi)
        out: np.ndarray | None = None
        best = np.full(times.size, np.inf)
        presented = 0
        last = None
        for t, image in self.frames(min(lo, s_lo), None if s_hi is None else max(hi, s_hi),
                                    key):
            last = t
            if t >= s_lo - EPSILON and (s_hi is None or t < s_hi - EPSILON):
                presented += 1
            a = int(np.searchsorted(sorted_t, t - tolerance - EPSILON, "left"))
            b = int(np.searchsorted(sorted_t, t + tolerance + EPSILON, "right"))
            if a == b:
                continue
            if out is None:
                out = np.empty((times.size, *image.shape), np.uint8)
            elif image.shape != out.shape[1:]:
                raise VideoError(self.uri, f"frame at {t:.4f}s is {list(image.shape)}, earlier "
                                 f"frames {list(out.shape[1:])}", key=key)
            idx = order[a:b]
            dist = np.abs(times[idx] - t)
            closer = idx[dist < best[idx]]
            if closer.size:
                best[closer] = np.abs(times[closer] - t)
                out[closer] = image
        missing = np.flatnonzero(best > tolerance + EPSILON)
        if missing.size or out is None:
            i = int(missing[0]) if missing.size else 0
            ends = (f"the last frame is at {last:.4f}s" if last is not None else
                    f"the video ends at {self.info.duration:.4f}s" if self.info.duration
                    else "no frame decoded")
            raise VideoError(self.uri, f"no frame within {tolerance:.4f}s of {times[i]:.4f}s "
                             f"(row {i} of {times.size}; {ends})", key=key)
        return out, presented


def _reason(e: BaseException) -> str:
    """FFmpeg's own words without the errno and the file name PyAV appends."""
    return one_line(getattr(e, "strerror", None) or e)


def open_video(uri: str) -> VideoReader:
    """Open ``uri`` (local path, ``gs://``, ``hf://``...) for decoding; raises VideoError."""
    return VideoReader(uri)
