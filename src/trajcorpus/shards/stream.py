"""Streaming examples out of shards: what to read, the split across consumers, exact resume.

An epoch is one global order of every example (:class:`.epoch.EpochPlan`: the shards in a
seeded per-epoch order, each shard's examples in file order, blocks of ``shuffle_buffer``
positions permuted by a seeded generator). It depends on the seed and the epoch, never on how
many consumers read it. A stream reads a list of global positions: it streams the examples they
need in file order (only the shards, Parquet row groups and tar members that hold one) and holds
each until its turn, at most about one shuffle block. :class:`ShardStream` is consumer ``c`` of
``C``'s contiguous slice ``[c*N//C, (c+1)*N//C)`` (used by :class:`.mixture.Mixture` and
direct iteration); the loaders deal equal batches from the same order (:class:`.epoch.Deal`).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from .. import fs
from ..errors import ShardError
from .codecs import get_codec, primary_of, registered_codecs
from .epoch import EpochPlan
from .index import EpisodeIndex, read_index
from .manifest import Manifest, read_manifest

__all__ = ["ShardRef", "ShardDataset", "ShardStream", "StreamStats", "consumer_span",
           "read_positions"]

_CHUNK = 8 << 20


@dataclass(frozen=True)
class ShardRef:
    """One shard to read: where, how many examples, and what the manifest says it hashes to.
    ``rows`` (ascending) restricts it to those rows of the file; ``examples`` then counts them."""

    uri: str
    examples: int
    format: str
    sha256: str | None = None
    bytes: int | None = None
    rows: tuple[int, ...] | None = None


@dataclass
class StreamStats:
    """What a stream skipped (only with ``skip_bad=True``); shared by a mixture's components."""

    bad_shards: list[tuple[str, str]] = field(default_factory=list)
    lost_examples: int = 0


def consumer_span(total: int, consumer: int, consumers: int) -> tuple[int, int]:
    """Consumer ``consumer``'s slice [a, b) of ``total`` global positions."""
    if not 0 <= consumer < consumers:
        raise ShardError(f"consumer {consumer} of {consumers}", "need 0 <= consumer < consumers")
    return total * consumer // consumers, total * (consumer + 1) // consumers


# ----------------------------------------------------------------------------- datasets

