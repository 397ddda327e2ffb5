"""Parquet shards: one row per example, flat typed columns, zstd, row groups sized for streaming.

Every array is a flat ``list<intN>`` column, because flat primitive lists are what pyarrow and
``datasets`` turn into NumPy/torch arrays fastest (nested lists are converted element by
element). The two multi-dimensional fields are flattened row-major and carry their shape:
``patches`` (uint8, P*16*16*C values) beside ``patches_shape`` ([P, 16, 16, C]), and
``patch_position`` (int16, P*2 values, (row, col) pairs). ``meta`` is a string column.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ShardError
from .codecs import Codec, register
from .example import FIELD_DTYPES, SEQUENCE_FIELDS

__all__ = ["SCHEMA", "HF_FEATURES", "ZSTD_LEVEL", "ROW_GROUP_BYTES", "ROW_GROUP_MAX_ROWS",
           "write_parquet", "iter_parquet", "RowGroupColumns", "read_columns", "CODEC"]

ZSTD_LEVEL = 9
ROW_GROUP_BYTES = 32 << 20  # uncompressed bytes per row group: a streaming reader holds one
ROW_GROUP_MAX_ROWS = 4096
_ARROW = {np.dtype(np.int32): pa.int32(), np.dtype(np.uint8): pa.uint8(),
          np.dtype(np.int16): pa.int16()}
_COLUMNS = ("__key__",) + SEQUENCE_FIELDS + ("patches", "patches_shape", "patch_position", "meta")


def _int_list(dtype: np.dtype, size: int = -1) -> pa.DataType:
    # Non-null elements spare Parquet the per-value definition levels: 2x faster to decode.
    return pa.list_(pa.field("element", _ARROW[np.dtype(dtype)], nullable=False), size)


SCHEMA = pa.schema(
    [pa.field("__key__", pa.string(), nullable=False)]
    + [pa.field(f, _int_list(FIELD_DTYPES[f]), nullable=False) for f in SEQUENCE_FIELDS]
    + [pa.field("patches", pa.binary(), nullable=False),
       pa.field("patches_shape", _int_list(np.int32, 4), nullable=False),
       pa.field("patch_position", _int_list(np.int16), nullable=False),
       pa.field("meta", pa.string(), nullable=False)],
    metadata={b"trajcorpus": b'{"layout": 1}'},
)
# What `datasets` makes of SCHEMA (Features.from_arrow_schema); the tests hold it to this.
HF_FEATURES = {
    "__key__": {"dtype": "string", "_type": "Value"},
    **{f: {"feature": {"dtype": str(FIELD_DTYPES[f]), "_type": "Value"}, "_type": "List"}
       for f in SEQUENCE_FIELDS},
    "patches": {"dtype": "binary", "_type": "Value"},
    "patches_shape": {"feature": {"dtype": "int32", "_type": "Value"}, "length": 4,
                      "_type": "List"},
    "patch_position": {"feature": {"dtype": "int16", "_type": "Value"}, "_type": "List"},
    "meta": {"dtype": "string", "_type": "Value"},
}


def _list_array(arrays: list[np.ndarray], dtype: np.dtype) -> pa.ListArray:
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, dtype)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(dtype, copy=False)),
                                    type=_int_list(dtype))


def _binary_array(arrays: list[np.ndarray]) -> pa.BinaryArray:
    lengths = np.fromiter((a.nbytes for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ShardError("parquet row group", "more than 2 GiB of patches in one row group")
    data = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.uint8)
    return pa.BinaryArray.from_buffers(pa.binary(), len(arrays), [
        None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)])


def _batch(rows: list[dict]) -> pa.RecordBatch:
    cols: dict[str, Any] = {"__key__": pa.array([r["__key__"] for r in rows], pa.string())}
    for f in SEQUENCE_FIELDS:
        cols[f] = _list_array([r[f] for r in rows], FIELD_DTYPES[f])
    cols["patches"] = _binary_array([r["patches"] for r in rows])
    shapes = np.array([r["patches"].shape for r in rows], dtype=np.int32).reshape(-1)
    cols["patches_shape"] = pa.FixedSizeListArray.from_arrays(pa.array(shapes),
                                                              type=_int_list(np.int32, 4))
    cols["patch_position"] = _list_array([r["patch_position"] for r in rows],
                                         np.dtype(np.int16))
    cols["meta"] = pa.array([r["meta"] for r in rows], pa.string())
    return pa.RecordBatch.from_arrays([cols[c] for c in _COLUMNS], schema=SCHEMA)


def _row_bytes(ex: dict) -> int:
    return sum(ex[f].nbytes for f in FIELD_DTYPES) + len(ex["meta"]) + 64


def write_parquet(examples: Iterable[dict], fileobj: IO[bytes], level: int = ZSTD_LEVEL,
                  row_group_bytes: int = ROW_GROUP_BYTES) -> int:
    """Write examples (already checked, in final order); returns the count.

    Row groups close at ``row_group_bytes`` of raw data so a streaming reader holds one group of
    bounded size whatever the domain (1 KB MuJoCo rows or 240 KB Atari rows).
    """
    writer = pq.ParquetWriter(
        fileobj, SCHEMA, compression="zstd", compression_level=level, use_dictionary=False,
        write_statistics=["__key__"], data_page_size=1 << 20, write_page_index=False,
    )
    n, rows, size = 0, [], 0
    try:
        for ex in examples:
            rows.append(ex)
            size += _row_bytes(ex)
            if size >= row_group_bytes or len(rows) >= ROW_GROUP_MAX_ROWS:
                writer.write_batch(_batch(rows), row_group_size=len(rows))
                n, rows, size = n + len(rows), [], 0
        if rows:
            writer.write_batch(_batch(rows), row_group_size=len(rows))
            n += len(rows)
    finally:
        writer.close()
    return n


# ---------------------------------------------------------------------------- reading

class RowGroupColumns:
    """The NumPy views of one row group: flat values plus offsets per list column."""

    __slots__ = ("n", "keys", "meta", "values", "offsets", "shapes")

    def __init__(self, batch: pa.RecordBatch | pa.Table, where: str):
        if isinstance(batch, pa.Table):
            batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else None
        if batch is None:
            self.n = 0
            return
        names = set(batch.schema.names)
        missing = [c for c in _COLUMNS if c not in names]
        if missing:
            raise ShardError(where, f"column {missing[0]!r} missing: not a trajcorpus shard")
        self.n = batch.num_rows
        self.keys = batch.column("__key__").to_pylist()
        self.meta = batch.column("meta").to_pylist()
        self.values: dict[str, np.ndarray] = {}
        self.offsets: dict[str, np.ndarray] = {}
        for f in FIELD_DTYPES:
            col = batch.column(f)
            if col.null_count:
                raise ShardError(where, f"column {f!r} has nulls")
            if f == "patches":  # binary: offsets buffer + one data buffer
                _, offs, data = col.buffers()
                base = col.offset
                self.offsets[f] = np.frombuffer(offs, np.int32)[base:base + len(col) + 1]
                self.values[f] = (np.frombuffer(data, np.uint8) if data is not None
                                  else np.zeros(0, np.uint8))
                continue
            want = FIELD_DTYPES[f]
            vals = col.values.to_numpy(zero_copy_only=False)
            if vals.dtype != want:
                raise ShardError(where, f"column {f!r} holds {vals.dtype}, expected {want}")
            self.values[f] = vals
            self.offsets[f] = col.offsets.to_numpy()
        self.shapes = batch.column("patches_shape").values.to_numpy().reshape(-1, 4)

    def example(self, i: int, where: str) -> dict:
        ex: dict = {"__key__": self.keys[i]}
        for f in SEQUENCE_FIELDS:
            o = self.offsets[f]
            ex[f] = self.values[f][o[i]:o[i + 1]]
        shape = tuple(int(s) for s in self.shapes[i])
        o = self.offsets["patches"]
        flat = self.values["patches"][o[i]:o[i + 1]]
        if flat.size != int(np.prod(shape)):
            raise ShardError(f"{where} [{self.keys[i]}]",
                             f"patches hold {flat.size} values for shape {shape}")
        ex["patches"] = flat.reshape(shape)
        o = self.offsets["patch_position"]
        pos = self.values["patch_position"][o[i]:o[i + 1]]
        if pos.size != 2 * shape[0]:
            raise ShardError(f"{where} [{self.keys[i]}]",
                             f"patch_position holds {pos.size} values for {shape[0]} patches")
        ex["patch_position"] = pos.reshape(shape[0], 2)
        ex["meta"] = self.meta[i]
        return ex


def read_columns(source: Any, where: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as e:
        raise ShardError(where, f"not a readable Parquet file (truncated?): {e}") from None


def iter_parquet(source: Any, uri: str, wanted: np.ndarray | None = None,
                 ) -> Iterator[tuple[int, dict | None]]:
    """Yield ``(index, example)`` in row order; None for rows with ``wanted[index]`` False.
    Row groups holding no wanted row are not read at all."""
    pf = read_columns(source, uri)
    start = 0
    for rg in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(rg).num_rows
        stop = start + n
        if wanted is not None and not wanted[start:stop].any():
            for i in range(start, stop):
                yield i, None
            start = stop
            continue
        try:
            cols = RowGroupColumns(pf.read_row_group(rg, columns=list(_COLUMNS)), uri)
        except (pa.ArrowException, OSError) as e:
            raise ShardError(f"{uri} [row group {rg}]", f"unreadable (truncated?): {e}"
                             ) from None
        if cols.n != n:
            raise ShardError(f"{uri} [row group {rg}]", f"{cols.n} rows, footer says {n}")
        for j in range(n):
            i = start + j
            yield i, cols.example(j, uri) if wanted is None or wanted[i] else None
        start = stop


def _estimate(sizes: list[int], key: str) -> int:
    return sum(sizes) + len(key)


CODEC = register(Codec(name="parquet", extension="parquet", rank=0, hub_builder="parquet",
                       write=write_parquet, read=iter_parquet, estimate=_estimate,
                       opens_path=True, columnar=True))
