"""One epoch's global order, and how it is dealt to ranks and DataLoader workers in batches.

The order (:class:`EpochPlan`) depends on (shards, seed, epoch, shuffle settings) only, never on
the world size: position g of the epoch is the example at position ``file_positions(g)`` of the
epoch's file sequence (the shards in a seeded per-epoch order, each shard's examples in file
order). Shuffling permutes each block of ``shuffle_buffer`` consecutive positions with a
generator seeded by (seed, epoch, super-block of >= 4096 positions), so any position is found
without computing the rest of the epoch, and a reader holds at most about one block of examples.

:class:`Deal` splits what is left of an epoch (a list of global position intervals) into equal
shares: every rank gets the same number of examples (the default pads the short ranks, by one
example at most, with the epoch's first examples, flagged as padding; ``drop_last`` drops the
remainder instead), cut into batches; each rank's batches go to its DataLoader workers in
contiguous runs and are handed out in strict round-robin. All ranks have the same batch
structure, so after n batches handed out on every rank the positions still unseen are known to
every rank alike (:meth:`Deal.remaining_after`): that list is the loaders' state, and a loader
with another world size, worker count or batch size deals it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import ShardError

__all__ = ["EpochPlan", "Deal", "shard_order", "rng", "flat_positions", "normalize_intervals"]

Intervals = tuple[tuple[int, int], ...]
_SUPER = 4096  # positions ordered per generator (a generator costs ~50 us to seed)


def rng(*words: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(w) & 0xFFFFFFFF for w in words]))


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The epoch's shard order, the same on every node and worker."""
    if not shuffle:
        return np.arange(num_shards)
    return rng(seed, epoch, 0x5A4D).permutation(num_shards)