class ShardDataset:
    """What to read: one config, split and format of an output folder (via its manifest), or an
    explicit list of :class:`ShardRef`. Holds no iteration state, so it pickles to workers."""

    def __init__(self, out: str | None = None, config: str | None = None, split: str = "train",
                 fmt: str | None = None, *, shards: Sequence[ShardRef] | None = None,
                 weight: float | None = None, manifest: Manifest | None = None):
        self.out, self.split, self._index, self._mask = out, split, None, None
        if shards is not None:
            self.shards = list(shards)
            self.name = config or "shards"
            self.weight = 1.0 if weight is None else float(weight)
            self._index_entry = None
            self.patch_size = None  # no manifest: collate reads it from the patches themselves
            return
        if out is None or config is None:
            raise ShardError("ShardDataset", "give an output folder and a config, or shards=")
        manifest = manifest or read_manifest(out)
        if config not in manifest.configs:
            raise ShardError(f"{out} config {config!r}",
                             f"not in the manifest (configs: {sorted(manifest.configs)})")
        formats = manifest.formats(config)
        fmt = fmt or primary_of(formats) or registered_codecs()[0].name
        files = manifest.files_of(config, split, fmt)
        if not files:
            raise ShardError(f"{out} config {config!r}", f"no {fmt} shards for split {split!r} "
                             f"(formats {formats}, splits {manifest.splits(config)})")
        self.shards = [ShardRef(fs.join(out, f.path), f.examples, f.format, f.sha256, f.bytes)
                       for f in files]
        self.name = config
        info = self.info = manifest.configs[config]
        self._index_entry = info.get("index")
        # the token scheme's patch side, as the manifest records it (Gato's 16 when it does not)
        self.patch_size = int((info.get("tokenization") or {}).get("patch_size", [16])[0])
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

    def plan(self, *, seed: int = 0, epoch: int = 0, shuffle_buffer: int = 0,
             shuffle_shards: bool | None = None) -> EpochPlan:
        """The epoch's global order (``shuffle_shards`` defaults to ``shuffle_buffer > 1``)."""
        return EpochPlan([s.examples for s in self.shards], seed=seed, epoch=epoch,
                         shuffle_buffer=shuffle_buffer,
                         shuffle_shards=shuffle_buffer > 1 if shuffle_shards is None
                         else shuffle_shards, identity=[_ref_id(s) for s in self.shards])

    def stream(self, consumer: int = 0, consumers: int = 1, *, seed: int = 0, epoch: int = 0,
               shuffle_buffer: int = 0, shuffle_shards: bool | None = None, verify: bool = True,
               skip_bad: bool = False, stats: StreamStats | None = None) -> ShardStream:
        return ShardStream(self, consumer=consumer, consumers=consumers, seed=seed,
                           epoch=epoch, shuffle_buffer=shuffle_buffer,
                           shuffle_shards=shuffle_shards, verify=verify, skip_bad=skip_bad,
                           stats=stats)

    # -- the episode index

    def index(self) -> EpisodeIndex:
        """The config's episode index (loaded once, checked against the manifest)."""
        if self._index is None:
            if self.out is None:
                raise ShardError(f"ShardDataset {self.name!r}", "built from shards=, so it has "
                                 "no episode index; open it from an output folder")
            self._index = read_index(self.out, self.name, self._index_entry)
        return self._index

    def select(self, *, tasks: Iterable[str] | None = None, agents: Iterable[str] | None = None,
               episode_ids: Iterable[str] | None = None) -> ShardDataset:
        """A dataset of exactly the examples of these tasks, agents and episodes (each given
        criterion must hold), in file order; only shards holding one are ever opened. A value
        that names nothing in this split is a ShardError."""
        idx = self.index()
        mask = idx.mask(self.split, tasks, agents, episode_ids)
        if self._mask is not None:
            mask &= self._mask
        if not mask.any():
            raise ShardError(f"{self.out} config {self.name!r}", "the selection is empty")
        sub = object.__new__(ShardDataset)
        sub.__dict__.update(self.__dict__)
        sub._mask = mask
        shards = []
        for i, ref in enumerate(self._base_shards()):
            rows = np.sort(idx.row[mask & (idx.shard == i)])
            if rows.size:
                shards.append(replace(ref, examples=int(rows.size),
                                      rows=tuple(int(r) for r in rows)))
        sub.shards = shards
        sub._base = self._base_shards()
        return sub

    def _base_shards(self) -> list[ShardRef]:
        return getattr(self, "_base", None) or self.shards

    def episode(self, episode_id: str, *, verify: bool = True) -> list[dict]:
        """The episode's examples in step order, reading only the shards that hold them."""
        sub = self.select(episode_ids=[episode_id])
        examples = list(sub.stream(verify=verify))
        idx = self.index()
        sel = np.flatnonzero(sub._mask)
        order = np.lexsort((idx.row[sel], idx.shard[sel]))  # file order = (shard, row)
        steps = idx.first_step[sel][order]
        return [examples[i] for i in np.argsort(steps, kind="stable")]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_index": None}  # workers never need the index


def _ref_id(ref: ShardRef) -> tuple:
    rows = None if ref.rows is None else hashlib.sha256(
        np.asarray(ref.rows, np.int64).tobytes()).hexdigest()[:16]
    return (ref.uri.rsplit("/", 1)[-1], ref.examples, rows)


# ----------------------------------------------------------------------------- reading

def read_positions(shards: Sequence[ShardRef], plan: EpochPlan, positions: np.ndarray, *,
                   verify: bool = True, skip_bad: bool = False,
                   stats: StreamStats | None = None, where: str = "stream"
                   ) -> Iterator[dict | None]:
    """The examples at global ``positions`` of ``plan``, in that order (repeats allowed);
    None for an example of a bad shard skipped with ``skip_bad``."""
    stats = stats if stats is not None else StreamStats()
    files = plan.file_positions(positions)
    uniq, inverse = np.unique(files, return_inverse=True)
    uses = np.bincount(inverse, minlength=len(uniq)) if len(uniq) else np.zeros(0, np.int64)
    source = _read_sorted(shards, plan, uniq, verify, skip_bad, stats)
    held: dict[int, dict | None] = {}
    try:
        for k in range(len(positions)):
            u = int(inverse[k])
            while u not in held:
                try:
                    got, ex = next(source)
                except StopIteration:
                    raise ShardError(where, f"shards ended before position "
                                     f"{int(positions[k])} of {plan.total}") from None
                held[got] = ex
            ex = held[u]
            uses[u] -= 1
            if not uses[u]:
                del held[u]
            yield ex
    finally:
        source.close()


