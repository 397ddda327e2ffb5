"""DQN Replay Dataset reader (Agarwal et al. 2020): Dopamine replay logs -> whole episodes.

Layout: ``ROOT/GAME/RUN/replay_logs/`` with, per checkpoint suffix N, six gzip files that each hold
one ``np.save`` payload: ``$store$_{observation,action,reward,terminal}_ckpt.N.gz``,
``add_count_ckpt.N.gz`` and ``invalid_range_ckpt.N.gz``. A suffix is one dump of Dopamine's
circular buffer (capacity C), written by batch_rl whenever ``add_count % C == C - 1`` and once more
at the end of training with ``add_count`` replaced by the write cursor.

How the files map onto the stream of Dopamine ``add`` calls (the facts this reader relies on;
``tests/fixtures/atari_dqn_replay/PROVENANCE.md`` has the evidence):

* ``add_count >= C``: every slot is valid, in time order from ``cursor = add_count % C`` (slot C-1
  for regular logs, then 0 .. C-2); the slots hold adds ``[add_count - C, add_count)``, so regular
  logs tile the add stream without gap or overlap.
* ``add_count < C``: slots ``[0, add_count)`` are valid. For the first suffix they hold adds
  ``[0, add_count)``. For the final suffix ``add_count`` is the cursor and the slots hold the pass
  that follows the previous log; slots at or after the cursor still hold older, duplicate data,
  except slot C-1, which holds the one add right after the previous log that no suffix declares.
  It is recovered (put back in front of slot 0) when that is provably safe, see
  :meth:`_Run.layout`; otherwise the episode across it is rejected, never silently cut.
* Every episode is preceded by 3 all-zero padding transitions (stack_size - 1); slot i holds the
  frame in which action i was taken, its clipped reward and terminal flag; the last slot of an
  episode has terminal = 1. ``invalid_range`` is only Dopamine's sampling exclusion zone around the
  cursor, never an episode boundary (it is checked against ``add_count`` for consistency only).
* Newer Dopamine also writes a pickled ``episode_end_indices`` file: it is never opened.

Records: task = game, agent = run (template fields task, agent, game, run); episode_id =
``GAME/RUN/ckptN/SLOT`` of the first real transition; order = (N, its place among N's declared
slots in time order, -1 for a recovered slot); source = the replay_logs uri and one segment
(checkpoint, first/last slot, count) per checkpoint crossed. An episode exactly
``max_steps_per_episode`` long is marked truncated (Dopamine stores terminal=1 at the step cap too).

Units are checkpoints; an episode is yielded by the unit where it starts, reading the leading part
of the next checkpoint(s) to finish it. Within a unit, episodes come out in file order (as their
frames complete), which differs from ``order`` only for an episode that wraps around slot C-1.
An episode whose start is not in the data (first checkpoint present is not suffix 0, or a gap)
or that has no terminal before the end of the data is yielded as a Rejected, reported once. Observation files (C x 84 x 84 bytes, 7 GB for C = 10^6)
are streamed out of the gzip with bounded memory: only the frames of the episodes being assembled
are held. Frames needed from another checkpoint's slot C-1 (its first slot in time) sit at the end
of that file, so stitching into a regular log decompresses that file to its end.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np
import pydantic

try:  # ISA-L's inflate is 3-4x faster than zlib's on these frames; same API, optional
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - exercised where python-isal is absent
    _inflate = zlib  # type: ignore[assignment]

from .. import fs
from ..errors import SourceError, TrajcorpusError
from ..schemas.episode import Episode, Rejected
from .base import Names, Source, SourceOptions, Unit
from .metadata import parse_npy_header, small_int

__all__ = ["DqnReplaySource", "GzipNpyStream", "read_small_array"]

STORE_PREFIX = "$store$_"
STORE_FIELDS = ("observation", "action", "reward", "terminal")
PADDING = 3  # Dopamine's stack_size - 1 zero transitions before every episode
FILE_RE = re.compile(
    r"^(?:\$store\$_(?:observation|action|reward|terminal)|add_count|invalid_range)_ckpt\.(\d{1,18})\.gz$"
)
MAX_CAPACITY = 1 << 24  # slots per checkpoint we accept (real data: 10^6); refuses header bombs
MAX_FRAME_PIXELS = 1 << 20
GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header + trailer (CRC32, ISIZE) checked by zlib itself
IN_CHUNK = 1 << 18  # compressed bytes per read: small, so unconsumed tails stay cheap to re-feed
OUT_CHUNK = 1 << 23  # decompressed bytes per zlib call: the bound on the stream's own memory


class DqnReplayOptions(SourceOptions):
    games: Names = None  # restrict a ROOT uri to these games
    runs: Names = None  # ... and these runs
    recover_undeclared: bool = True  # put the final suffix's undeclared slot C-1 back when safe
    max_steps_per_episode: int = 27000  # Dopamine Runner cap: an episode this long was truncated
    num_actions: int = 18  # ALE full action set: actions must lie in [0, num_actions)
    observation_shape: tuple[int, int] = (84, 84)

    @pydantic.field_validator("observation_shape")
    @classmethod
    def _positive(cls, shape: tuple[int, int]) -> tuple[int, int]:
        if min(shape) < 1:
            raise ValueError(f"must be [H, W] with positive sides, got {list(shape)}")
        return shape


# -------------------------------------------------------------------------------------------------
# Streaming gzip + .npy
# -------------------------------------------------------------------------------------------------
class GzipNpyStream:
    """A gzip file holding one ``np.save`` payload, decompressed incrementally with bounded memory.

    It reads the raw bytes through :func:`trajcorpus.fs.open_uri`, so gs:// streams as well, and
    turns every failure (truncation, corrupt deflate data, CRC mismatch, bad .npy header, trailing
    bytes) into a :class:`SourceError` naming the file, the compressed byte offset and the reason.
    """

    def __init__(self, uri: str):
        self.uri = uri
        try:
            self._fh: IO[bytes] = fs.open_uri(uri, "rb")
        except FileNotFoundError:
            raise SourceError(uri, "missing file") from None
        except OSError as e:
            raise SourceError(uri, f"cannot open: {e}") from None
        self._z = _inflate.decompressobj(GZIP_WBITS)
        self._in = b""
        self._buf = memoryview(b"")
        self._at = 0
        self._raw = 0  # compressed bytes read from the file so far
        self._ended = False
        self.position = 0  # payload (uncompressed) bytes handed out so far
        self.shape: tuple[int, ...] = ()
        self.dtype = np.dtype(np.uint8)
        self.header_size = 0

    def __enter__(self) -> GzipNpyStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    # -- errors ------------------------------------------------------------------------------------
    def error(self, reason: str) -> SourceError:
        return SourceError(self.uri, reason, offset=max(0, self._raw - len(self._in)))

    def _where(self) -> str:
        if self.header_size and len(self.shape) >= 1 and self.shape[0]:
            per = max(1, math.prod(self.shape[1:]) * self.dtype.itemsize)
            slot = (self.position - self.header_size) // per
            return f"uncompressed byte {self.position} (slot {slot} of {self.shape[0]})"
        return f"uncompressed byte {self.position}"

    # -- decompression -----------------------------------------------------------------------------
    def _read_raw(self) -> bytes:
        try:
            data = self._fh.read(IN_CHUNK)
        except OSError as e:
            raise self.error(f"read failed: {e}") from None
        self._raw += len(data)
        return data

    def _next_member(self) -> bool:
        """After one gzip member: start the next one, skip zero padding, or report the end."""
        rest = self._z.unused_data
        while True:
            rest = rest.lstrip(b"\0")
            if rest:
                break
            rest = self._read_raw()
            if not rest:
                return False
        if rest[:2] != b"\x1f\x8b":
            raise self.error(f"trailing bytes after the gzip stream at {self._where()}")
        self._z = _inflate.decompressobj(GZIP_WBITS)
        self._in = rest
        return True

    def _more(self) -> bool:
        """Decompress the next piece of payload into the buffer; False at the end of the data."""
        if self._ended:
            return False
        while True:
            if self._z.eof and not self._next_member():
                self._ended = True
                return False
            if not self._in:
                self._in = self._read_raw()
                if not self._in:
                    raise self.error(f"truncated gzip: the compressed data ends at {self._where()} "
                                     "before the end-of-stream marker")
            try:
                out = self._z.decompress(self._in, OUT_CHUNK)
            except (zlib.error, _inflate.error) as e:
                raise self.error(f"corrupt gzip data near {self._where()}: {e}") from None
            self._in = self._z.unconsumed_tail
            if out:
                self._buf, self._at = memoryview(out), 0
                return True

    def _advance(self, n: int, sink: memoryview | None) -> int:
        got = 0
        while got < n:
            if self._at >= len(self._buf) and not self._more():
                break
            k = min(n - got, len(self._buf) - self._at)
            if sink is not None:
                sink[got:got + k] = self._buf[self._at:self._at + k]
            self._at += k
            got += k
            self.position += k
        return got

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the data): the file API np.lib.format uses."""
        out = bytearray(n)
        got = self._advance(n, memoryview(out))
        return bytes(out[:got])

    def readinto(self, array: np.ndarray) -> None:
        """Fill a C-contiguous array from the payload or raise (truncated payload)."""
        view = memoryview(array).cast("B")
        need = len(view)
        if self._advance(need, view) != need:
            raise self.error(f"truncated payload: the data ends at {self._where()}, "
                             f"{self._payload_size()} payload bytes expected")

    def skip(self, n: int) -> None:
        if self._advance(n, None) != n:
            raise self.error(f"truncated payload: the data ends at {self._where()}, "
                             f"{self._payload_size()} payload bytes expected")

    def _payload_size(self) -> int:
        return self.header_size + math.prod(self.shape) * self.dtype.itemsize

    def finish(self) -> None:
        """Check that the payload ends exactly with the gzip data (and so that its CRC is right)."""
        extra = len(self._buf) - self._at
        while self._more():
            extra += len(self._buf)
            self._at = len(self._buf)
        if extra:
            raise self.error(f"{extra} bytes follow the .npy payload of {self._payload_size()} bytes")

    # -- .npy header -------------------------------------------------------------------------------
    def read_header(self, dtype: np.dtype | type, ndim: int) -> tuple[int, ...]:
        """Parse and check the .npy header (never unpickles); return the array shape.

        The header goes through :func:`~trajcorpus.sources.metadata.parse_npy_header` (a bounded
        literal with checked types), and the declared slot count and frame size are bounded
        before anything is allocated.
        """
        h = parse_npy_header(self.read, self.uri, limit=None)  # bounded below
        want = np.dtype(dtype)
        shape = h.shape

        def fail(reason: str) -> SourceError:
            return SourceError(self.uri, f"bad .npy header: {reason}", offset=0)

        if h.fortran_order:
            raise fail("fortran_order=True is not what Dopamine writes")
        if h.dtype != want:
            raise fail(f"dtype {h.dtype.str!r}, expected {want.str!r}")
        if len(shape) != ndim:
            raise fail(f"shape {shape} has {len(shape)} dimensions, expected {ndim}")
        if ndim and not 0 < shape[0] <= MAX_CAPACITY:
            raise fail(f"{shape[0]} slots outside [1, {MAX_CAPACITY}]")
        if math.prod(shape[1:]) > MAX_FRAME_PIXELS:
            raise fail(f"shape {shape} too large per slot")
        self.shape, self.dtype, self.header_size = tuple(shape), want, self.position
        return self.shape


