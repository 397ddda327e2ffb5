"""Streaming examples out of shards: the split across consumers, the seeded shuffle, exact resume.

One epoch is a global sequence of every example: the shards in a seeded per-epoch order, each
shard's examples in file order. Consumer ``c`` of ``C`` (C = nodes x DataLoader workers) takes the
contiguous slice ``[c*N//C, (c+1)*N//C)`` of that sequence. Slices cut through shards where they
must, so every example is read exactly once per epoch and consumers differ by at most one example
however many shards there are (7 shards over 6 consumers included).

The shuffle is a buffer shuffle (as in WebDataset and tf.data), but played on positions first:
the emission order of a consumer's slice is a pure function of (seed, epoch, consumer), computed
up front from integers. Reading then streams the slice in file order and holds at most about a
buffer's worth of decoded examples until their turn. The only state is how many examples were
emitted, so ``state_dict()`` is a few integers and resuming replays exactly the remaining order.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .. import fs
from ..errors import ShardError
from .manifest import Manifest, read_manifest
from .parquetcodec import iter_parquet
from .tarcodec import iter_tar

__all__ = ["ShardRef", "ShardDataset", "ShardStream", "StreamStats", "Mixture", "MixtureStream",
           "consumer_span", "shard_order", "emission_order"]

_CHUNK = 8 << 20


@dataclass(frozen=True)
class ShardRef:
    """One shard to read: where, how many examples, and what the manifest says it hashes to."""

    uri: str
    examples: int
    format: str
    sha256: str | None = None
    bytes: int | None = None


@dataclass
class StreamStats:
    """What a stream skipped (only with ``skip_bad=True``); shared by a mixture's components."""

    bad_shards: list[tuple[str, str]] = field(default_factory=list)
    lost_examples: int = 0


# ----------------------------------------------------------------------------- the plan

def _rng(*words: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(w) & 0xFFFFFFFF for w in words]))


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The epoch's shard order, the same on every node and worker (it only depends on seed and
    epoch)."""
    if not shuffle:
        return np.arange(num_shards)
    return _rng(seed, epoch, 0x5A4D).permutation(num_shards)


def consumer_span(total: int, consumer: int, consumers: int) -> tuple[int, int]:
    """Consumer ``consumer``'s slice [a, b) of ``total`` global positions."""
    if not 0 <= consumer < consumers:
        raise ShardError(f"consumer {consumer} of {consumers}", "need 0 <= consumer < consumers")
    return total * consumer // consumers, total * (consumer + 1) // consumers


def emission_order(n: int, buffer: int, rng: np.random.Generator | None) -> np.ndarray:
    """The order in which a size-``buffer`` shuffle buffer emits items 0..n-1 read in order.

    Standard algorithm: fill the buffer, then for each new item emit a uniformly chosen buffered
    one and put the new item in its place; drain the rest in random order. Every emitted item was
    read at most ``buffer`` items earlier, which bounds what the reader must hold.
    """
    if buffer <= 1 or rng is None or n <= 1:
        return np.arange(n, dtype=np.int64)
    size = min(buffer, n)
    buf = list(range(size))
    picks = rng.integers(0, size, size=n - size)
    out = np.empty(n, dtype=np.int64)
    for i, j in enumerate(picks.tolist()):  # one step per example, not per value
        out[i] = buf[j]
        buf[j] = size + i
    out[n - size:] = np.asarray(buf, dtype=np.int64)[rng.permutation(size)]
    return out


# ----------------------------------------------------------------------------- datasets

