"""RL Unplugged Atari (Gulcehre et al. 2020): GZIP TFRecords of ``tf.train.Example``, both layouts.

* **episodes** (``atari_episodes_ordered/{Game}/run_{R}-{i:05d}-of-{n:05d}``, TFDS's ``rlu_atari``):
  one Example per episode with ``observations`` (one 84x84 grayscale PNG per step), ``actions``,
  ``unclipped_rewards``/``clipped_rewards``, ``discounts``, ``checkpoint_idx``, ``episode_idx``.
  Unit = one file. ``order = (checkpoint_idx, episode_idx)`` read from the record (one shard may hold
  several checkpoints); ``episode_id = "{Game}/{file name}:{record index}"``.
* **transitions** (``atari/{Game}/run_{R}-{i:05d}-of-{n:05d}``, DeepMind's ``rl_unplugged/atari.py``):
  one Example per transition (``o_t``/``o_tp1`` 4-frame PNG stacks, ``a_t``, ``a_tp1``, ``r_t``,
  ``d_t``, ``episode_id``, ``episode_return``), shuffled across all shards of a run and carrying no
  step index. An episode is rebuilt by grouping on ``episode_id`` and ordering its transitions as
  an Euler path: transition t is an edge from node ``(o_t, a_t)`` to node ``(o_tp1, a_tp1)``, which
  is the next transition's ``(o_t, a_t)``; the path starts at the one node with one more outgoing
  than incoming edge (the first stack, zero-padded) and ends at the terminal node (a zero newest
  frame). Greedy linking fails when a (stack, action) pair recurs inside an episode; Hierholzer's
  algorithm does not. Where such loops exist the order of the loops' actions is not unique (frames
  and rewards still come out in order). Nodes are keyed by the frames' PNG bytes (no decoding);
  an episode that does not link that way (the same frame encoded twice, differently) is read again
  and keyed by decoded pixels, each distinct PNG blob decoded once.

  An episode's transitions are spread over every shard of its run, so a unit is a (game, run)
  *bucket*: it streams all of the run's shards and keeps the episodes whose uint64 id falls in its
  bucket (``id % buckets``). Memory per unit is about (newest-frame PNG + ~400 bytes) per kept
  transition; the number of buckets is ``episode_buckets`` or ceil(run bytes / ``bucket_bytes``)
  (default 1 GiB of compressed shards per bucket: ~0.8M transitions, ~0.6 GB held, at the
  fixture's ~1.3 kB per stored transition), so memory stays bounded at the price of reading the
  run's shards once per bucket. For whole-run work the episode layout is the better input. ``order`` is the (shard, record) position of the episode's
  earliest-stored transition (the layout records no collection order);
  ``episode_id = "{Game}/run_{R}/episode_{id}"``
  with the uint64 id DeepMind's reader uses.

Task = game, agent = run number (template fields ``task``/``game``, ``agent``/``run``).
Observation ``"observation"``: uint8 [T, 84, 84], the frame in which each action was taken.
Rewards are float32 as stored, read from ``unclipped_rewards`` as TFDS does (the release stores
clipped values there too; option ``reward_key`` picks another list); actions are discrete. Options:
``layout``, ``games``, ``runs``, ``compression``, ``max_record_bytes``, ``reward_key``,
``episode_buckets``, ``bucket_bytes``.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import posixpath
import re
from collections.abc import Iterator
from typing import Literal

import numpy as np
import pydantic

from .. import fs
from ..errors import SourceError, TrajcorpusError
from ..schemas.episode import Episode, Rejected
from .base import Names, Numbers, SourceOptions, Unit
from .families import AtariLogs
from .imagecodec import decode_image
from .metadata import discount_array
from .rlu_records import (
    _BlobKeys,
    _bytes_list,
    _decode_frames,
    _gray,
    _numbers,
    _Pending,
    _PixelKeys,
    _scalar,
    _transition_id,
    euler_order,
)
from .tfrecord import DEFAULT_MAX_RECORD_BYTES, iter_records, parse_example

__all__ = ["RluAtariSource", "euler_order", "SHARD_NAME"]

SHARD_NAME = re.compile(r"^run_(\d{1,18})-(\d{5})-of-(\d{5})$")
LAYOUTS = ("auto", "episodes", "transitions")
EPISODE_KEYS = ("observations", "actions", "discounts", "checkpoint_idx", "episode_idx")
DEFAULT_BUCKET_BYTES = 1 << 30


class RluAtariOptions(SourceOptions):
    layout: Literal["auto", "episodes", "transitions"] = "auto"
    games: Names = None  # restrict a folder to these games
    runs: Numbers = None  # ... and these runs
    compression: str = "auto"
    max_record_bytes: int = pydantic.Field(DEFAULT_MAX_RECORD_BYTES, ge=1)
    reward_key: str | None = None  # None: unclipped_rewards, as TFDS reads
    episode_buckets: int | None = pydantic.Field(None, ge=1)  # transitions layout: buckets/run
    bucket_bytes: int = pydantic.Field(DEFAULT_BUCKET_BYTES, ge=1)  # ... or input bytes/bucket


@dataclasses.dataclass(frozen=True)
class _Shard:
    uri: str
    game: str
    run: int
    index: int
    count: int


def _terminal(discounts: np.ndarray, uri: str, key: str, offset: int | None) -> bool:
    """Whether the episode ends in a terminal state (its last discount is 0).

    Every discount must be a discount (finite, in [0, 1]) and only the last may be 0: a 0 before
    it would mean the episode ended there, so the record glues two episodes (or lies).
    """
    d = discount_array(discounts, uri, key=key, offset=offset)
    early = np.flatnonzero(d[:-1] == 0)
    if early.size:
        raise SourceError(uri, f"discount 0 (episode end) at step {int(early[0])}, before the "
                          f"last step {len(d) - 1}", key=key, offset=offset)
    return bool(d.size and d[-1] == 0.0)


class RluAtariSource(AtariLogs):
    """Reads both RL Unplugged Atari layouts; the layout is detected from the first record."""

    kind = "rlu-atari"
    description = "RL Unplugged Atari: TFRecord files of `tf.train.Example` episodes"
    Options = RluAtariOptions

    @classmethod
    def is_single_dataset(cls, uri: str) -> bool:
        """One TFRecord file."""
        return fs.filesystem(uri).isfile(fs.strip_scheme(uri))

    # -- units ----------------------------------------------------------------------------------
    def units(self) -> list[Unit]:
        shards = self._shards()
        layout = self.opts.layout if self.opts.layout != "auto" else self._detect_layout(shards)
        if layout == "episodes":
            return [Unit(f"{s.game}/{posixpath.basename(s.uri)}", s.uri, i,
                         (("layout", "episodes"), ("game", s.game), ("run", s.run),
                          ("shard", s.index), ("task", self._task(s.game, s.run))))
                    for i, s in enumerate(shards)]
        return self._transition_units(shards)

    def _shards(self) -> list[_Shard]:
        games = self.opts.games
        runs = set(self.opts.runs) if self.opts.runs else None
        filesystem = fs.filesystem(self.uri)
        if not filesystem.exists(fs.strip_scheme(self.uri)):
            raise SourceError(self.uri, "no such file or folder")
        if filesystem.isdir(fs.strip_scheme(self.uri)):
            files = list(fs.walk_files(self.uri))
        else:
            files = [self.uri]
        out = []
        for f in files:
            m = SHARD_NAME.match(posixpath.basename(f))
            if not m:
                continue
            game = posixpath.basename(posixpath.dirname(fs.strip_scheme(f))) or "unknown"
            shard = _Shard(f, game, int(m.group(1)), int(m.group(2)), int(m.group(3)))
            if (games is None or game in games) and (runs is None or shard.run in runs):
                out.append(shard)
        if not out:
            raise SourceError(self.uri, "no RL Unplugged shard files (named "
                              "'{Game}/run_{R}-{i:05d}-of-{n:05d}') found"
                              + (f" for games {games}" if games else "")
                              + (f" and runs {sorted(runs)}" if runs else ""))
        return sorted(out, key=lambda s: (s.game, s.run, s.index, s.uri))

    def _detect_layout(self, shards: list[_Shard]) -> str:
        """From the first readable record; damaged records and files are passed over here (their
        units report them), so one bad file does not hide the layout of the rest."""
        problems = []
        for shard in shards:
            try:
                for rec in self._records(shard.uri):
                    if rec.error is not None:
                        continue
                    try:
                        keys = set(parse_example(rec.data, uri=shard.uri, offset=rec.offset))
                    except SourceError:
                        continue
                    if {"observations", "actions"} <= keys:
                        return "episodes"
                    if {"o_t", "a_t"} <= keys:
                        return "transitions"
                    raise SourceError(shard.uri, "neither the episode layout ('observations', "
                                      "'actions') nor the transition layout ('o_t', 'a_t'): keys "
                                      f"are {sorted(keys)}", offset=rec.offset)
            except SourceError as e:
                if "neither the episode layout" in e.reason:
                    raise
                problems.append(str(e))
        raise SourceError(self.uri, "no readable record to tell the layout from (set option "
                          "'layout')" + (f"; first problem: {problems[0]}" if problems else ""))

    def _transition_units(self, shards: list[_Shard]) -> list[Unit]:
        runs: dict[tuple[str, int], list[_Shard]] = collections.defaultdict(list)
        for s in shards:
            runs[(s.game, s.run)].append(s)
        units = []
        for (game, run), members in sorted(runs.items()):
            buckets = self._buckets(members)
            base = posixpath.dirname(members[0].uri)
            for b in range(buckets):
                params = (("layout", "transitions"), ("game", game), ("run", run),
                          ("files", tuple(s.uri for s in members)),
                          ("shards", tuple(s.index for s in members)),
                          ("bucket", b), ("buckets", buckets), ("task", self._task(game, run)))
                units.append(Unit(f"{game}/run_{run}/bucket_{b:05d}-of-{buckets:05d}", base,
                                  len(units), params))
        return units

    def _buckets(self, members: list[_Shard]) -> int:
        if self.opts.episode_buckets is not None:
            return self.opts.episode_buckets
        total = sum(fs.size(s.uri) for s in members)
        return max(1, math.ceil(total / self.opts.bucket_bytes))

    def _task(self, game: str, run: int) -> str:
        return self.task_name(task=game, game=game, agent=str(run), run=run)

    def _agent(self, game: str, run: int) -> str:
        return self.agent_name(task=game, game=game, agent=str(run), run=run)

    # -- reading --------------------------------------------------------------------------------
    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        if unit.param("layout") == "episodes":
            yield from self._read_episode_file(unit)
        else:
            yield from self._read_transition_bucket(unit)

    def _records(self, uri: str):
        return iter_records(uri, compression=self.opts.compression,
                            max_record_bytes=self.opts.max_record_bytes, recover=True)

    def _read_episode_file(self, unit: Unit) -> Iterator[Episode | Rejected]:
        game, run, task = unit.param("game"), unit.param("run"), unit.param("task")
        for rec in self._records(unit.uri):
            location = f"{unit.uri} @ offset {rec.offset} (record {rec.index})"
            if rec.error is not None:
                yield self.reject(location, str(rec.error), task=task)
                continue
            try:
                ex = parse_example(rec.data, uri=unit.uri, offset=rec.offset)
                episode = self._episode_record(ex, unit.uri, rec.offset, rec.index, game, run)
            except TrajcorpusError as e:
                yield self.reject(location, str(e), task=task)
                continue
            yield self.checked(episode, location)

    def _episode_record(self, ex: dict, uri: str, offset: int, index: int, game: str,
                        run: int) -> Episode:
        def fail(key: str, reason: str) -> SourceError:
            return SourceError(uri, reason, offset=offset, key=key)

        reward_key = self.opts.reward_key or next(
            (k for k in ("unclipped_rewards", "clipped_rewards") if k in ex), "unclipped_rewards")
        for key in (*EPISODE_KEYS, reward_key):
            if key not in ex:
                raise fail(key, f"missing feature (the episode layout needs "
                                f"{', '.join((*EPISODE_KEYS, reward_key))})")
        pngs = _bytes_list(ex, "observations", fail)
        actions = _numbers(ex, "actions", np.int64, fail)
        rewards = _numbers(ex, reward_key, np.float32, fail)
        discounts = _numbers(ex, "discounts", np.float32, fail)
        n = len(pngs)
        for key, arr in (("actions", actions), (reward_key, rewards), ("discounts", discounts)):
            if arr.shape[0] != n:
                raise fail(key, f"has {arr.shape[0]} values but observations has {n}")
        checkpoint = int(_scalar(ex, "checkpoint_idx", np.int64, fail))
        episode_idx = int(_scalar(ex, "episode_idx", np.int64, fail))
        frames = _decode_frames(pngs, uri, offset, "observations")
        name = posixpath.basename(uri)
        terminal = _terminal(discounts, uri, "discounts", offset)
        return Episode(
            dataset=self.dataset, task=self._task(game, run), agent=self._agent(game, run),
            episode_id=f"{game}/{name}:{index}", order=(checkpoint, episode_idx),
            observations={"observation": frames}, observation_kinds={"observation": "image"},
            actions=actions, action_kind="discrete", rewards=rewards,
            is_terminal=terminal, is_truncated=not terminal,
            return_=float(rewards.sum(dtype=np.float64)),
            source={"uri": uri, "layout": "episodes", "record": index, "offset": offset,
                    "checkpoint_idx": checkpoint, "episode_idx": episode_idx,
                    "reward_key": reward_key},
        )

    # -- transition layout ----------------------------------------------------------------------
    def _read_transition_bucket(self, unit: Unit) -> Iterator[Episode | Rejected]:
        game, run, task = unit.param("game"), unit.param("run"), unit.param("task")
        pending: dict[int, _Pending] = {}
        yield from self._collect(unit, pending, _BlobKeys())
        orders = {eid: euler_order(p.src, p.dst) for eid, p in pending.items() if not p.broken}
        retry = {eid for eid, order in orders.items() if isinstance(order, str)}
        if retry:  # PNG bytes did not link (a frame encoded twice, differently?): use pixels
            again: dict[int, _Pending] = {}
            for _ in self._collect(unit, again, _PixelKeys(), only=retry):
                pass  # already reported by the first pass
            for eid in retry:
                pending[eid] = again[eid]
                if not again[eid].broken:
                    orders[eid] = euler_order(again[eid].src, again[eid].dst)
        for eid, p in sorted(pending.items(), key=lambda kv: min(kv[1].positions, default=(0, 0))):
            location = (f"{unit.uri}: {game} run {run} episode_id {eid} "
                        f"({len(p.positions)} transitions)")
            try:
                episode = self._assemble(p, orders.get(eid), eid, unit, game, run)
            except TrajcorpusError as e:
                yield self.reject(location, str(e), task=task)
                continue
            yield self.checked(episode, location)
        pending.clear()

    def _collect(self, unit: Unit, pending: dict[int, _Pending], keys: _BlobKeys,
                 only: set[int] | None = None) -> Iterator[Rejected]:
        """Stream the run's shards into ``pending`` (this bucket's episodes, or ``only`` these)."""
        bucket, buckets, task = unit.param("bucket"), unit.param("buckets"), unit.param("task")
        for shard_index, uri in zip(unit.param("shards"), unit.param("files"), strict=True):
            for rec in self._records(uri):
                location = f"{uri} @ offset {rec.offset} (record {rec.index})"
                if rec.error is not None:
                    if bucket == 0:  # no readable episode id: report it once, not per bucket
                        yield self.reject(location, str(rec.error), task=task)
                    continue
                try:
                    ex = parse_example(rec.data, uri=uri, offset=rec.offset)
                    eid = _transition_id(ex, uri, rec.offset)
                except TrajcorpusError as e:  # no episode to charge it to: report it once
                    if bucket == 0:
                        yield self.reject(location, str(e), task=task)
                    continue
                if eid % buckets != bucket or (only is not None and eid not in only):
                    continue
                episode = pending.get(eid)
                if episode is None:
                    episode = pending[eid] = _Pending()
                try:
                    episode.add(ex, keys, uri, rec.offset, (shard_index, rec.index))
                except TrajcorpusError as e:  # the episode cannot be whole: reject it at the end
                    episode.broken.append(f"{location}: {e}")

    def _assemble(self, p: _Pending, order: list[int] | str | None, eid: int, unit: Unit,
                  game: str, run: int) -> Episode:
        eid_name = f"{game}/run_{run}/episode_{eid}"
        if p.broken:
            raise SourceError(unit.uri, f"{len(p.broken)} unreadable transition(s), first: "
                              f"{p.broken[0]}", key=eid_name)
        if order is None or isinstance(order, str):
            raise SourceError(unit.uri, f"cannot order the transitions of episode_id {eid}: {order}",
                              key=eid_name)
        idx = np.asarray(order, dtype=np.int64)
        first = p.positions[order[0]]
        earliest = min(p.positions)
        frames = np.stack([_gray(decode_image(p.frames[i], p.frame_uri[i], key="o_t[3]",
                                              offset=p.frame_offset[i]),
                                 p.frame_uri[i], p.frame_offset[i]) for i in order])
        actions = np.asarray(p.actions, dtype=np.int64)[idx]
        rewards = np.asarray(p.rewards, dtype=np.float32)[idx]
        terminal = _terminal(np.asarray(p.discounts, dtype=np.float32)[idx], unit.uri,
                             f"{eid_name}/d_t", None)
        stored_returns = sorted(set(p.returns))
        files = unit.param("files")
        return Episode(
            dataset=self.dataset, task=self._task(game, run), agent=self._agent(game, run),
            episode_id=eid_name, order=(int(earliest[0]), int(earliest[1])),
            observations={"observation": frames}, observation_kinds={"observation": "image"},
            actions=actions, action_kind="discrete", rewards=rewards,
            is_terminal=terminal, is_truncated=not terminal,
            return_=float(rewards.sum(dtype=np.float64)),
            source={"uri": files[0] if len(files) == 1 else unit.uri, "layout": "transitions",
                    "files": list(files), "episode_id_uint64": eid,
                    "first_transition": {"shard": int(first[0]), "record": int(first[1])},
                    "stored_episode_return": stored_returns[0] if len(stored_returns) == 1
                    else stored_returns},
        )


