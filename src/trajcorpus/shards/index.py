"""The episode index: where every example of a config lives, by episode, task and agent.

``OUT/index/{config}.parquet`` has one row per example: ``episode_id``, ``task``, ``agent``,
``split``, ``shard`` (index i of the split's n shards; the same in both formats, which hold the
same examples in the same order), ``row`` (position in that shard), ``first_step`` and ``key``.
Rows are in (shard, row) order. It is what lets ``ShardDataset.episode()`` and ``.select()``
open only the shards, row groups and tar members they need instead of scanning every shard.

Why it is built where shards are written: the job already holds each example's meta there, so
each shard writer records its rows as a small part file (:class:`IndexTap`) and the driver
concatenates the parts in shard order (:func:`merge_index`); nothing is read back. Parts depend
only on shard contents, so the index is byte-identical across runs and worker counts. The
manifest lists it in the config's info as ``"index": {path, bytes, sha256, examples, episodes}``
and readers refuse a file whose sha256 differs.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import astuple, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import fs
from ..errors import ShardError
from .layout import check_config_name, check_split_name
from .writer import atomic_open

__all__ = ["INDEX_DIR", "INDEX_SCHEMA", "IndexEntry", "IndexTap", "EpisodeIndex", "entry_of",
           "index_relpath", "part_relpath", "merge_index", "read_index"]

INDEX_DIR = "index"
INDEX_SCHEMA = pa.schema([
    pa.field("episode_id", pa.string(), nullable=False),
    pa.field("task", pa.string(), nullable=False),
    pa.field("agent", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("shard", pa.int32(), nullable=False),
    pa.field("row", pa.int32(), nullable=False),
    pa.field("first_step", pa.int64(), nullable=False),
    pa.field("key", pa.string(), nullable=False),
], metadata={b"trajcorpus": b'{"index": 1}'})


@dataclass(frozen=True)
class IndexEntry:
    """One example's row of the index."""

    episode_id: str
    task: str
    agent: str
    split: str
    shard: int
    row: int
    first_step: int
    key: str


def index_relpath(config: str) -> str:
    return f"{INDEX_DIR}/{check_config_name(config)}.parquet"


def part_relpath(config: str, split: str, shard: int) -> str:
    """Where one shard's part is staged before :func:`merge_index`."""
    return f"{INDEX_DIR}/{check_config_name(config)}/{check_split_name(split)}-{shard:05d}.parquet"


def entry_of(ex: dict, split: str, shard: int, row: int) -> IndexEntry:
    key = ex.get("__key__")
    try:
        meta = json.loads(ex["meta"])
        return IndexEntry(str(meta["episode_id"]), str(meta["task"]), str(meta["agent"]), split,
                          shard, row, int(meta["first_step"]), key)
    except (KeyError, TypeError, ValueError) as e:
        raise ShardError(f"example {key!r} field 'meta'", f"cannot index it: {e!r} (needs "
                         "episode_id, task, agent, first_step)") from None


def _table(entries: list[IndexEntry]) -> pa.Table:
    cols = list(zip(*(astuple(e) for e in entries), strict=True)) if entries \
        else [[] for _ in INDEX_SCHEMA]
    return pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(cols, INDEX_SCHEMA,
                                                                      strict=True)],
                                schema=INDEX_SCHEMA)


def _writer(sink: io.BytesIO) -> pq.ParquetWriter:
    return pq.ParquetWriter(sink, INDEX_SCHEMA, compression="zstd", compression_level=9,
                            use_dictionary=["task", "agent", "split"], write_page_index=False)


def _write_bytes(uri: str, data: bytes) -> None:
    fs.makedirs(uri.rsplit("/", 1)[0])
    with atomic_open(uri) as f:
        f.write(data)


class IndexTap:
    """Records the index rows of one shard's examples as they pass to the shard writer."""

    def __init__(self, split: str, shard: int):
        self.split, self.shard = split, shard
        self.entries: list[IndexEntry] = []

    def __call__(self, examples: Iterable[dict]) -> Iterator[dict]:
        for row, ex in enumerate(examples):
            self.entries.append(entry_of(ex, self.split, self.shard, row))
            yield ex

    def write(self, root: str, config: str) -> str:
        """Write the part under ``root`` (the job's staging folder); returns its URI."""
        buf = io.BytesIO()
        with _writer(buf) as w:
            w.write_table(_table(self.entries))
        uri = fs.join(root, part_relpath(config, self.split, self.shard))
        _write_bytes(uri, buf.getvalue())
        return uri