class EpochPlan:
    """The global order of one epoch (see the module docstring)."""

    def __init__(self, counts: Sequence[int], *, seed: int, epoch: int, shuffle_buffer: int,
                 shuffle_shards: bool, identity: Sequence = ()):
        self.seed, self.epoch = int(seed), int(epoch)
        self.block = int(shuffle_buffer) if shuffle_buffer > 1 else 0
        self.perm = shard_order(len(counts), self.seed, self.epoch, shuffle_shards)
        sizes = np.asarray(counts, dtype=np.int64)[self.perm]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.total = int(self.starts[-1])
        self.fingerprint = hashlib.sha256(repr((list(identity), list(counts), self.seed,
                                                self.block, bool(shuffle_shards))).encode()
                                          ).hexdigest()[:16]

    def file_positions(self, g: np.ndarray) -> np.ndarray:
        """Where global positions ``g`` are in the epoch's file sequence."""
        g = np.asarray(g, dtype=np.int64)
        if not self.block or g.size == 0:
            return g.copy()
        out = np.empty_like(g)
        span = self.block * -(-_SUPER // self.block)  # whole blocks, >= _SUPER positions
        supers = g // span
        by = np.argsort(supers, kind="stable")
        ids, first = np.unique(supers[by], return_index=True)
        for s, sel in zip(ids.tolist(), np.split(by, first[1:]), strict=True):
            a = s * span
            n = min(span, self.total - a)
            # one generator per super-block; sorting (block id + uniform key) permutes each
            # block within itself, so a position never leaves its block
            keys = np.arange(n) // self.block + rng(self.seed, self.epoch, s, 0x5B0F).random(n)
            out[sel] = a + np.argsort(keys, kind="stable")[g[sel] - a]
        return out


def normalize_intervals(intervals: Sequence[Sequence[int]]) -> Intervals:
    """Sorted, merged, non-empty half-open intervals."""
    out: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in intervals):
        if a >= b:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def flat_positions(intervals: Intervals, a: int, b: int) -> np.ndarray:
    """Items [a, b) of the sequence the intervals spell out, in order."""
    parts, seen = [], 0
    for s, e in intervals:
        n = e - s
        lo, hi = max(a - seen, 0), min(b - seen, n)
        if lo < hi:
            parts.append(np.arange(s + lo, s + hi, dtype=np.int64))
        seen += n
        if seen >= b:
            break
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _flat_intervals(intervals: Intervals, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The global intervals covered by flat spans [a, b) of the sequence ``intervals`` spell."""
    starts = np.concatenate([[0], np.cumsum([e - s for s, e in intervals])]).tolist()
    out = []
    for a, b in spans:
        for (s, _), f0, f1 in zip(intervals, starts, starts[1:], strict=False):
            lo, hi = max(a, f0), min(b, f1)
            if lo < hi:
                out.append((s + lo - f0, s + hi - f0))
    return out


@dataclass(frozen=True)
class Deal:
    """Equal shares of an epoch's ``remaining`` positions for ``world_size`` ranks x
    ``workers`` DataLoader workers, in batches of ``batch_size``."""

    remaining: Intervals
    total: int  # examples in the epoch (padding wraps around them)
    world_size: int
    workers: int
    batch_size: int
    drop_last: bool = False

    def __post_init__(self) -> None:
        for name in ("world_size", "workers", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ShardError(name, f"must be >= 1, got {getattr(self, name)}")

    @cached_property
    def left(self) -> int:
        return sum(b - a for a, b in self.remaining)

    @cached_property
    def per_rank(self) -> int:
        """Examples (padding included) each rank yields."""
        r = self.world_size
        return self.left // r if self.drop_last else -(-self.left // r)

    def __len__(self) -> int:
        """Batches each rank yields."""
        b = self.batch_size
        return self.per_rank // b if self.drop_last else -(-self.per_rank // b)

    def real_span(self, rank: int) -> tuple[int, int]:
        """Rank's real examples: items [a, b) of the remaining sequence."""
        if not 0 <= rank < self.world_size:
            raise ShardError(f"rank {rank} of {self.world_size}", "need 0 <= rank < world_size")
        if self.drop_last:
            return rank * self.per_rank, (rank + 1) * self.per_rank
        return rank * self.left // self.world_size, (rank + 1) * self.left // self.world_size

    def pad_position(self, rank: int) -> int:
        """The padding example of a short rank: the epoch's first examples, in rank order."""
        short = sum(1 for r in range(rank) if self._short(r))
        return short % max(self.total, 1)

    def _short(self, rank: int) -> bool:
        a, b = self.real_span(rank)
        return b - a < self.per_rank

    def worker_range(self, worker: int) -> tuple[int, int]:
        """The worker's batches [first, stop) of its rank's sequence."""
        n, w = len(self), self.workers
        return n * worker // w, n * (worker + 1) // w

    @cached_property
    def handout(self) -> list[tuple[int, int]]:
        """(worker, local batch) in hand-out order: strict round-robin over the workers that
        still have batches."""
        counts = [b - a for a, b in (self.worker_range(w) for w in range(self.workers))]
        return [(w, k) for k in range(max(counts, default=0)) for w in range(self.workers)
                if k < counts[w]]

    @cached_property
    def handout_index(self) -> dict[tuple[int, int], int]:
        return {wk: t for t, wk in enumerate(self.handout)}

    def batch(self, rank: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Global positions and padding flags of the rank's batch ``j``."""
        a, b = self.real_span(rank)
        lo, hi = j * self.batch_size, min((j + 1) * self.batch_size, self.per_rank)
        real = flat_positions(self.remaining, a + lo, a + min(hi, b - a))
        pads = max(0, hi - max(lo, b - a))
        pos = np.concatenate([real, np.full(pads, self.pad_position(rank), np.int64)])
        return pos, np.arange(lo, hi) >= b - a

    def remaining_after(self, handed: int) -> Intervals:
        """What no rank has seen once every rank handed out ``handed`` batches."""
        consumed: list[tuple[int, int]] = []
        done = self.handout[:handed]
        for w in range(self.workers):
            first, _ = self.worker_range(w)
            k = sum(1 for x, _ in done if x == w)
            for r in range(self.world_size):
                a, b = self.real_span(r)
                lo = a + first * self.batch_size
                hi = a + min((first + k) * self.batch_size, b - a)
                if lo < hi:
                    consumed.append((lo, hi))
        left = []
        cursor = 0
        for a, b in sorted(consumed):
            if cursor < a:
                left.append((cursor, a))
            cursor = max(cursor, b)
        if cursor < self.left:
            left.append((cursor, self.left))
        return normalize_intervals(_flat_intervals(self.remaining, left))