def read_small_array(uri: str, dtype: np.dtype | type, ndim: int) -> np.ndarray:
    """Load a whole small payload (action/reward/terminal/add_count/invalid_range) safely."""
    with GzipNpyStream(uri) as z:
        shape = z.read_header(dtype, ndim)
        out = np.empty(shape, dtype)
        z.readinto(out)
        z.finish()
    return out


# -------------------------------------------------------------------------------------------------
# One checkpoint and its place in the add stream
# -------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Checkpoint:
    """The small arrays of one suffix, in slot order (the frames stay in their file)."""

    suffix: int
    logs: str
    add_count: int
    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray  # bool

    @property
    def capacity(self) -> int:
        return int(self.action.shape[0])

    def uri(self, name: str) -> str:
        return _file_uri(self.logs, self.suffix, name)


def _file_uri(logs: str, suffix: int, name: str) -> str:
    prefix = STORE_PREFIX if name in STORE_FIELDS else ""
    return fs.join(logs, f"{prefix}{name}_ckpt.{suffix}.gz")


@dataclasses.dataclass
class _Layout:
    """Which slots of a checkpoint are valid, in time order, and where they sit in the add stream."""

    order: np.ndarray  # slot indices in time order
    lo: int | None  # global add index of order[0]; None when it cannot be known
    run_start: bool  # order[0] is the run's very first add (3 padding slots come first)
    recovered: bool  # order[0] is the final suffix's undeclared slot C-1, put back
    note: str = ""  # why an undeclared slot was not recovered

    @property
    def hi(self) -> int | None:
        return None if self.lo is None else self.lo + len(self.order)

    @property
    def first_position(self) -> int:
        """Declared-slot position of order[0] (-1 for a recovered slot: it is not declared)."""
        return -1 if self.recovered else 0


