"""PyTorch: an IterableDataset of ready batches, and a DataLoader wrapper with state_dict().

Consumers are (rank, DataLoader worker) pairs: consumer = rank * num_workers + worker, so every
example is read exactly once per epoch across all nodes and workers (see :mod:`.stream`).

Resuming: a DataLoader prefetches, so a worker's own position runs ahead of what the training
loop has received. Each batch therefore carries its worker's stream state as of that batch, and
:class:`StatefulLoader` records the state of the last batch it handed out per worker. Loading it
restarts every worker exactly after the last batch the loop saw.

The order across workers is made canonical too: :class:`StatefulLoader` hands out batches in
strict round-robin over the workers that still have data (what DataLoader itself does while
every worker is busy), holding back the few that arrive early, e.g. after a resume, where
DataLoader starts its cycle at worker 0. With the cycle position saved, the batches after a
resume are exactly those an uninterrupted run would have produced, in the same order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import ShardError
from .loaders import batches
from .stream import Mixture, ShardDataset, ShardStream, StreamStats

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

    Use it with ``DataLoader(ds, batch_size=None, num_workers=K)`` or, to save and resume
    mid-epoch, ``ds.loader(num_workers=K)``. ``rank``/``world_size`` default to
    torch.distributed's when it is initialised.
    """

    def __init__(self, dataset: ShardDataset | Mixture, batch_size: int, *, seed: int = 0,
                 epoch: int = 0, shuffle_buffer: int = 0, shuffle_shards: bool | None = None,
                 rank: int | None = None, world_size: int | None = None,
                 drop_last: bool = False, verify: bool = True, skip_bad: bool = False,
                 normalize: bool = False, pad_patches_to: int | None = None,
                 channels: int | None = None):
        super().__init__()
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
        self._options = dict(seed=seed, shuffle_buffer=shuffle_buffer,
                             shuffle_shards=shuffle_shards, verify=verify, skip_bad=skip_bad)
        self._collate = dict(pad_patches_to=pad_patches_to, channels=channels,
                             normalize=normalize)
        self._resume: dict | None = None  # {"num_workers": K, "workers": {id: state | None}}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._resume = None

    def _stream(self, worker: int, workers: int) -> Any:
        stream = self._fresh_stream(worker, workers)
        if self._resume is not None:
            if self._resume["num_workers"] != workers:
                raise ShardError("loader state", f"saved with {self._resume['num_workers']} "
                                 f"workers per node, now {workers}")
            state = self._resume["workers"].get(worker)
            if state is not None:
                stream.load_state_dict(state)
        return stream

    def _fresh_stream(self, worker: int, workers: int) -> Any:
        return self.dataset.stream(self.rank * workers + worker, self.world_size * workers,
                                   epoch=self.epoch, stats=self.stats, **self._options)

    def has_data(self, worker: int, workers: int) -> bool:
        """Whether a worker's share of the epoch is non-empty (a mixture never runs out)."""
        stream = self._fresh_stream(worker, workers)
        return not isinstance(stream, ShardStream) or len(stream) > 0

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        stream = self._stream(worker, workers)
        for batch in batches(stream, self.batch_size, self.drop_last, self._collate):
            out = to_torch(batch)
            last = isinstance(stream, ShardStream) and stream.emitted >= len(stream)
            out[STATE_KEY] = {"worker": worker, "state": stream.state_dict(), "last": last}
            yield out

    def loader(self, num_workers: int = 0, **kwargs: Any) -> StatefulLoader:
        return StatefulLoader(self, num_workers=num_workers, **kwargs)


class StatefulLoader:
    """A DataLoader over a :class:`TorchShardDataset` that knows how far the loop has got.

    ``state_dict()`` may be taken after any batch; ``load_state_dict()`` on a fresh loader (same
    dataset, rank, world size, worker count) makes the next iteration yield exactly the batches
    the interrupted one had left, in the same order. Iterating again after a complete pass
    starts the next epoch; ``set_epoch`` jumps to any epoch.
    """

    def __init__(self, dataset: TorchShardDataset, num_workers: int = 0, **kwargs: Any):
        self.dataset = dataset
        self.num_workers = num_workers
        self._kwargs = kwargs
        self._states: dict[int, dict | None] = {}  # per worker: state after its last batch
        self._done: set[int] = set()  # workers whose share of the epoch is exhausted
        self._next = 0  # the worker whose batch comes next in the round-robin
        self._finished = False

    @property
    def workers(self) -> int:
        return max(self.num_workers, 1)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)
        self._states, self._done, self._next, self._finished = {}, set(), 0, False

    def _advance(self, after: int) -> None:
        k = self.workers
        for step in range(1, k + 1):
            w = (after + step) % k
            if w not in self._done:
                self._next = w
                return
        self._next = -1  # every worker is done

    def __iter__(self) -> Iterator[dict]:
        if self._finished:
            self.set_epoch(self.dataset.epoch + 1)
        k = self.workers
        if not self._states:  # a fresh epoch: workers with an empty share never send a batch
            self._done = {w for w in range(k) if not self.dataset.has_data(w, k)}
            if self._next in self._done:
                self._advance(self._next)
        self.dataset._resume = ({"num_workers": k, "workers": dict(self._states)}
                                if self._states else None)
        loader = DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers,
                            **self._kwargs)
        held: dict[int, deque] = {w: deque() for w in range(k)}
        for batch in loader:
            info = batch.pop(STATE_KEY)
            held[int(info["worker"])].append((batch, info))
            while self._next >= 0 and held[self._next]:
                yield self._hand_out(*held[self._next].popleft())
        # Only a shard skipped at the very end of a share (skip_bad) leaves batches here.
        while any(held.values()):
            w = self._next if self._next >= 0 and held[self._next] else \
                min(x for x in held if held[x])
            yield self._hand_out(*held[w].popleft())
        self._finished = True

    def _hand_out(self, batch: dict, info: dict) -> dict:
        w = int(info["worker"])
        self._states[w] = info["state"]
        if info["last"]:
            self._done.add(w)
        self._advance(w)
        return batch

    def state_dict(self) -> dict:
        d = self.dataset
        return {"epoch": d.epoch, "rank": d.rank, "world_size": d.world_size,
                "num_workers": self.workers, "finished": self._finished, "next": self._next,
                "done": sorted(self._done), "workers": dict(self._states)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        d = self.dataset
        if (state["rank"], state["world_size"]) != (d.rank, d.world_size):
            raise ShardError("loader state", f"saved by rank {state['rank']} of "
                             f"{state['world_size']}, this is rank {d.rank} of {d.world_size}")
        if state["num_workers"] != self.workers:
            raise ShardError("loader state", f"saved with {state['num_workers']} workers, this "
                             f"loader has {self.workers}")
        d.set_epoch(int(state["epoch"]))
        self._states = {int(w): s for w, s in state["workers"].items()}
        self._done = {int(w) for w in state.get("done", [])}
        self._next = int(state.get("next", 0))
        self._finished = bool(state.get("finished", False))
