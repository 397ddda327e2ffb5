"""The episode structure of one DQN Replay run (GAME/RUN): its checkpoints, their place in the
stream of Dopamine ``add`` calls, and the episodes assembled across them (the facts relied on are
listed in :mod:`.dqn_replay`'s docstring)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import fs
from ..errors import SourceError, TrajcorpusError
from ..schemas.episode import Episode, Rejected
from .gzipnpy import GzipNpyStream, read_small_array

if TYPE_CHECKING:
    from .dqn_replay import DqnReplaySource

__all__ = ["Run", "STORE_PREFIX", "STORE_FIELDS", "PADDING"]

STORE_PREFIX = "$store$_"
STORE_FIELDS = ("observation", "action", "reward", "terminal")
PADDING = 3  # Dopamine's stack_size - 1 zero transitions before every episode


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
class Run:
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
        raise _Break(p if q > PADDING else suffix, reason)

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
        if q is None or q > PADDING:  # the head continues an episode from before (or orphan)
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