class _Break(Exception):
    """The episode state before a checkpoint is unknown; ``owner`` reports the affected episode."""

    def __init__(self, owner: int, reason: str):
        super().__init__(reason)
        self.owner = owner
        self.reason = reason


@dataclasses.dataclass
class _Part:
    """Slots of one checkpoint's observation file wanted by one episode (or padding check)."""

    key: Any
    slots: np.ndarray  # in time order
    frames: np.ndarray | None = None


def _runs(slots: np.ndarray) -> list[tuple[int, int, int]]:
    """Split slots into maximal runs of consecutive slots: (first slot, count, offset in slots)."""
    if not len(slots):
        return []
    cuts = np.flatnonzero(np.diff(slots) != 1) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [len(slots)]])
    return [(int(slots[a]), int(b - a), int(a)) for a, b in zip(starts, stops, strict=True)]


def _collect(uri: str, capacity: int, frame_shape: tuple[int, int], parts: Sequence[_Part],
             to_end: bool) -> Iterator[_Part]:
    """Stream one observation file once, filling each part's frames; yield parts as they fill.

    Frames are copied straight from the decompressor's output into per-part arrays, allocated
    when the stream reaches a part's first slot and released by the caller once yielded.
    """
    requests = sorted((first, count, off, i) for i, p in enumerate(parts)
                      for first, count, off in _runs(p.slots))
    remaining = [len(p.slots) for p in parts]
    frame_bytes = math.prod(frame_shape)
    with GzipNpyStream(uri) as z:
        shape = z.read_header(np.uint8, 3)
        if shape != (capacity, *frame_shape):
            raise SourceError(uri, f"observation array has shape {shape}, expected "
                              f"{(capacity, *frame_shape)} (length mismatch with the action/reward/"
                              "terminal files, or unexpected frame size)", offset=0)
        pos = 0
        for first, count, off, i in requests:
            z.skip((first - pos) * frame_bytes)
            part = parts[i]
            if part.frames is None:
                part.frames = np.empty((len(part.slots), *frame_shape), np.uint8)
            z.readinto(part.frames[off:off + count])
            pos = first + count
            remaining[i] -= count
            if remaining[i] == 0:
                yield part
        if to_end:
            z.skip((capacity - pos) * frame_bytes)
            z.finish()


