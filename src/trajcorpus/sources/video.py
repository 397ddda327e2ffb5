"""Frame decoding for readers whose camera streams are video files (LeRobot, VPT), with PyAV.

PyAV's wheels carry their own FFmpeg (AV1 through libdav1d, H.264, HEVC), so no system FFmpeg is
needed. :func:`open_video` opens a local, ``gs://`` or ``hf://`` file (through :mod:`trajcorpus.fs`)
as a :class:`VideoReader` (a context manager), which decodes in three ways:

* :meth:`~VideoReader.frames` (callable again on the same reader, any order) seeks to the
  keyframe at or before ``start`` and yields ``(time, HxWx3 uint8 RGB)`` for the frames presented
  in ``[start, end)``, in presentation order (B-frames are reordered by the decoder; frames are
  never counted in decode order);
* :meth:`~VideoReader.frames_at` gives the frames for row timestamps (LeRobot): each row gets the
  frame presented nearest to it, within ``tolerance`` (half a frame period for rows recorded at
  the video's rate), else :class:`VideoError` names the file and the first unmatched time; it
  also counts the frames presented in a ``span`` so a reader can check "one frame per row";
* :meth:`~VideoReader.steps` reads frame i as step i from the start (VPT), keeping some, resizing
  while converting (swscale, bilinear) and letting the caller draw on chosen frames first.

Memory is the output array plus the decoder's few reference frames: decoding starts at the
nearest keyframe before the first wanted time and stops after the last one, so a file holding many
episodes back to back is never decoded whole. The output array comes from a :class:`FrameArena`
when the caller passes one: writing a few hundred MB of frames into memory the process has not
touched yet costs more than decoding them on a virtual machine (page faults, the host providing
the pages; docs/benchmarks.md measures it), so a reader that hands out one episode after another
decodes into the same memory again once the consumer has let go of the last episode. Conversion to
RGB reuses one swscale context per reader (PyAV's ``frame.to_ndarray`` builds one per frame).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import mmap
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from typing import IO, Any

import numpy as np

from .. import fs
from ..errors import SourceError, one_line

__all__ = ["VideoError", "VideoReader", "VideoStream", "FrameArena", "OpenVideos", "open_video",
           "EPSILON"]

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


class FrameArena:
    """Reusable memory for the uint8 frame arrays a reader hands out, one episode after another.

    :meth:`take` returns an array over a kept buffer that nothing else refers to any more (no
    array over it is alive: each holds a reference to the buffer, directly or through the array it
    views), else over new memory. So a consumer that keeps its episodes (``list(read_unit(u))``)
    gets new memory every time and nothing it holds is ever written again, while one that lets
    each episode go gets the pages it already paid for. At most ``slots`` buffers are kept: two
    serve ``for ep in read_unit(u)``, which still holds episode k while k + 1 is decoded. Memory
    kept between episodes: ``slots`` x the largest episode's frames (plus a quarter of address
    space, untouched until a longer episode needs it); :meth:`clear` releases it. A lock makes
    :meth:`take` safe from several threads; pickling keeps no buffer.
    """

    def __init__(self, slots: int = 2):
        self.slots = slots
        self._buffers: list[mmap.mmap] = []
        self._probe = [object()]  # held as a buffer is: its count is that of an unshared object
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return FrameArena, (self.slots,)

    def _unshared(self, i: int) -> bool:
        return sys.getrefcount(self._buffers[i]) <= sys.getrefcount(self._probe[0])

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised uint8 array of ``shape`` (the caller fills all of it)."""
        n = math.prod(shape)
        with self._lock:
            free = [i for i in range(len(self._buffers)) if self._unshared(i)]
            fits = [i for i in free if len(self._buffers[i]) >= n]
            if fits:
                buffer = self._buffers[min(fits, key=lambda k: len(self._buffers[k]))]
            else:
                buffer = _memory(n + n // 4)
                if free:  # too small: replaced (its pages go back)
                    self._buffers[free[0]] = buffer
                else:  # all in use: the oldest is forgotten (its holders keep it alive)
                    if len(self._buffers) >= self.slots:
                        self._buffers.pop(0)
                    self._buffers.append(buffer)
            return np.frombuffer(buffer, np.uint8, count=n).reshape(shape)

    def clear(self) -> None:
        """Forget every buffer (arrays handed out stay valid)."""
        with self._lock:
            self._buffers.clear()


def _memory(n: int) -> mmap.mmap:
    """``n`` bytes of private anonymous memory, asked of the kernel directly. NumPy advises
    transparent huge pages for every large array; on a virtual machine that hands freed huge
    pages back to its host, their first touch costs 5-15x that of small pages
    (docs/benchmarks.md), and frames are written once and read once, in order."""
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    return mmap.mmap(-1, max(n, 1), flags=flags) if flags else mmap.mmap(-1, max(n, 1))


def _fresh(shape: tuple[int, ...], arena: FrameArena | None) -> np.ndarray:
    """Frame memory from ``arena``, else new (see :func:`_memory`)."""
    if arena is not None:
        return arena.take(shape)
    return np.frombuffer(_memory(math.prod(shape)), np.uint8,
                         count=math.prod(shape)).reshape(shape)


class _Rgb:
    """Decoded frame -> RGB uint8 [H, W, 3] at ``size`` (H, W; None: as decoded), through
    swscale contexts kept for one conversion each: decoded -> output, decoded -> full size (for a
    frame the caller edits), edited -> output."""

    def __init__(self, size: tuple[int, int] | None = None):
        from av.video.reformatter import VideoReformatter

        self.out, self.full, self.edited = VideoReformatter(), VideoReformatter(), \
            VideoReformatter()
        self.kw = {} if size is None else {"width": size[1], "height": size[0],
                                           "interpolation": "BILINEAR"}

    def __call__(self, frame: Any, edit: Callable[[np.ndarray], None] | None = None
                 ) -> np.ndarray:
        if edit is None:
            return self.out.reformat(frame, format="rgb24", **self.kw).to_ndarray()
        rgb = self.full.reformat(frame, format="rgb24")
        image = rgb.to_ndarray() if rgb is not frame else rgb.to_ndarray().copy()
        edit(image)
        if not self.kw:
            return image
        import av

        return self.edited.reformat(av.VideoFrame.from_ndarray(image, format="rgb24"),
                                    format="rgb24", **self.kw).to_ndarray()


class VideoReader:
    """One open video file; use :func:`open_video`. Not thread-safe (one decoder).

    ``threads``: let FFmpeg decode with frame/slice threads (same pixels, more cores)."""

    def __init__(self, uri: str, threads: bool = False):
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
        self._stream = s = self._container.streams.video[0]
        if threads:
            s.thread_type = "AUTO"
        tb = s.time_base or Fraction(1, 1)
        duration = float(s.duration * tb) if s.duration else (
            self._container.duration / 1e6 if self._container.duration else None)
        rate = s.average_rate or s.guessed_rate
        self.info = VideoStream(codec=s.codec_context.name, width=int(s.codec_context.width),
                                height=int(s.codec_context.height),
                                fps=float(rate) if rate else None, time_base=Fraction(tb),
                                duration=duration)
        self._rgb = _Rgb()

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

    def _decoded(self, start: float, end: float | None, key: str | None
                 ) -> Iterator[tuple[float, Any]]:
        """``(time, av.VideoFrame)`` presented in ``[start, end)``, from the keyframe at or
        before ``start``; a reused reader always seeks (and so flushes the decoder)."""
        av, s = self._av, self._stream
        tb = float(self.info.time_base)  # pts * float: exact enough for half-frame matching
        try:
            if start > 0 or self._used:
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
                yield t, frame
        except av.FFmpegError as e:
            raise VideoError(self.uri, f"cannot decode: {_reason(e)}", key=key) from None

    def frames(self, start: float = 0.0, end: float | None = None,
               key: str | None = None) -> Iterator[tuple[float, np.ndarray]]:
        """``(time in seconds, HxWx3 uint8 RGB)`` for each frame presented in ``[start, end)``
        (``end`` None: to the end of the file), decoding from the keyframe at or before
        ``start``; ``key`` names the field in errors."""
        for t, frame in self._decoded(start, end, key):
            yield t, self._rgb(frame)

    def frames_at(self, times: np.ndarray, tolerance: float,
                  span: tuple[float, float | None] | None = None, key: str | None = None,
                  arena: FrameArena | None = None) -> tuple[np.ndarray, int]:
        """``(frames [N, H, W, 3] uint8, presented)``: for each of ``times`` (seconds, any
        order) the frame presented nearest to it, within ``tolerance``; ``presented`` counts
        the frames in ``span`` = ``[start, end)`` (default: the matched range), so a caller can
        check that the video holds one frame per row. ``key`` names the field in errors; the
        frames are written into memory from ``arena`` when given."""
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
        for t, frame in self._decoded(min(lo, s_lo), None if s_hi is None else max(hi, s_hi),
                                      key):
            last = t
            if t >= s_lo - EPSILON and (s_hi is None or t < s_hi - EPSILON):
                presented += 1
            a = int(np.searchsorted(sorted_t, t - tolerance - EPSILON, "left"))
            b = int(np.searchsorted(sorted_t, t + tolerance + EPSILON, "right"))
            if a == b:
                continue
            idx = order[a:b]
            dist = np.abs(times[idx] - t)
            closer = idx[dist < best[idx]]
            if not closer.size:
                continue
            image = self._rgb(frame)
            if out is None:
                shape = (times.size, *image.shape)
                out = _fresh(shape, arena)
            elif image.shape != out.shape[1:]:
                raise VideoError(self.uri, f"frame at {t:.4f}s is {list(image.shape)}, earlier "
                                 f"frames {list(out.shape[1:])}", key=key)
            best[closer] = np.abs(times[closer] - t)
            if closer.size == 1:
                out[closer[0]] = image
            else:
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

    def steps(self, count: int, keep: np.ndarray, size: tuple[int, int] | None = None,
              edits: Mapping[int, Callable[[np.ndarray], None]] | None = None,
              arena: FrameArena | None = None) -> tuple[np.ndarray, int]:
        """``(frames [K, H, W, 3] uint8, decoded)``: frame i is step i, from the start of the
        file; the frames ``i < count`` with ``keep[i]`` in order (K = ``keep[:count].sum()``).

        ``size`` (H, W) resizes while converting (bilinear), None keeps the decoded size;
        ``edits[i]`` changes frame i in place at the decoded size, before any resize. Frames
        after ``count - 1`` are never decoded; ``decoded`` < ``count`` says the video is
        shorter (the caller words that error; the frames are then those decoded). Unreadable data: VideoError at the frame."""
        av, edits = self._av, edits or {}
        convert = _Rgb(size) if size is not None else self._rgb
        out: np.ndarray | None = None
        j = n = 0
        try:
            if self._used:
                self._container.seek(0, stream=self._stream, backward=True, any_frame=False)
            self._used = True
            for frame in self._container.decode(self._stream):
                if n >= count:
                    break
                if keep[n]:
                    if out is None:
                        h, w = size if size is not None else (frame.height, frame.width)
                        shape = (int(np.count_nonzero(keep[:count])), h, w, 3)
                        out = _fresh(shape, arena)
                    out[j] = convert(frame, edits.get(n))
                    j += 1
                n += 1
        except av.FFmpegError as e:
            raise VideoError(self.uri, f"cannot decode the video at frame {n}: "
                             f"{_reason(e)}") from None
        except OSError as e:
            raise VideoError(self.uri, f"cannot read the video at frame {n}: "
                             f"{one_line(e)}") from None
        if out is None:
            out = np.zeros((0, *(size or (self.info.height, self.info.width)), 3), np.uint8)
        return out[:j], n


class OpenVideos:
    """One open reader and one :class:`FrameArena` per key (a camera) while a reader goes
    through the episodes of a unit: LeRobot v3.0 episodes follow each other in a shared file, so
    the next one seeks forward in the same container instead of reopening it (another file closes
    the last one) and is decoded into the memory of the episodes let go. :meth:`close` forgets
    both, so nothing is held between units (a job's text pass reads units too, and keeps its
    source while the next stage runs). ``threads``: as for :func:`open_video`."""

    def __init__(self, threads: bool = False) -> None:
        self.threads = threads
        self._open: dict[str, VideoReader] = {}
        self._arenas: dict[str, FrameArena] = {}

    def arena(self, key: str) -> FrameArena:
        return self._arenas.setdefault(key, FrameArena())

    def open(self, uri: str, key: str) -> VideoReader:
        current = self._open.get(key)
        if current is None or current.uri != uri:
            if current is not None:
                current.close()
            self._open.pop(key, None)
            self._open[key] = open_video(uri, self.threads)
        return self._open[key]

    def close(self) -> None:
        for video in self._open.values():
            video.close()
        self._open.clear()
        self._arenas.clear()


def _reason(e: BaseException) -> str:
    """FFmpeg's own words without the errno and the file name PyAV appends."""
    return one_line(getattr(e, "strerror", None) or e)


def open_video(uri: str, threads: bool = False) -> VideoReader:
    """Open ``uri`` (local path, ``gs://``, ``hf://``...) for decoding; raises VideoError.
    ``threads``: decode with FFmpeg's threads (frame threading: same pixels)."""
    return VideoReader(uri, threads)
