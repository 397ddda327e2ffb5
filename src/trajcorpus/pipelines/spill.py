"""Spill files: tokenized windows written once by the reading stage, read back by offset.

Heavy data never crosses a Beam shuffle: the reading stage writes each window here and passes on a
small (uri, offset, length) reference; the shard writers read windows back by reference. This keeps
memory flat on the DirectRunner (which holds every shuffled collection in memory) and keeps the
shuffle small on Dataflow.

A record is ``b"TCW2" | u32 header length | JSON header | zstd(array bytes)``; the header lists the
arrays' names, dtypes and shapes. Only plain numeric dtypes are accepted back, so reading never
unpickles anything, and decompression stops at the size the shapes declare.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import struct
import threading
from typing import IO

import numpy as np
import zstandard

from .. import fs
from ..errors import ShardError
from ..tokenizers.tokenized import TokenizedEpisode
from .atomic import atomic_open

__all__ = ["SpillWriter", "SpillReader", "encode_record", "decode_record"]

_MAGIC = b"TCW2"
_FIELDS = ("tokens", "modality", "loss_mask", "local_position", "step_offsets", "patches",
           "patch_position", "patch_offsets")
_DTYPES = {"<i4", "|u1", "<i2", "<i8", "<u2", "<u4", "<u8", "<i1", "<f4", "<f8"}
_MAX_HEADER = 1 << 16
MAX_RECORD_BYTES = 1 << 30  # a window is at most L tokens; anything near this is corrupt
_LEVEL = 1  # zstd level 1: ~3 GB/s, and tokenized frames still shrink ~100x
_CODECS = threading.local()  # zstd contexts are reusable but not shareable across threads


def _codecs() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    if not hasattr(_CODECS, "pair"):
        _CODECS.pair = (zstandard.ZstdCompressor(level=_LEVEL), zstandard.ZstdDecompressor())
    return _CODECS.pair


def encode_record(tok: TokenizedEpisode) -> bytes:
    """One window as a spill record; the arrays are zstd-compressed (level 1) together."""
    arrays = [np.ascontiguousarray(getattr(tok, f)) for f in _FIELDS]
    for a in arrays:
        if a.dtype.byteorder == ">":
            raise ValueError("big-endian arrays are not spilled")
    header = json.dumps([[f, a.dtype.str, list(a.shape)] for f, a in zip(_FIELDS, arrays,
                                                                          strict=True)],
                        separators=(",", ":")).encode()
    payload = _codecs()[0].compress(b"".join(a.data for a in arrays))
    return b"".join([_MAGIC, struct.pack("<I", len(header)), header, payload])


_Layout = tuple[tuple[tuple[str, np.dtype, tuple[int, ...], int, int], ...], int]
_LAYOUTS: dict[bytes, _Layout] = {}  # parsed headers: a corpus's windows share a few shapes
_MAX_LAYOUTS = 4096


def _layout(header: bytes, where: str) -> _Layout:
    """The checked (name, dtype, shape, offset, nbytes) of each array and their total size."""
    hit = _LAYOUTS.get(header)
    if hit is not None:
        return hit
    try:
        parsed = json.loads(header)
    except ValueError as e:
        raise ShardError(where, f"spill header is not JSON: {e}") from None
    fields, total = [], 0
    for name, dtype, shape in parsed:
        if name not in _FIELDS or dtype not in _DTYPES:
            raise ShardError(where, f"unexpected spill field {name!r} of dtype {dtype!r}")
        dt = np.dtype(dtype)
        n = math.prod(shape) * dt.itemsize
        if n < 0 or total + n > MAX_RECORD_BYTES:
            raise ShardError(where, f"spill record declares more than {MAX_RECORD_BYTES} bytes")
        fields.append((name, dt, tuple(shape), total, n))
        total += n
    if len(_LAYOUTS) >= _MAX_LAYOUTS:
        _LAYOUTS.clear()
    _LAYOUTS[header] = layout = (tuple(fields), total)
    return layout


def decode_record(buf: bytes, where: str = "spill") -> TokenizedEpisode:
    """The inverse of :func:`encode_record`; decompression is bounded by the declared shapes."""
    if buf[:4] != _MAGIC or len(buf) < 8:
        raise ShardError(where, "not a spill record (bad magic)")
    (hlen,) = struct.unpack_from("<I", buf, 4)
    if hlen > _MAX_HEADER or 8 + hlen > len(buf):
        raise ShardError(where, f"spill header of {hlen} bytes is out of bounds")
    fields, total = _layout(bytes(buf[8:8 + hlen]), where)
    try:
        raw = _codecs()[1].decompress(memoryview(buf)[8 + hlen:], max_output_size=total)
    except zstandard.ZstdError as e:
        raise ShardError(where, f"spill record truncated or corrupt: {e}") from None
    if len(raw) != total:
        raise ShardError(where, f"spill record truncated ({len(raw)} of {total} bytes)")
    return TokenizedEpisode(**{
        name: np.frombuffer(raw, dtype=dt, count=n // dt.itemsize, offset=at).reshape(shape)
        for name, dt, shape, at, n in fields})


class SpillWriter:
    """Appends records to one file, published whole on close (see :mod:`.atomic`), so a retried
    bundle replaces its file rather than appending to it."""

    def __init__(self, uri: str):
        self.uri = uri
        self._ctx: contextlib.AbstractContextManager | None = None
        self._f: IO | None = None
        self._pos = 0

    def write(self, tok: TokenizedEpisode) -> tuple[int, int]:
        if self._f is None:
            self._ctx = atomic_open(self.uri)
            self._f = self._ctx.__enter__()
        buf = encode_record(tok)
        self._f.write(buf)
        at = self._pos
        self._pos += len(buf)
        return at, len(buf)

    @property
    def empty(self) -> bool:
        return self._f is None

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
        self._ctx = self._f = None

    def abort(self) -> None:
        """Drop a half-written file (local: the temporary; gs://: the upload is abandoned)."""
        if self._ctx is not None:
            err = RuntimeError("spill aborted")
            try:
                self._ctx.__exit__(RuntimeError, err, None)
            except RuntimeError:
                pass
        self._ctx = self._f = None


class SpillReader:
    """Random access to spill records, with a few open files and decoded records cached."""

    def __init__(self, max_files: int = 16, max_records: int = 256):
        self._files: collections.OrderedDict[str, IO] = collections.OrderedDict()
        self._records: collections.OrderedDict[tuple[str, int], TokenizedEpisode] = \
            collections.OrderedDict()
        self.max_files, self.max_records = max_files, max_records

    def _file(self, uri: str) -> IO:
        f = self._files.pop(uri, None)
        if f is None:
            f = fs.open_uri(uri, "rb")
            while len(self._files) >= self.max_files:
                self._files.popitem(last=False)[1].close()
        self._files[uri] = f
        return f

    def read(self, uri: str, offset: int, length: int, cache: bool = False) -> TokenizedEpisode:
        key = (uri, offset)
        if key in self._records:
            self._records.move_to_end(key)
            return self._records[key]
        f = self._file(uri)
        f.seek(offset)
        buf = f.read(length)
        if len(buf) != length:
            raise ShardError(f"{uri} @ offset {offset}", f"short read ({len(buf)} of {length})")
        rec = decode_record(buf, f"{uri} @ offset {offset}")
        if cache:
            self._records[key] = rec
            while len(self._records) > self.max_records:
                self._records.popitem(last=False)
        return rec

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._records.clear()
