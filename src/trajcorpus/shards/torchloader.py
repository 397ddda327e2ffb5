"""PyTorch: an IterableDataset of ready batches, and a DataLoader wrapper with state_dict().

Over a :class:`ShardDataset`, each rank's share of the epoch is cut into ``len(dataset)``
batches (the same number on every rank, see :class:`.epoch.Deal`), and DataLoader worker ``w``
produces a contiguous run of them, so a worker reads about 1/(ranks x workers) of the shards.
Each batch carries its hand-out index; :class:`StatefulLoader` hands batches out in that order
(strict round-robin over the workers that still have batches, holding back early arrivals, e.g.
after a resume, where DataLoader restarts its cycle at worker 0), so the batch sequence is the
same whatever the timing. Its state is the epoch's unseen positions after the batches the loop
received (a DataLoader prefetches, so the workers' own progress runs ahead); a loader with
another world size, worker count or batch size continues from it.

A :class:`Mixture` never ends; worker ``w`` of rank ``r`` is consumer ``r * workers + w`` of its
draws, and resuming one needs the same world size and worker count.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import ShardError
from .loaders import EpochState, batches, deal_batches
from .mixture import Mixture
from .stream import ShardDataset, StreamStats

__all__ = ["TorchShardDataset", "StatefulLoader", "to_torch", "STATE_KEY"]

STATE_KEY = "__stream__"


def to_torch(batch: dict) -> dict:
    """NumPy arrays -> tensors without copying; lists of str stay lists."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class TorchShardDataset(IterableDataset):
    """Batches of tensors from a :class:`ShardDataset` or :class:`Mixture`.

    Use it with ``DataLoader(ds, batch_size=None, num_workers=K)`` (``len()`` is then what
    every rank yields) or, to save and resume mid-epoch, ``ds.loader(num_workers=K)``.
    ``rank``/``world_size`` default to torch.distributed's when it is initialised.
    """

    def __init__(self, dataset: ShardDataset | Mixture, batch_size: int, *, seed: int = 0,
                 epoch: int = 0, shuffle_buffer: int = 0, shuffle_shards: bool | None = None,
                 rank: int | None = None, world_size: int | None = None,
                 drop_last: bool = False, verify: bool = True, skip_bad: bool = False,
                 normalize: bool = False, pad_patches_to: int | None = None,
                 channels: int | None = None):
        super().__init__()
        if batch_size < 1:
            raise ShardError("batch_size", f"must be >= 1, got {batch_size}")
        if not isinstance(dataset, (ShardDataset, Mixture)):  # e.g. a path: fail here, not later
            raise ShardError(repr(dataset)[:200], "TorchShardDataset reads a ShardDataset or "
                             "Mixture, e.g. TorchShardDataset(ShardDataset(OUT, CONFIG), "
                             f"batch_size=32), not a {type(dataset).__name__}")
        dr, dw = _distributed()
        self.dataset = dataset
        self.batch_size, self.drop_last = batch_size, drop_last
        self.rank = dr if rank is None else rank
        self.world_size = dw if world_size is None else world_size
        self.epoch = epoch
        self.stats = StreamStats()  # per process: each worker has its own copy
        self._order = dict(seed=seed, shuffle_buffer=shuffle_buffer,
                           shuffle_shards=shuffle_shards)
        self._read = dict(verify=verify, skip_bad=skip_bad)
        self._collate = dict(pad_patches_to=pad_patches_to, channels=channels,
                             normalize=normalize)
        # what the next iteration continues from: an EpochState's remaining positions
        # (ShardDataset) or {"handed": n, "workers": {w: stream state}} (Mixture)
        self._resume: Any = None

    @property
    def elastic(self) -> bool:
        return isinstance(self.dataset, ShardDataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._resume = None

    def epoch_state(self, workers: int) -> EpochState:
        resume = self._resume or {}
        st = EpochState(self.dataset, self._order, self.epoch, self.world_size, workers,
                        self.batch_size, self.drop_last, remaining=resume.get("remaining"))
        st.handed = int(resume.get("handed", 0))
        st.deal.real_span(self.rank)  # a rank outside the world size is an error
        return st

    def __len__(self) -> int:
        """Batches of this pass over the epoch, on every rank (whatever the worker count)."""
        if not self.elastic:
            raise TypeError("a Mixture never ends: it has no length")
        st = self.epoch_state(1)
        return len(st.deal) - st.handed

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.elastic:
            st = self.epoch_state(workers)
            for t, batch in deal_batches(self.dataset, st.plan, st.deal, self.rank, worker,
                                         st.first_batch(worker), self._collate,
                                         dict(self._read, stats=self.stats)):
                out = to_torch(batch)
                out[STATE_KEY] = {"t": t}
                yield out
            return
        stream = self.dataset.stream(self.rank * workers + worker, self.world_size * workers,
                                     epoch=self.epoch, stats=self.stats, **self._order,
                                     **self._read)
        handed = 0
        if self._resume is not None:
            handed = int(self._resume["handed"])
            state = self._resume["workers"].get(str(worker), self._resume["workers"].get(worker))
            if state is not None:
                stream.load_state_dict(state)
        k = max(0, -(-(handed - worker) // workers))  # this worker's next round-robin turn
        for batch in batches(stream, self.batch_size, self.drop_last, self._collate):
            out = to_torch(batch)
            out[STATE_KEY] = {"t": k * workers + worker, "state": stream.state_dict()}
            k += 1
            yield out

    def loader(self, num_workers: int = 0, **kwargs: Any) -> StatefulLoader:
        return StatefulLoader(self, num_workers=num_workers, **kwargs)


class StatefulLoader:
    """A DataLoader over a :class:`TorchShardDataset` that knows how far the loop has got.

    ``state_dict()`` may be taken after any batch. Over a ShardDataset it is the same on every
    rank that consumed in lockstep, and ``load_state_dict()`` on a loader with any world size,
    worker count or batch size makes the next iteration yield exactly the examples not yet seen
    in that epoch (same settings: exactly the batches the interrupted run had left). Iterating
    again after a complete pass starts the next epoch; ``set_epoch`` jumps to any epoch.
    """

    def __init__(self, dataset: TorchShardDataset, num_workers: int = 0, **kwargs: Any):
        self.dataset = dataset
        self.num_workers = num_workers
        self._kwargs = kwargs
        self._handed = 0
        self._workers: dict[str, dict] = {}  # Mixture: per worker, the state after its batch
        self._finished = False
        self._state: EpochState | None = None

    @property
    def workers(self) -> int:
        return max(self.num_workers, 1)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)
        self._handed, self._workers, self._finished, self._state = 0, {}, False, None

    def __len__(self) -> int:
        """Batches the next iteration yields (the same on every rank)."""
        if self._finished:
            return len(EpochState(self.dataset.dataset, self.dataset._order,
                                  self.dataset.epoch + 1, self.dataset.world_size, 1,
                                  self.dataset.batch_size, self.dataset.drop_last).deal)
        return len(self._epoch_state().deal) - self._handed

    def _epoch_state(self) -> EpochState:
        if self._state is None:
            self.dataset._resume = None
            self._state = self.dataset.epoch_state(self.workers)
        return self._state

    def __iter__(self) -> Iterator[dict]:
        if self._finished:
            self.set_epoch(self.dataset.epoch + 1)
        d = self.dataset
        if d.elastic:
            st = self._epoch_state()
            d._resume = {"remaining": st.deal.remaining, "handed": self._handed}
            total = len(st.deal)
        else:
            d._resume = {"handed": self._handed, "workers": dict(self._workers)}
            total = None
        loader = DataLoader(d, batch_size=None, num_workers=self.num_workers, **self._kwargs)
        held: dict[int, dict] = {}
        for batch in loader:
            info = batch.pop(STATE_KEY)
            held[int(info["t"])] = (batch, info)
            while self._handed in held:
                out, got = held.pop(self._handed)
                if "state" in got:
                    self._workers[str(self._handed % self.workers)] = got["state"]
                self._handed += 1
                yield out
        if total is not None and self._handed < total and not d._read["skip_bad"]:
            raise ShardError("StatefulLoader", f"the workers sent {self._handed} of {total} "
                             "batches")
        for t in sorted(held):  # only batches skipped for bad shards leave gaps
            self._handed = t + 1
            yield held[t][0]
        self._finished = True

    def state_dict(self) -> dict:
        d = self.dataset
        if d.elastic:
            st = self._epoch_state()
            st.handed, st.finished = self._handed, self._finished
            return st.state_dict()
        return {"epoch": d.epoch, "rank": d.rank, "world_size": d.world_size,
                "num_workers": self.workers, "finished": self._finished,
                "handed": self._handed, "workers": dict(self._workers)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        d = self.dataset
        if d.elastic:
            st = EpochState.from_state(state, d.dataset, d._order, d.world_size, self.workers,
                                       d.batch_size, d.drop_last)
            d.set_epoch(st.epoch)
            self._state, self._handed, self._finished = st, st.handed, st.finished
            self._workers = {}
            return
        if (state.get("rank"), state.get("world_size"), state.get("num_workers")) != \
                (d.rank, d.world_size, self.workers):
            raise ShardError("loader state", f"saved by rank {state.get('rank')} of "
                             f"{state.get('world_size')} with {state.get('num_workers')} "
                             f"workers, this is rank {d.rank} of {d.world_size} with "
                             f"{self.workers} (a Mixture resumes with the same split)")
        d.set_epoch(int(state["epoch"]))
        self._state = None
        self._workers = dict(state["workers"])
        self._handed = int(state["handed"])
        self._finished = bool(state.get("finished", False))
