"""Batched, resumable iteration for JAX or any NumPy consumer (one process per host), and the
dealing of an epoch into equal batches that the PyTorch loader shares.

Every rank yields the same number of batches per epoch (:class:`.epoch.Deal`); a batch's
``is_padding`` (bool [B]) marks the examples that only fill a short rank's share. The state
after any batch is the epoch's unseen positions, the same on every rank that consumed in
lockstep, and a loader with another world size continues the same epoch from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import ShardError
from .collate import collate
from .epoch import Deal, EpochPlan, normalize_intervals
from .mixture import Mixture
from .stream import ShardDataset, StreamStats, read_positions

__all__ = ["NumpyLoader", "batches", "deal_batches", "EpochState"]


def batches(stream: Any, batch_size: int, drop_last: bool, collate_options: dict
            ) -> Iterator[dict]:
    """Collated batches of ``batch_size`` examples pulled from ``stream`` (a mixture's)."""
    if batch_size < 1:
        raise ShardError("batch_size", f"must be >= 1, got {batch_size}")
    buf: list[dict] = []
    for ex in stream:
        buf.append(ex)
        if len(buf) == batch_size:
            yield _collate(buf, [False] * len(buf), collate_options)
            buf = []
    if buf and not drop_last:
        yield _collate(buf, [False] * len(buf), collate_options)


def _collate(examples: list[dict], padding: list[bool], options: dict) -> dict:
    batch = collate(examples, **options)
    batch["is_padding"] = np.asarray(padding, dtype=bool)
    return batch


def deal_batches(dataset: ShardDataset, plan: EpochPlan, deal: Deal, rank: int, worker: int,
                 first: int, collate_options: dict, read_options: dict
                 ) -> Iterator[tuple[int, dict]]:
    """(hand-out index, batch) for the worker's batches from its local batch ``first`` on."""
    start, stop = deal.worker_range(worker)
    js = list(range(start + first, stop))
    if not js:
        return
    parts = [deal.batch(rank, j) for j in js]
    positions = np.concatenate([p for p, _ in parts])
    stats = read_options.get("stats") or StreamStats()
    examples = read_positions(dataset.shards, plan, positions, stats=stats,
                              where=f"rank {rank} worker {worker}",
                              **{k: v for k, v in read_options.items() if k != "stats"})
    for k, (pos, pad) in enumerate(parts):
        got = [(ex, bool(p)) for ex, p in zip((next(examples) for _ in pos), pad, strict=True)]
        kept = [(ex, p) for ex, p in got if ex is not None]
        stats.lost_examples += len(got) - len(kept)
        if kept:  # a batch of only lost examples (skip_bad) is skipped
            yield (deal.handout_index[(worker, first + k)],
                   _collate([e for e, _ in kept], [p for _, p in kept], collate_options))


class EpochState:
    """Where a loader is in its epoch: the plan, the current deal and batches handed out."""

    def __init__(self, dataset: ShardDataset, order: dict, epoch: int, world_size: int,
                 workers: int, batch_size: int, drop_last: bool,
                 remaining: tuple | None = None):
        self.dataset, self.order = dataset, order
        self.plan = dataset.plan(epoch=epoch, **order)
        self.epoch = int(epoch)
        self.shape = (world_size, batch_size, drop_last)
        left = ((0, self.plan.total),) if remaining is None else normalize_intervals(remaining)
        self.deal = Deal(left, self.plan.total, world_size, workers, batch_size, drop_last)
        self.handed = 0
        self.finished = False

    def first_batch(self, worker: int) -> int:
        """The worker's first local batch not yet handed out."""
        return sum(1 for w, _ in self.deal.handout[:self.handed] if w == worker)

    def state_dict(self) -> dict:
        d = self.deal
        return {"epoch": self.epoch, "fingerprint": self.plan.fingerprint,
                "total": self.plan.total, "finished": self.finished,
                "remaining": [list(iv) for iv in d.remaining_after(self.handed)],
                # the deal in progress: a loader of the same shape continues it batch for batch
                "deal": {"remaining": [list(iv) for iv in d.remaining], "handed": self.handed,
                         "shape": [d.world_size, d.workers, d.batch_size, d.drop_last]}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], dataset: ShardDataset, order: dict,
                   world_size: int, workers: int, batch_size: int, drop_last: bool
                   ) -> EpochState:
        """The state's epoch continued: the same deal when this loader has its shape, else
        the unseen positions dealt again for this world size, worker count and batch size."""
        if "remaining" not in state:
            raise ShardError("loader state", "not a ShardDataset loader's state")
        deal = state.get("deal") or {}
        same = list(deal.get("shape", [])) == [world_size, workers, batch_size, drop_last]
        left = deal["remaining"] if same else state["remaining"]
        new = cls(dataset, order, int(state["epoch"]), world_size, workers, batch_size,
                  drop_last, remaining=tuple(tuple(iv) for iv in left))
        if state.get("fingerprint") != new.plan.fingerprint or \
                int(state.get("total", -1)) != new.plan.total:
            raise ShardError("loader state", "saved for other shards, seed or shuffle settings")
        if any(not 0 <= a < b <= new.plan.total for a, b in new.deal.remaining):
            raise ShardError("loader state", f"remaining positions outside 0..{new.plan.total}")
        new.handed = int(deal["handed"]) if same else 0
        new.finished = bool(state.get("finished", False))
        return new