# -------------------------------------------------------------------------------------------------
# One run: the checkpoints of GAME/RUN and the episode structure across them
# -------------------------------------------------------------------------------------------------
class _Run:
    def __init__(self, source: DqnReplaySource, logs: str, game: str, run: str,
                 suffixes: Sequence[int]):
        self.source = source
        self.logs = logs
        self.game = game
        self.run = run
        self.suffixes = sorted(suffixes)
        self._ckpts: dict[int, _Checkpoint] = {}
        self._layouts: dict[int, _Layout] = {}
        fields = {"task": game, "agent": run, "game": game, "run": run}
        self.task = source.task_name(**fields)
        self.agent = source.agent_name(**fields)

    # -- neighbours --------------------------------------------------------------------------------
    def prev(self, suffix: int) -> int | None:
        i = self.suffixes.index(suffix)
        return self.suffixes[i - 1] if i > 0 else None

    def next(self, suffix: int) -> int | None:
        i = self.suffixes.index(suffix)
        return self.suffixes[i + 1] if i + 1 < len(self.suffixes) else None

    def location(self, suffix: int, slot: int) -> str:
        return f"{self.logs} ckpt {suffix} slot {slot}"

    # -- loading -----------------------------------------------------------------------------------
    def ckpt(self, suffix: int) -> _Checkpoint:
        if suffix not in self._ckpts:
            self._ckpts[suffix] = self._load(suffix)
        return self._ckpts[suffix]

    def _load(self, suffix: int) -> _Checkpoint:
        def uri(name: str) -> str:
            return _file_uri(self.logs, suffix, name)

        count = read_small_array(uri("add_count"), np.int64, 0)
        action = read_small_array(uri("action"), np.int32, 1)
        reward = read_small_array(uri("reward"), np.float32, 1)
        terminal = read_small_array(uri("terminal"), np.uint8, 1)
        for name, arr in (("reward", reward), ("terminal", terminal)):
            if arr.shape != action.shape:
                raise SourceError(uri(name), f"length mismatch: {arr.shape[0]} slots but "
                                  f"{uri('action')} has {action.shape[0]}")
        if terminal.size and int(terminal.max()) > 1:
            bad = int(np.flatnonzero(terminal > 1)[0])
            raise SourceError(uri("terminal"), f"terminal flag {terminal[bad]} is not 0/1",
                              key=f"slot {bad}")
        add_count = int(count)
        if add_count < 0:
            raise SourceError(uri("add_count"), f"add_count {add_count} out of range (negative)")
        return _Checkpoint(suffix, self.logs, add_count, action, reward, terminal.astype(bool))

    def check_invalid_range(self, ck: _Checkpoint) -> None:
        """invalid_range is only a cross-check of add_count (files mixed between suffixes)."""
        uri = ck.uri("invalid_range")
        try:
            inv = read_small_array(uri, np.int64, 1)
        except SourceError as e:
            if e.reason == "missing file":
                return  # not needed to read the data
            raise
        c = ck.capacity
        cursor = ck.add_count % c
        steps = (inv - inv[0]) % c
        if not (np.array_equal(steps, np.arange(len(inv))) and (cursor - inv[0]) % c < len(inv)):
            raise SourceError(uri, f"invalid_range {inv.tolist()} does not surround the cursor "
                              f"{cursor} given by add_count {ck.add_count} (files from different "
                              "checkpoints?)")

    # -- layout ------------------------------------------------------------------------------------
    def layout(self, suffix: int) -> _Layout:
        if suffix not in self._layouts:
            self._layouts[suffix] = self._make_layout(suffix)
        return self._layouts[suffix]

    def _make_layout(self, suffix: int) -> _Layout:
        ck = self.ckpt(suffix)
        c, s = ck.capacity, ck.add_count
        if s >= c:
            cursor = s % c
            order = np.concatenate([np.arange(cursor, c), np.arange(cursor)])
            return _Layout(order, s - c, False, False)
        p = self.prev(suffix)
        if p is None:  # the first suffix of a run holds adds [0, add_count)
            return _Layout(np.arange(s), 0 if suffix == 0 else None, suffix == 0, False)
        if self.next(suffix) is not None:
            raise SourceError(ck.uri("add_count"), f"add_count {s} out of range: below the "
                              f"capacity {c} in a checkpoint that is neither the first nor the last")
        prev, prev_lay = self.ckpt(p), self.layout(p)
        if prev.capacity != c:
            raise SourceError(ck.uri("action"), f"length mismatch: {c} slots but checkpoint {p} "
                              f"has {prev.capacity}")
        if prev_lay.hi is None:
            return _Layout(np.arange(s), None, False, False, "position in the add stream unknown")
        base = -(-prev_lay.hi // c) * c  # the final log's pass starts at the next multiple of C
        note = self._unrecoverable(ck, prev, prev_lay, base)
        if note:
            return _Layout(np.arange(s), base, False, False, note)
        return _Layout(np.concatenate([[c - 1], np.arange(s)]), base - 1, False, True)

    def _unrecoverable(self, ck: _Checkpoint, prev: _Checkpoint, prev_lay: _Layout,
                       base: int) -> str:
        """Why the final suffix's slot C-1 may not be trusted ('' when it holds add base - 1).

        Safe when the previous log ended right before slot C-1 of this pass (so slot C-1 was the
        first write after it) and the stale slots [add_count, C-1) are byte-identical to the
        previous log's: the pass did not wrap again (e.g. after a missed log trigger), so slot
        C-1 was not overwritten either.
        """
        c, s = ck.capacity, ck.add_count
        if not self.source.opts.recover_undeclared:
            return "recovery of the final checkpoint's undeclared slot is switched off"
        if base - prev_lay.hi != 1:
            return f"the previous checkpoint ends at add {prev_lay.hi}, not right before slot {c - 1}"
        if s > c - 2:
            return "no stale slots left to prove that slot C-1 was not overwritten"
        for name in ("action", "reward", "terminal"):
            a, b = getattr(ck, name)[s:c - 1], getattr(prev, name)[s:c - 1]
            if a.tobytes() != b.tobytes():
                bad = s + int(np.flatnonzero(a != b)[0])
                return (f"stale slot {bad} ({name}) differs from checkpoint {prev.suffix}: the "
                        "buffer wrapped again, slot C-1 may be newer")
        prev_term = np.flatnonzero(prev.terminal[prev_lay.order])
        if len(prev_term) and len(prev_lay.order) - 1 - prev_term[-1] < PADDING:
            j = c - 1
            if ck.action[j] or ck.reward[j] or ck.terminal[j]:
                return f"slot {j} should be zero padding after the previous terminal but is not"
        return ""

    # -- episode state across checkpoints ----------------------------------------------------------
    def slots_before(self, suffix: int) -> int:
        """Slots since the last terminal, just before this checkpoint's first slot (run start: 0)."""
        lay = self.layout(suffix)
        if lay.run_start:
            return 0
        p = self.prev(suffix)
        if p is None:
            raise _Break(suffix, f"checkpoint {suffix} is the first one in the data, so the "
                         "episode running at its start began in a checkpoint that is not here")
        try:
            prev_lay = self.layout(p)
        except TrajcorpusError as e:
            raise _Break(suffix, f"the previous checkpoint {p} cannot be read: {e}") from None
        if lay.lo is None or prev_lay.hi is None:
            raise _Break(suffix, "its position in the add stream is unknown")
        gap = lay.lo - prev_lay.hi
        if gap < 0:
            raise SourceError(self.ckpt(suffix).uri("add_count"),
                              f"add_count {self.ckpt(suffix).add_count} out of range: the checkpoint "
                              f"would start at add {lay.lo}, inside checkpoint {p} (which ends at "
                              f"add {prev_lay.hi})")
        try:
            q = self.slots_after(p)
        except TrajcorpusError as e:
            raise _Break(suffix, f"the previous checkpoint {p} cannot be read: {e}") from None
        if gap == 0:
            return q
        reason = f"{gap} add(s) between checkpoint {p} and {suffix} are in no checkpoint"
        if lay.note:
            reason += f" ({lay.note})"
        raise _Break(p if q >= PADDING else suffix, reason)

    def slots_after(self, suffix: int) -> int:
        """Slots since the last terminal at the end of this checkpoint."""
        lay = self.layout(suffix)
        term = np.flatnonzero(self.ckpt(suffix).terminal[lay.order])
        if len(term):
            return len(lay.order) - 1 - int(term[-1])
        return self.slots_before(suffix) + len(lay.order)

    # -- reading one unit --------------------------------------------------------------------------
    def read(self, suffix: int) -> Iterator[Episode | Rejected]:
        ck, lay = self.ckpt(suffix), self.layout(suffix)
        order, n = lay.order, len(lay.order)
        term = ck.terminal[order]
        terminals = np.flatnonzero(term)
        try:
            q: int | None = self.slots_before(suffix)
        except _Break as b:
            q = None
            if b.owner == suffix:
                cut = int(terminals[0]) + 1 if len(terminals) else n
                if cut:
                    yield self.source.reject(
                        self.location(suffix, int(order[0])),
                        f"incomplete episode: its {cut} slot(s) at the start of checkpoint "
                        f"{suffix} continue an episode whose start is not in the data ({b.reason})",
                        task=self.task)
        self.check_invalid_range(ck)
        if q is None or q >= PADDING:  # the head continues an episode from before (or orphan)
            cut = int(terminals[0]) + 1 if len(terminals) else n
            first = cut + PADDING
        else:
            cut, first = 0, PADDING - q
        ends = terminals[terminals >= first]
        starts = np.concatenate([[first], ends + PADDING + 1]).astype(np.int64)
        self.check_padding(ck, lay, cut, first, ends)

        parts: list[_Part] = []
        for a, b in zip(starts[:-1], ends, strict=True):
            parts.append(_Part(("episode", int(a), int(b)), order[a:b + 1]))
        tail = None
        if starts[-1] < n:
            tail = _Part(("tail", int(starts[-1]), n - 1), order[starts[-1]:])
            parts.append(tail)
        pads = self.padding_positions(n, cut, first, ends)
        for run in np.split(pads, np.flatnonzero(np.diff(pads) != 1) + 1) if len(pads) else []:
            parts.append(_Part(("padding", int(run[0]), int(run[-1])), order[run]))

        shape = self.source.opts.observation_shape
        for part in _collect(ck.uri("observation"), ck.capacity, shape, parts, to_end=True):
            kind, a, b = part.key
            if kind == "padding":
                self.check_zero_frames(ck, part)
            elif kind == "episode":
                yield self.build(suffix, [(ck, lay, a, b, part.frames)])
            part.frames = None if kind != "tail" else part.frames
        if tail is not None:
            yield self.stitch(suffix, tail)

    def padding_positions(self, n: int, cut: int, first: int, ends: np.ndarray) -> np.ndarray:
        after = (ends[:, None] + np.arange(1, PADDING + 1)).ravel()
        pads = np.concatenate([np.arange(cut, min(first, n)), after]).astype(np.int64)
        return np.unique(pads[pads < n])

    def check_padding(self, ck: _Checkpoint, lay: _Layout, cut: int, first: int,
                      ends: np.ndarray) -> None:
        pads = self.padding_positions(len(lay.order), cut, first, ends)
        slots = lay.order[pads]
        bad = (ck.action[slots] != 0) | (ck.reward[slots] != 0) | ck.terminal[slots]
        if bad.any():
            j = int(slots[np.flatnonzero(bad)[0]])
            raise SourceError(self.logs, f"slot {j} should be zero padding (Dopamine adds "
                              f"{PADDING} zero transitions before every episode) but holds "
                              f"action {ck.action[j]}, reward {ck.reward[j]}, terminal "
                              f"{int(ck.terminal[j])}", key=f"ckpt {ck.suffix} slot {j}")

    def check_zero_frames(self, ck: _Checkpoint, part: _Part) -> None:
        assert part.frames is not None
        nonzero = part.frames.reshape(len(part.slots), -1).any(axis=1)
        if nonzero.any():
            j = int(part.slots[np.flatnonzero(nonzero)[0]])
            raise SourceError(ck.uri("observation"), "padding frame is not all zero (Dopamine's "
                              "padding transitions have zero frames)", key=f"slot {j}")

    def stitch(self, suffix: int, tail: _Part) -> Episode | Rejected:
        """Finish the episode that runs past the end of ``suffix`` from the next checkpoint(s)."""
        ck, lay = self.ckpt(suffix), self.layout(suffix)
        _, a, b = tail.key
        pieces: list[tuple[_Checkpoint, _Layout, int, int, np.ndarray | None]] = [
            (ck, lay, a, b, tail.frames)]
        where = self.location(suffix, int(lay.order[a]))
        length = b - a + 1
        cur, cur_lay = suffix, lay
        while True:
            nxt = self.next(cur)
            if nxt is None:
                return self.source.reject(
                    where, f"incomplete episode: {length} step(s) from checkpoint {suffix} on, "
                    f"no terminal before end of data (checkpoint {cur} is the last one)",
                    task=self.task)
            try:
                nck, nlay = self.ckpt(nxt), self.layout(nxt)
            except TrajcorpusError as e:
                return self.source.reject(where, f"episode continues into checkpoint {nxt}, which "
                                          f"cannot be read: {e}", task=self.task)
            if nlay.lo is None or cur_lay.hi is None or nlay.lo != cur_lay.hi:
                lost = "an unknown number of" if nlay.lo is None or cur_lay.hi is None else \
                    str(nlay.lo - cur_lay.hi)
                note = f" ({nlay.note})" if nlay.note else ""
                return self.source.reject(
                    where, f"incomplete episode: after {length} step(s) it runs into {lost} "
                    f"add(s) between checkpoint {cur} and {nxt} that no checkpoint holds{note}",
                    task=self.task)
            term = np.flatnonzero(nck.terminal[nlay.order])
            stop = int(term[0]) if len(term) else len(nlay.order) - 1
            pieces.append((nck, nlay, 0, stop, None))
            length += stop + 1
            if len(term):
                break
            cur, cur_lay = nxt, nlay
        shape = self.source.opts.observation_shape
        for i, (pck, play, p0, p1, _) in enumerate(pieces[1:], start=1):
            part = _Part(i, play.order[p0:p1 + 1])
            try:
                for _ in _collect(pck.uri("observation"), pck.capacity, shape, [part], False):
                    pass
            except TrajcorpusError as e:
                return self.source.reject(where, f"episode continues into checkpoint "
                                          f"{pck.suffix}, whose frames cannot be read: {e}",
                                          task=self.task)
            pieces[i] = (pck, play, p0, p1, part.frames)
        return self.build(suffix, pieces)

    def build(self, suffix: int,
              pieces: Sequence[tuple[_Checkpoint, _Layout, int, int, np.ndarray | None]]
              ) -> Episode | Rejected:
        """One Episode from time-ordered pieces (checkpoint, layout, first/last position, frames)."""
        ck0, lay0, a0, _, _ = pieces[0]
        start_slot = int(lay0.order[a0])
        where = self.location(suffix, start_slot)
        slots = [p[1].order[p[2]:p[3] + 1] for p in pieces]
        actions = np.concatenate([p[0].action[s] for p, s in zip(pieces, slots, strict=True)])
        rewards = np.concatenate([p[0].reward[s] for p, s in zip(pieces, slots, strict=True)])
        frames = pieces[0][4] if len(pieces) == 1 else np.concatenate([p[4] for p in pieces])
        limit = self.source.opts.num_actions
        bad = np.flatnonzero((actions < 0) | (actions >= limit))
        if len(bad):
            i = int(bad[0])
            return self.source.reject(where, f"action {actions[i]} at step {i} outside "
                                      f"[0, {limit})", task=self.task)
        length = len(rewards)
        truncated = length == self.source.opts.max_steps_per_episode
        segments, recovered = [], []
        for (pck, play, p0, _, _), s in zip(pieces, slots, strict=True):
            segments.append({"checkpoint": pck.suffix, "first_index": int(s[0]),
                             "last_index": int(s[-1]), "num_transitions": len(s)})
            if play.recovered and p0 == 0:
                recovered.append({"checkpoint": pck.suffix, "index": int(play.order[0])})
        source: dict[str, Any] = {"uri": self.logs, "segments": segments}
        if recovered:
            source["recovered_undeclared_slots"] = recovered
        episode = Episode(
            dataset=self.source.dataset, task=self.task, agent=self.agent,
            episode_id=f"{self.game}/{self.run}/ckpt{suffix}/{start_slot}",
            order=(suffix, a0 + lay0.first_position),
            observations={"observation": frames}, observation_kinds={"observation": "image"},
            actions=actions, action_kind="discrete", rewards=rewards,
            is_terminal=not truncated, is_truncated=truncated,
            return_=float(rewards.sum(dtype=np.float64)), source=source)
        return self.source.checked(episode, where)


# -------------------------------------------------------------------------------------------------
# The Source
# -------------------------------------------------------------------------------------------------
def _name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _natural(name: str) -> tuple[int, str]:
    n = small_int(name)
    return (n, "") if n is not None else (1 << 62, name)


class DqnReplaySource(Source):
    """``dqn-replay``: task = game, agent = run; one unit per (game, run, checkpoint suffix)."""

    kind = "dqn-replay"
    description = ("DQN Replay Dataset logs written by Dopamine: per checkpoint, gzip-compressed "
                   "NumPy arrays (`$store$_observation_ckpt.N.gz`, actions, rewards, terminals)")
    task_categories = ("reinforcement-learning",)
    tags = ("atari", "offline-rl")
    carries_text = False
    Options = DqnReplayOptions
    opts: DqnReplayOptions
    selection_options = ("games", "runs")

    @classmethod
    def is_single_dataset(cls, uri: str) -> bool:
        """A GAME/RUN or replay_logs folder."""
        return uri.rstrip("/").endswith("/replay_logs") or fs.exists(fs.join(uri, "replay_logs"))

    # -- discovery ---------------------------------------------------------------------------------
    def _isdir(self, uri: str) -> bool:
        return fs.filesystem(uri).isdir(fs.strip_scheme(uri))

    def _listdir(self, uri: str) -> list[str]:
        try:
            return fs.listdir(uri)
        except FileNotFoundError:
            raise SourceError(uri, "no such folder") from None

    def _runs(self) -> list[tuple[str, str, str]]:
        """(game, run, replay_logs uri) for the uri: a ROOT, a GAME, a GAME/RUN or a replay_logs."""
        uri = self.uri
        if not self._isdir(uri):
            raise SourceError(uri, "not a folder (expected ROOT, GAME/RUN or replay_logs)")
        paths = self._listdir(uri)
        names = [_name(p) for p in paths]
        if any(FILE_RE.match(n) for n in names):
            parts = uri.rstrip("/").split("/")
            return [(parts[-3] if len(parts) >= 3 else "game", parts[-2] if len(parts) >= 2
                     else "run", uri)]
        if "replay_logs" in names:
            parts = uri.rstrip("/").split("/")
            return [(parts[-2] if len(parts) >= 2 else "game", parts[-1],
                     fs.join(uri, "replay_logs"))]
        out: list[tuple[str, str, str]] = []
        games = self.opts.games
        if games is None:
            if self._is_game_dir(uri):
                return self._game_runs(_name(uri), uri)
            games = sorted(_name(p) for p in paths if self._isdir(p))
        for game in games:
            out.extend(self._game_runs(str(game), fs.join(uri, str(game)), explicit=True))
        return out

    def _is_game_dir(self, uri: str) -> bool:
        return any(fs.exists(fs.join(p, "replay_logs")) for p in self._listdir(uri)
                   if self._isdir(p))

    def _game_runs(self, game: str, game_uri: str, explicit: bool = False
                   ) -> list[tuple[str, str, str]]:
        runs = self.opts.runs
        if explicit and self.opts.games is not None and not fs.exists(game_uri):
            raise SourceError(game_uri, f"game {game!r} (from options.games) not found")
        if runs is None:
            names = [_name(p) for p in self._listdir(game_uri) if self._isdir(p)]
            runs = [r for r in names if fs.exists(fs.join(game_uri, r, "replay_logs"))]
        out = []
        for run in sorted((str(r) for r in runs), key=_natural):
            logs = fs.join(game_uri, run, "replay_logs")
            if self.opts.runs is not None and not fs.exists(logs):
                raise SourceError(logs, f"run {run!r} (from options.runs) not found")
            out.append((game, run, logs))
        return out

    def _suffixes(self, logs: str) -> list[int]:
        found = {int(m.group(1)) for m in (FILE_RE.match(_name(p)) for p in self._listdir(logs))
                 if m}
        return sorted(found)

    # -- the contract ------------------------------------------------------------------------------
    def units(self) -> list[Unit]:
        units: list[Unit] = []
        for game, run, logs in self._runs():
            suffixes = tuple(self._suffixes(logs))
            task = self.task_name(task=game, agent=run, game=game, run=run)
            for sx in suffixes:
                units.append(Unit(key=f"{game}/{run}/ckpt.{sx}", uri=logs, index=len(units),
                                  params=(("game", game), ("run", run), ("suffix", sx),
                                          ("suffixes", suffixes), ("task", task))))
        if not units:
            raise SourceError(self.uri, "no DQN replay checkpoints found (expected GAME/RUN/"
                              "replay_logs/$store$_observation_ckpt.N.gz and its siblings)")
        return units

    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        run = _Run(self, unit.uri, unit.param("game"), unit.param("run"), unit.param("suffixes"))
        yield from run.read(int(unit.param("suffix")))
