"""Batched, resumable iteration for JAX or any NumPy consumer (one process per host)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ShardError
from .collate import collate
from .stream import Mixture, ShardDataset, StreamStats

__all__ = ["NumpyLoader", "batches"]


def batches(stream: Any, batch_size: int, drop_last: bool, collate_options: dict
            ) -> Iterator[dict]:
    """Collated batches of ``batch_size`` examples pulled from ``stream``."""
    if batch_size < 1:
        raise ShardError("batch_size", f"must be >= 1, got {batch_size}")
    buf: list[dict] = []
    for ex in stream:
        buf.append(ex)
        if len(buf) == batch_size:
            yield collate(buf, **collate_options)
            buf = []
    if buf and not drop_last:
        yield collate(buf, **collate_options)


class NumpyLoader:
    """Batches of NumPy arrays (see :func:`.collate.collate`) for host ``rank`` of
    ``world_size`` (e.g. ``jax.process_index()``, ``jax.process_count()``).

    Each host reads its own exact slice of every epoch; ``state_dict()`` after any batch and
    ``load_state_dict()`` in a new process continue with exactly the batches an uninterrupted
    run would have produced. ``dataset`` is a :class:`ShardDataset` or a :class:`Mixture`.
    """

    def __init__(self, dataset: ShardDataset | Mixture, batch_size: int, *, seed: int = 0,
                 epoch: int = 0, shuffle_buffer: int = 0, shuffle_shards: bool | None = None,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 verify: bool = True, skip_bad: bool = False, normalize: bool = False,
                 pad_patches_to: int | None = None, channels: int | None = None):
        self.dataset = dataset
        self.batch_size, self.drop_last = batch_size, drop_last
        self.rank, self.world_size = rank, world_size
        self.stats = StreamStats()
        self._options = dict(seed=seed, shuffle_buffer=shuffle_buffer,
                             shuffle_shards=shuffle_shards, verify=verify, skip_bad=skip_bad,
                             stats=self.stats)
        self._collate = dict(pad_patches_to=pad_patches_to, channels=channels,
                             normalize=normalize)
        self.stream = self._new_stream(epoch)
        self._finished = False  # the current epoch was iterated to its end

    def _new_stream(self, epoch: int) -> Any:
        return self.dataset.stream(self.rank, self.world_size, epoch=epoch, **self._options)

    @property
    def epoch(self) -> int:
        return getattr(self.stream, "epoch", 0)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning at the next iteration."""
        self.stream = self._new_stream(epoch)
        self._finished = False

    def __iter__(self) -> Iterator[dict]:
        """The rest of the current epoch; after a complete pass, the next epoch."""
        if self._finished:
            self.set_epoch(self.epoch + 1)
        yield from batches(self.stream, self.batch_size, self.drop_last, self._collate)
        self._finished = True

    def __len__(self) -> int:
        """Batches in this host's share of one epoch (not defined for a mixture)."""
        n = len(self.stream)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def state_dict(self) -> dict:
        return {"rank": self.rank, "world_size": self.world_size, "finished": self._finished,
                "stream": self.stream.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if (state.get("rank"), state.get("world_size")) != (self.rank, self.world_size):
            raise ShardError("loader state", f"saved by rank {state.get('rank')} of "
                             f"{state.get('world_size')}, this is rank {self.rank} of "
                             f"{self.world_size}")
        inner = state["stream"]
        if "epoch" in inner:
            self.stream = self._new_stream(int(inner["epoch"]))
        self.stream.load_state_dict(inner)
        self._finished = bool(state.get("finished", False))