class NumpyLoader:
    """Batches of NumPy arrays (see :func:`.collate.collate`, plus ``is_padding``) for host
    ``rank`` of ``world_size`` (e.g. ``jax.process_index()``, ``jax.process_count()``).

    Over a :class:`ShardDataset` every host yields ``len(loader)`` batches per epoch; padding
    (default) or ``drop_last`` makes the shares equal. ``state_dict()`` after any batch is the
    same on every host, and ``load_state_dict()`` on loaders of any world size or batch size
    continues the epoch with exactly the examples not yet seen. A :class:`Mixture` never ends;
    its state belongs to this host and needs the same world size to resume.
    """

    def __init__(self, dataset: ShardDataset | Mixture, batch_size: int, *, seed: int = 0,
                 epoch: int = 0, shuffle_buffer: int = 0, shuffle_shards: bool | None = None,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 verify: bool = True, skip_bad: bool = False, normalize: bool = False,
                 pad_patches_to: int | None = None, channels: int | None = None):
        if batch_size < 1:
            raise ShardError("batch_size", f"must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size, self.drop_last = batch_size, drop_last
        self.rank, self.world_size = rank, world_size
        self.stats = StreamStats()
        self._order = dict(seed=seed, shuffle_buffer=shuffle_buffer,
                           shuffle_shards=shuffle_shards)
        self._read = dict(verify=verify, skip_bad=skip_bad, stats=self.stats)
        self._collate = dict(pad_patches_to=pad_patches_to, channels=channels,
                             normalize=normalize)
        self._finished = False
        self.set_epoch(epoch)

    @property
    def elastic(self) -> bool:
        return isinstance(self.dataset, ShardDataset)

    @property
    def epoch(self) -> int:
        return self._state.epoch if self.elastic else getattr(self.stream, "epoch", 0)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning at the next iteration."""
        if self.elastic:
            self._state = EpochState(self.dataset, self._order, epoch, self.world_size, 1,
                                     self.batch_size, self.drop_last)
            self._state.deal.real_span(self.rank)  # a rank outside the world is an error
        else:
            self.stream = self.dataset.stream(self.rank, self.world_size, epoch=epoch,
                                              **self._order, **self._read)
        self._finished = False

    def __iter__(self) -> Iterator[dict]:
        """The rest of the current epoch; after a complete pass, the next epoch."""
        if self._finished:
            self.set_epoch(self.epoch + 1)
        if not self.elastic:
            yield from batches(self.stream, self.batch_size, self.drop_last, self._collate)
            self._finished = True
            return
        st = self._state
        for _, batch in deal_batches(self.dataset, st.plan, st.deal, self.rank, 0, st.handed,
                                     self._collate, self._read):
            st.handed += 1
            yield batch
        st.handed = len(st.deal)
        st.finished = self._finished = True

    def __len__(self) -> int:
        """Batches this pass over the epoch yields (the same on every rank)."""
        if not self.elastic:
            raise TypeError("a Mixture never ends: it has no length")
        if self._finished:  # the next iteration is the next epoch
            return len(EpochState(self.dataset, self._order, self.epoch + 1, self.world_size,
                                  1, self.batch_size, self.drop_last).deal)
        return len(self._state.deal) - self._state.handed

    def state_dict(self) -> dict:
        if self.elastic:
            return self._state.state_dict()
        return {"rank": self.rank, "world_size": self.world_size, "finished": self._finished,
                "stream": self.stream.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.elastic:
            self._state = EpochState.from_state(state, self.dataset, self._order,
                                                self.world_size, 1, self.batch_size,
                                                self.drop_last)
            self._finished = self._state.finished
            return
        if (state.get("rank"), state.get("world_size")) != (self.rank, self.world_size):
            raise ShardError("loader state", f"saved by rank {state.get('rank')} of "
                             f"{state.get('world_size')}, this is rank {self.rank} of "
                             f"{self.world_size} (a Mixture resumes with the same world size)")
        self.stream.load_state_dict(state["stream"])
        self._finished = bool(state.get("finished", False))