def _read_sorted(shards: Sequence[ShardRef], plan: EpochPlan, files: np.ndarray, verify: bool,
                 skip_bad: bool, stats: StreamStats) -> Iterator[tuple[int, dict | None]]:
    """(i, example) for ascending file-sequence positions ``files[i]``, in that order."""
    cut = np.searchsorted(files, plan.starts)
    for j in range(len(plan.perm)):
        lo, hi = int(cut[j]), int(cut[j + 1])
        if lo >= hi:
            continue
        ref = shards[plan.perm[j]]
        local = files[lo:hi] - plan.starts[j]
        rows = local if ref.rows is None else np.asarray(ref.rows, np.int64)[local]
        for r, ex in _read_shard(ref, rows, verify, skip_bad, stats):
            yield lo + int(np.searchsorted(rows, r)), ex


def _read_shard(ref: ShardRef, rows: np.ndarray, verify: bool, skip_bad: bool,
                stats: StreamStats) -> Iterator[tuple[int, dict | None]]:
    """(file row, example) for the ascending file ``rows`` of one shard."""
    last = int(rows[-1])
    wanted = np.zeros(last + 1, dtype=bool)
    wanted[rows] = True
    done = np.zeros_like(wanted)
    try:
        with _open_shard(ref, verify) as source:
            it = get_codec(ref.format).read(source, ref.uri, wanted)
            try:
                for i, ex in it:
                    if ref.rows is None and i >= ref.examples:
                        raise ShardError(ref.uri, f"more than the {ref.examples} examples "
                                         "the manifest lists")
                    if i <= last and wanted[i]:
                        done[i] = True
                        yield i, ex
                    if i >= last:
                        break
            finally:
                it.close()
            if not done[wanted].all():
                raise ShardError(ref.uri, f"truncated: ends before example {last} "
                                 f"(the manifest lists {ref.examples})")
    except ShardError as e:
        if not skip_bad:
            raise
        stats.bad_shards.append((ref.uri, e.reason))
        for i in np.flatnonzero(wanted & ~done).tolist():
            yield i, None


# ----------------------------------------------------------------------------- streams

class ShardStream:
    """Consumer ``consumer`` of ``consumers``' slice of one epoch, resumable."""

    def __init__(self, dataset: ShardDataset | Sequence[ShardRef], *, consumer: int = 0,
                 consumers: int = 1, seed: int = 0, epoch: int = 0, shuffle_buffer: int = 0,
                 shuffle_shards: bool | None = None, verify: bool = True,
                 skip_bad: bool = False, stats: StreamStats | None = None):
        self.dataset = dataset if isinstance(dataset, ShardDataset) \
            else ShardDataset(shards=dataset)
        self.shards = self.dataset.shards
        self.consumer, self.consumers = consumer, consumers
        self.epoch = int(epoch)
        self._order = dict(seed=seed, shuffle_buffer=shuffle_buffer,
                           shuffle_shards=shuffle_shards)
        self.plan = self.dataset.plan(epoch=epoch, **self._order)
        self.verify, self.skip_bad = verify, skip_bad
        self.stats = stats if stats is not None else StreamStats()
        self.emitted = 0
        self._start, self._stop = consumer_span(self.plan.total, consumer, consumers)

    def __len__(self) -> int:
        return self._stop - self._start

    @property
    def fingerprint(self) -> str:
        return f"{self.plan.fingerprint}-{self.consumer}-{self.consumers}"

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "emitted": self.emitted, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("fingerprint") != self.fingerprint:
            raise ShardError("stream state", "saved for other shards, seed, shuffle or consumer "
                             "split (same world size and worker count are needed to resume)")
        emitted = int(state["emitted"])
        if not 0 <= emitted <= len(self):
            raise ShardError("stream state", f"emitted {emitted} outside 0..{len(self)}")
        if int(state["epoch"]) != self.epoch:
            self.epoch = int(state["epoch"])
            self.plan = self.dataset.plan(epoch=self.epoch, **self._order)
        self.emitted = emitted

    def __iter__(self) -> Iterator[dict]:
        positions = np.arange(self._start + self.emitted, self._stop, dtype=np.int64)
        for ex in read_positions(self.shards, self.plan, positions, verify=self.verify,
                                 skip_bad=self.skip_bad, stats=self.stats,
                                 where=f"consumer {self.consumer}"):
            self.emitted += 1
            if ex is None:
                self.stats.lost_examples += 1
                continue
            yield ex


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
        return _Opened(pa.BufferReader(pa.py_buffer(buf)) if get_codec(ref.format).opens_path
                       else io.BytesIO(buf))
    if fs.is_local(ref.uri):  # native IO: no fsspec layer per read call
        path = fs.local_path(ref.uri)
        if get_codec(ref.format).opens_path:
            return _Opened(path)
        f = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 (closed by _Opened)
        return _Opened(f, f)
    f = fs.open_uri(ref.uri, "rb")
    return _Opened(f, f)


