"""Several datasets sampled by weight (Gato mixes its domains this way), resumable."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ShardError
from .epoch import rng
from .stream import ShardDataset, ShardStream, StreamStats

__all__ = ["Mixture", "MixtureStream"]


class Mixture:
    """Several datasets sampled by weight, as Gato mixes its domains: each draw picks a dataset
    with probability weight / sum(weights), from a seeded, resumable sequence of draws. Each
    component loops over its own epochs, so the mixture never ends; take as many batches as the
    training budget."""

    def __init__(self, datasets: Mapping[str, ShardDataset] | Sequence[ShardDataset],
                 weights: Mapping[str, float] | Sequence[float] | None = None):
        if not isinstance(datasets, Mapping):
            datasets = {d.name: d for d in datasets}
        self.datasets = dict(datasets)
        if not self.datasets:
            raise ShardError("Mixture", "needs at least one dataset")
        if weights is None:
            w = [self.datasets[n].weight for n in self.datasets]
        elif isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(self.datasets))
            if unknown:
                raise ShardError(f"Mixture weight {unknown[0]!r}", "names no dataset")
            w = [float(weights.get(n, 0.0)) for n in self.datasets]
        else:
            w = [float(x) for x in weights]
        if len(w) != len(self.datasets) or any(x < 0 or not np.isfinite(x) for x in w) \
                or sum(w) <= 0:
            raise ShardError("Mixture weights", f"need one finite weight >= 0 per dataset with "
                             f"a positive sum, got {w}")
        self.weights = dict(zip(self.datasets, w, strict=True))

    @property
    def stats(self) -> Any:
        """Statistics of the union of the components' configs, merged from the mergeable state
        each job wrote (a :class:`.stats.TrainerInfo`; see :func:`.stats.merged_stats`)."""
        from .stats import merged_stats

        parts = []
        for n, d in self.datasets.items():
            info = getattr(d, "info", None)
            if info is None:
                raise ShardError(f"Mixture component {n!r}", "has no manifest (built from "
                                 "shards=), so no statistics to merge")
            parts.append((d.out, d.name, info))
        return merged_stats("mixture(" + "+".join(self.datasets) + ")", parts)

    def stream(self, consumer: int = 0, consumers: int = 1, *, seed: int = 0, epoch: int = 0,
               shuffle_buffer: int = 0, shuffle_shards: bool | None = None, verify: bool = True,
               skip_bad: bool = False, stats: StreamStats | None = None) -> MixtureStream:
        return MixtureStream(self, consumer=consumer, consumers=consumers, seed=seed, epoch=epoch,
                             options=dict(shuffle_buffer=shuffle_buffer,
                                          shuffle_shards=shuffle_shards, verify=verify,
                                          skip_bad=skip_bad),
                             stats=stats)


class MixtureStream:
    """Draws from component streams by weight; each component restarts with the next epoch when
    it runs out. Draw ``i`` comes from a generator seeded by (seed, consumer, i // block), so a
    resumed stream reproduces the remaining draws without replaying them."""

    _BLOCK = 4096

    def __init__(self, mixture: Mixture, *, consumer: int, consumers: int, seed: int,
                 epoch: int, options: dict, stats: StreamStats | None = None):
        self.mixture = mixture
        self.names = list(mixture.datasets)
        p = np.array([mixture.weights[n] for n in self.names], dtype=np.float64)
        self.p = p / p.sum()
        self.consumer, self.consumers, self.seed = consumer, consumers, int(seed)
        self.options = options
        self.stats = stats if stats is not None else StreamStats()
        self.draws = 0
        self.streams = {n: self._component(n, epoch) for n in self.names}
        self._block: tuple[int, np.ndarray] | None = None

    def _component(self, name: str, epoch: int) -> ShardStream:
        return self.mixture.datasets[name].stream(
            self.consumer, self.consumers, seed=self.seed, epoch=epoch, stats=self.stats,
            **self.options)

    def _choice(self, i: int) -> str:
        b = i // self._BLOCK
        if self._block is None or self._block[0] != b:
            draw = rng(self.seed, self.consumer, b, 0x313C)
            self._block = (b, draw.choice(len(self.names), size=self._BLOCK, p=self.p))
        return self.names[int(self._block[1][i % self._BLOCK])]

    def state_dict(self) -> dict:
        return {"draws": self.draws, "components": {n: s.state_dict()
                                                    for n, s in self.streams.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        comps = state.get("components", {})
        if sorted(comps) != sorted(self.names):
            raise ShardError("mixture state", f"components {sorted(comps)}, expected "
                             f"{sorted(self.names)}")
        for n in self.names:
            s = self._component(n, int(comps[n]["epoch"]))
            s.load_state_dict(comps[n])
            self.streams[n] = s
        self.draws = int(state["draws"])

    def __iter__(self) -> Iterator[dict]:
        iters: dict[str, Iterator[dict]] = {}
        while True:
            name = self._choice(self.draws)
            ex = None
            for _attempt in range(2):
                it = iters.get(name)
                if it is None:
                    it = iters[name] = iter(self.streams[name])
                ex = next(it, None)
                if ex is not None:
                    break
                nxt = self._component(name, self.streams[name].epoch + 1)  # epoch ran out
                self.streams[name], iters[name] = nxt, iter(nxt)
            if ex is None:
                raise ShardError(f"mixture component {name!r}", f"no examples for consumer "
                                 f"{self.consumer} of {self.consumers}")
            self.draws += 1
            yield ex