def merge_index(staging: str, out: str, config: str, split: str,
                written: Sequence[int]) -> dict:
    """Concatenate the staged parts of the written shards into ``OUT/index/{config}.parquet``
    (one row group per part, so memory holds one part) and return its manifest entry.

    ``written`` lists the planned numbers of the shards that were written, in final order: a
    shard no sequence hashed to is not written and the job closes the numbering, so the part of
    planned shard ``written[i]`` describes final shard ``i``.
    """
    buf = io.BytesIO()
    examples, episodes = 0, set()
    with _writer(buf) as w:
        for final, planned in enumerate(written):
            uri = fs.join(staging, part_relpath(config, split, planned))
            if not fs.exists(uri):
                raise ShardError(uri, f"index part of shard {planned} missing")
            with fs.open_uri(uri, "rb") as f:
                table = pq.read_table(io.BytesIO(f.read()), schema=INDEX_SCHEMA)
            if final != planned:
                col = INDEX_SCHEMA.get_field_index("shard")
                table = table.set_column(col, INDEX_SCHEMA.field("shard"),
                                         pa.array([final] * table.num_rows, pa.int32()))
            examples += table.num_rows
            episodes.update(table.column("episode_id").to_pylist())
            w.write_table(table)
    data = buf.getvalue()
    rel = index_relpath(config)
    _write_bytes(fs.join(out, rel), data)
    return {"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "examples": examples, "episodes": len(episodes)}


class EpisodeIndex:
    """The index of one config, in memory (a few tens of bytes per example), for lookups."""

    def __init__(self, table: pa.Table, where: str):
        self.table, self.where = table, where
        self.shard = table.column("shard").to_numpy()
        self.row = table.column("row").to_numpy()
        self.first_step = table.column("first_step").to_numpy()

    def __len__(self) -> int:
        return self.table.num_rows

    def mask(self, split: str, tasks: Iterable[str] | None = None,
             agents: Iterable[str] | None = None,
             episode_ids: Iterable[str] | None = None) -> np.ndarray:
        """Rows of ``split`` matching every given criterion; a value that names nothing in the
        split is an error (a typo must not silently select nothing)."""
        mask = pc.equal(self.table.column("split"), split).to_numpy(zero_copy_only=False)
        if not mask.any():
            raise ShardError(self.where, f"no rows for split {split!r}")
        in_split = mask.copy()
        for column, wanted in (("task", tasks), ("agent", agents), ("episode_id", episode_ids)):
            if wanted is None:
                continue
            values = [wanted] if isinstance(wanted, str) else list(wanted)
            col = self.table.column(column)
            hit = pc.is_in(col, value_set=pa.array(values, pa.string())).to_numpy(
                zero_copy_only=False)
            present = set(pc.unique(col.filter(pa.array(hit & in_split))).to_pylist())
            missing = sorted(set(values) - present)
            if missing:
                raise ShardError(f"{self.where} {column} {missing[0]!r}",
                                 f"not in the index (split {split!r})")
            mask &= hit
        return mask


def read_index(out: str, config: str, entry: dict | None) -> EpisodeIndex:
    """Load the index the manifest lists for ``config``, checking its size and sha256."""
    if not entry:
        raise ShardError(f"{out} config {config!r}", "the manifest lists no episode index "
                         "(written by trajcorpus >= the version that added it; rerun the job)")
    uri = fs.join(out, entry["path"])
    try:
        with fs.open_uri(uri, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ShardError(uri, "episode index missing") from None
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ShardError(uri, "episode index does not match the manifest's bytes/sha256")
    try:
        table = pq.read_table(io.BytesIO(data), schema=INDEX_SCHEMA)
    except (pa.ArrowException, OSError) as e:
        raise ShardError(uri, f"not a readable index: {e}") from None
    return EpisodeIndex(table, uri)