class ShardDataset:
    """What to read: one config, split and format of an output folder (via its manifest), or an
    explicit list of :class:`ShardRef`. Holds no iteration state, so it pickles to workers."""

    def __init__(self, out: str | None = None, config: str | None = None, split: str = "train",
                 fmt: str | None = None, *, shards: Sequence[ShardRef] | None = None,
                 weight: float | None = None, manifest: Manifest | None = None):
        if shards is not None:
            self.shards = list(shards)
            self.name = config or "shards"
            self.weight = 1.0 if weight is None else float(weight)
            return
        if out is None or config is None:
            raise ShardError("ShardDataset", "give an output folder and a config, or shards=")
        manifest = manifest or read_manifest(out)
        if config not in manifest.configs:
            raise ShardError(f"{out} config {config!r}",
                             f"not in the manifest (configs: {sorted(manifest.configs)})")
        formats = manifest.formats(config)
        fmt = fmt or ("parquet" if "parquet" in formats else "webdataset")
        files = manifest.files_of(config, split, fmt)
        if not files:
            raise ShardError(f"{out} config {config!r}", f"no {fmt} shards for split {split!r} "
                             f"(formats {formats}, splits {manifest.splits(config)})")
        self.shards = [ShardRef(fs.join(out, f.path), f.examples, f.format, f.sha256, f.bytes)
                       for f in files]
        self.name = config
        info = self.info = manifest.configs[config]
        entry = info.get("catalog_entry") or {}
        self.weight = float(weight if weight is not None
                            else entry.get("mixture_weight", info.get("mixture_weight", 1.0)))

    @property
    def stats(self) -> Any:
        """The config's statistics, reference scores and semantics (a :class:`.stats.TrainerInfo`)."""
        from .stats import TrainerInfo

        return TrainerInfo(self.name, getattr(self, "info", {}))

    def __len__(self) -> int:
        return sum(s.examples for s in self.shards)

    def stream(self, consumer: int = 0, consumers: int = 1, *, seed: int = 0, epoch: int = 0,
               shuffle_buffer: int = 0, shuffle_shards: bool | None = None, verify: bool = True,
               skip_bad: bool = False, stats: StreamStats | None = None) -> ShardStream:
        return ShardStream(self.shards, consumer=consumer, consumers=consumers, seed=seed,
                           epoch=epoch, shuffle_buffer=shuffle_buffer,
                           shuffle_shards=shuffle_buffer > 1 if shuffle_shards is None
                           else shuffle_shards, verify=verify, skip_bad=skip_bad, stats=stats)


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

    def stream(self, consumer: int = 0, consumers: int = 1, *, seed: int = 0, epoch: int = 0,
               shuffle_buffer: int = 0, shuffle_shards: bool | None = None, verify: bool = True,
               skip_bad: bool = False, stats: StreamStats | None = None) -> MixtureStream:
        return MixtureStream(self, consumer=consumer, consumers=consumers, seed=seed, epoch=epoch,
                             options=dict(shuffle_buffer=shuffle_buffer,
                                          shuffle_shards=shuffle_shards, verify=verify,
                                          skip_bad=skip_bad),
                             stats=stats)


# ----------------------------------------------------------------------------- streams

def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class ShardStream:
    """One consumer's examples for one epoch, resumable (see the module docstring)."""

    def __init__(self, shards: Sequence[ShardRef], *, consumer: int = 0, consumers: int = 1,
                 seed: int = 0, epoch: int = 0, shuffle_buffer: int = 0,
                 shuffle_shards: bool = False, verify: bool = True, skip_bad: bool = False,
                 stats: StreamStats | None = None):
        self.shards = list(shards)
        self.consumer, self.consumers = consumer, consumers
        self.seed, self.epoch = int(seed), int(epoch)
        self.shuffle_buffer, self.shuffle_shards = int(shuffle_buffer), bool(shuffle_shards)
        self.verify, self.skip_bad = verify, skip_bad
        self.stats = stats if stats is not None else StreamStats()
        self.emitted = 0
        self._start, self._stop = consumer_span(sum(s.examples for s in self.shards), consumer,
                                                consumers)
        self._order_cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self._stop - self._start

    @property
    def fingerprint(self) -> str:
        return _fingerprint([(s.uri.rsplit("/", 1)[-1], s.examples) for s in self.shards],
                            self.consumer, self.consumers, self.seed, self.shuffle_buffer,
                            self.shuffle_shards)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "emitted": self.emitted, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("fingerprint") != self.fingerprint:
            raise ShardError("stream state", "saved for other shards, seed, shuffle or consumer "
                             "split (same world size and worker count are needed to resume)")
        emitted = int(state["emitted"])
        if not 0 <= emitted <= len(self):
            raise ShardError("stream state", f"emitted {emitted} outside 0..{len(self)}")
        self.epoch, self.emitted = int(state["epoch"]), emitted

    def order(self) -> np.ndarray:
        """This consumer's emission order for the epoch, as positions 0..len-1 of its slice."""
        if self._order_cache is None or self._order_cache[0] != self.epoch:
            rng = _rng(self.seed, self.epoch, self.consumer, 0x5B0F) \
                if self.shuffle_buffer > 1 else None
            self._order_cache = (self.epoch, emission_order(len(self), self.shuffle_buffer, rng))
        return self._order_cache[1]

    def __iter__(self) -> Iterator[dict]:
        n = len(self)
        if self.emitted >= n:
            return
        order = self.order()
        pending = np.ones(n, dtype=bool)
        pending[order[:self.emitted]] = False
        source = self._read(int(order[self.emitted:].min()), pending)
        held: dict[int, dict | None] = {}
        try:
            for k in range(self.emitted, n):
                target = int(order[k])
                while target not in held:
                    try:
                        pos, ex = next(source)
                    except StopIteration:
                        raise ShardError(f"consumer {self.consumer}", f"shards ended before "
                                         f"position {target} of {n}") from None
                    held[pos] = ex
                ex = held.pop(target)
                self.emitted = k + 1
                if ex is None:
                    self.stats.lost_examples += 1
                    continue
                yield ex
        finally:
            source.close()

    # -- reading in file order

    def _read(self, first: int, pending: np.ndarray) -> Iterator[tuple[int, dict | None]]:
        """(local position, example) for pending positions >= first, in file order; None for
        examples of a skipped bad shard."""
        perm = shard_order(len(self.shards), self.seed, self.epoch, self.shuffle_shards)
        counts = np.array([self.shards[i].examples for i in perm], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)])
        lo, hi = self._start + first, self._stop
        for j in range(len(perm)):
            a, b = max(lo, int(starts[j])), min(hi, int(starts[j + 1]))
            if a >= b:
                continue
            ref = self.shards[perm[j]]
            base = int(starts[j]) - self._start  # local position of this shard's example 0
            wanted = np.zeros(ref.examples, dtype=bool)
            wanted[a - int(starts[j]):b - int(starts[j])] = \
                pending[a - self._start:b - self._start]
            if not wanted.any():
                continue
            yield from self._read_shard(ref, wanted, base)

    def _read_shard(self, ref: ShardRef, wanted: np.ndarray, base: int
                    ) -> Iterator[tuple[int, dict | None]]:
        last = int(np.flatnonzero(wanted)[-1])
        done = np.zeros_like(wanted)
        try:
            with _open_shard(ref, self.verify) as source:
                rows = iter_parquet(source, ref.uri, wanted) if ref.format == "parquet" \
                    else iter_tar(source, ref.uri, wanted)
                try:
                    for i, ex in rows:
                        if i >= ref.examples:
                            raise ShardError(ref.uri, f"more than the {ref.examples} examples "
                                             "the manifest lists")
                        if wanted[i]:
                            done[i] = True
                            yield base + i, ex
                        if i >= last:
                            break
                finally:
                    rows.close()
                if not done[wanted].all():
                    raise ShardError(ref.uri, f"truncated: ends before example {last} "
                                     f"(the manifest lists {ref.examples})")
        except ShardError as e:
            if not self.skip_bad:
                raise
            self.stats.bad_shards.append((ref.uri, e.reason))
            for i in np.flatnonzero(wanted & ~done).tolist():
                yield base + i, None


class _Opened:
    """Context manager over the object a codec reads from (a path, file or memory buffer)."""

    def __init__(self, source: Any, closer: Any = None):
        self.source, self.closer = source, closer

    def __enter__(self) -> Any:
        return self.source

    def __exit__(self, *exc: Any) -> None:
        if self.closer is not None:
            self.closer.close()


def _open_shard(ref: ShardRef, verify: bool) -> _Opened:
    """Open a shard for its codec. With ``verify`` the whole file is read and hashed before any
    example is decoded, and a mismatch with the manifest is refused."""
    if ref.bytes is not None:
        try:
            size = fs.size(ref.uri)
        except FileNotFoundError:
            raise ShardError(ref.uri, "missing") from None
        if size != ref.bytes:
            raise ShardError(ref.uri, f"{'truncated' if size < ref.bytes else 'wrong size'}: "
                             f"{size} bytes, the manifest lists {ref.bytes}")
    if verify and ref.sha256:
        h = hashlib.sha256()
        buf = bytearray()
        with fs.open_uri(ref.uri, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                buf += chunk
        if h.hexdigest() != ref.sha256:
            raise ShardError(ref.uri, f"sha256 {h.hexdigest()[:16]}... does not match the "
                             f"manifest's {ref.sha256[:16]}...: refusing a changed shard")
        return _Opened(pa.BufferReader(pa.py_buffer(buf)) if ref.format == "parquet"
                       else io.BytesIO(buf))
    if fs.is_local(ref.uri):  # native IO: no fsspec layer per read call
        path = fs.local_path(ref.uri)
        if ref.format == "parquet":
            return _Opened(path)
        f = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 (closed by _Opened)
        return _Opened(f, f)
    f = fs.open_uri(ref.uri, "rb")
    return _Opened(f, f)


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
            rng = _rng(self.seed, self.consumer, b, 0x313C)
            self._block = (b, rng.choice(len(self.names), size=self._BLOCK, p=self.p))
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
