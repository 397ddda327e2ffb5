"""TFRecord files and ``tf.train.Example`` records, read without TensorFlow.

RL Unplugged and every RLDS/TFDS dataset ship as TFRecord files of serialized Examples. Pulling
TensorFlow into a data pipeline for that is a 500 MB dependency; the format is small enough to read
directly, provided every byte is checked:

* framing (per record): ``uint64 LE length``, ``uint32 masked CRC32C(length bytes)``, ``data``,
  ``uint32 masked CRC32C(data)``; both CRCs are verified with ``google_crc32c`` and the declared
  length is bounded, so a corrupt header is an error, never a giant allocation;
* files may be one gzip stream (RL Unplugged) or plain (TFDS); ``compression="auto"`` tells them
  apart by the gzip magic *and* an invalid plain header, since a plain length can start with
  ``1f 8b`` too;
* Examples are parsed with the ``protobuf`` runtime from message classes built here, at import,
  from a ``FileDescriptorProto`` (no generated ``_pb2`` module, no TensorFlow). Numeric lists go to
  NumPy without a per-value loop: the packed payload of a FloatList is a little-endian float32
  buffer, and varints of an Int64List are decoded with array operations.

Offsets in errors are byte offsets of the record's header in the (decompressed) record stream.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import struct
import zlib
from collections.abc import Iterator
from typing import IO, Any

import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from .. import fs
from ..errors import SourceError

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "COMPRESSIONS",
    "Record",
    "masked_crc32c",
    "frame_record",
    "iter_records",
    "read_records",
    "detect_compression",
    "parse_example",
    "Example",
]

DEFAULT_MAX_RECORD_BYTES = 1 << 30  # 1 GiB: far above an RLDS episode, far below a corrupt header
COMPRESSIONS = ("auto", "none", "gzip")
_HEADER = 12  # uint64 length + uint32 masked CRC of it
_CHUNK = 1 << 24  # read big records in 16 MiB pieces: a lying header cannot force an allocation
_MASK_DELTA = 0xA282EAD8
_BUFFER = 1 << 22  # bytes fetched per read from the underlying (possibly remote) file
_SMALL_LIST = 32  # packed bytes under which an Int64List is converted directly


# -- framing ----------------------------------------------------------------------------------------

def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C (Castagnoli): rotate right by 15 bits, add a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One framed record (what TF's TFRecordWriter writes); used to build test inputs."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


@dataclasses.dataclass(frozen=True)
class Record:
    """A record's place in its file and its bytes; ``data`` is None when ``error`` says why.

    Only a bad data CRC leaves the framing intact (the length was verified), so only that error is
    ever carried here instead of raised: the reader can quarantine the record and go on.
    """

    index: int
    offset: int
    data: bytes | None
    error: SourceError | None = None


def _valid_header(head: bytes) -> bool:
    return len(head) == _HEADER and struct.unpack_from("<I", head, 8)[0] == masked_crc32c(head[:8])


def detect_compression(head: bytes) -> str:
    """"gzip" or "none" from a file's first bytes (at least 12 of them, unless the file is shorter)."""
    if head[:2] == b"\x1f\x8b" and not _valid_header(head[:_HEADER]):
        return "gzip"
    return "none"


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at end of stream), never allocating more than what exists."""
    if n <= _CHUNK:
        first = stream.read(n)
        if len(first) == n or not first:
            return first
        parts, got = [first], len(first)
    else:
        parts, got = [], 0
    while got < n:
        piece = stream.read(min(_CHUNK, n - got))
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def iter_records(uri: str, *, compression: str = "auto",
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 recover: bool = False) -> Iterator[Record]:
    """Stream the records of one TFRecord file (any fsspec URI), checking every CRC.

    Raises :class:`SourceError` (file, offset, reason) for anything that breaks the framing: an
    empty file (no record at all: the error names the file, not an episode it would have held), a
    bad length CRC, a declared length above ``max_record_bytes``, a truncated record, a corrupt or
    truncated gzip stream. A bad data CRC raises too, unless ``recover`` is set: then the record is
    yielded with ``data=None`` and its error, and reading goes on with the next record.
    """
    compression = compression.lower()
    if compression not in COMPRESSIONS:
        raise SourceError(uri, f"unknown TFRecord compression {compression!r} "
                          f"(known: {', '.join(COMPRESSIONS)})")
    try:
        raw = fs.open_uri(uri, "rb")
    except (OSError, ValueError) as e:
        raise SourceError(uri, f"cannot open TFRecord file: {type(e).__name__}: {e}") from None
    with raw:
        if compression == "auto":
            compression = detect_compression(_read_exact(raw, _HEADER))
            raw.seek(0)
        # gzip pulls 8 KiB at a time and each remote read is a round trip: buffer big blocks
        buffered = io.BufferedReader(raw, buffer_size=_BUFFER)  # type: ignore[arg-type]
        if compression == "gzip":
            with gzip.GzipFile(fileobj=buffered, mode="rb") as stream:
                yield from _frames(stream, uri, max_record_bytes, recover, "gzip")
        else:
            yield from _frames(buffered, uri, max_record_bytes, recover, "none")


def _frames(stream: IO[bytes], uri: str, max_record_bytes: int, recover: bool,
            compression: str) -> Iterator[Record]:
    offset = 0
    index = 0
    where = " (offset in the gunzipped stream)" if compression == "gzip" else ""

    def fail(reason: str) -> SourceError:
        return SourceError(uri, f"record {index}: {reason}{where}", offset=offset)

    def read(n: int) -> bytes:
        try:
            return _read_exact(stream, n)
        except EOFError:
            raise fail("truncated gzip stream (ends before its end-of-stream marker)") from None
        except (gzip.BadGzipFile, zlib.error, OSError) as e:
            raise fail(f"corrupt gzip stream: {type(e).__name__}: {e}") from None

    while True:
        head = read(_HEADER)
        if not head:
            if index == 0:  # no record at all: a lost shard, reported by its own name
                raise SourceError(uri, "empty TFRecord file: no records"
                                  + (" in its gzip stream" if compression == "gzip" else
                                     " (0 bytes)"))
            return
        if len(head) < _HEADER:
            raise fail(f"truncated record header ({len(head)} of {_HEADER} bytes)")
        (length,) = struct.unpack_from("<Q", head)
        (length_crc,) = struct.unpack_from("<I", head, 8)
        if masked_crc32c(head[:8]) != length_crc:
            raise fail(f"bad length CRC (stored 0x{length_crc:08x}, computed "
                       f"0x{masked_crc32c(head[:8]):08x}): corrupt or not a TFRecord file")
        if length > max_record_bytes:
            raise fail(f"declared length {length} bytes too large (limit {max_record_bytes})")
        data = read(length)
        crc = read(4) if len(data) == length else b""
        if len(crc) < 4:
            raise fail(f"truncated record: declares {length} data bytes + 4 CRC bytes, "
                       f"only {len(data) + len(crc)} present")
        (data_crc,) = struct.unpack("<I", crc)
        error = None
        if masked_crc32c(data) != data_crc:
            error = fail(f"bad data CRC (stored 0x{data_crc:08x}, computed "
                         f"0x{masked_crc32c(data):08x}): record corrupt")
            if not recover:
                raise error
        yield Record(index, offset, None if error else data, error)
        offset += _HEADER + length + 4
        index += 1


def read_records(uri: str, **kwargs: Any) -> Iterator[bytes]:
    """The records' bytes only; strict (any damage raises)."""
    for rec in iter_records(uri, **kwargs):
        yield rec.data  # type: ignore[misc]  (never None without recover)


# -- tf.train.Example, built at runtime from a descriptor -------------------------------------------

def _example_classes() -> dict[str, type]:
    """Message classes equivalent to tensorflow/core/example/{example,feature}.proto.

    Kept in a private descriptor pool so they never clash with TensorFlow's own registration if
    both are loaded in one process.
    """
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="trajcorpus/tf_example.proto", package="tensorflow", syntax="proto3")

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> descriptor_pb2.DescriptorProto:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
            if ftype in (F.TYPE_FLOAT, F.TYPE_INT64) and label == F.LABEL_REPEATED:
                f.options.packed = True
        return m

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BytesList", ("value", 1, F.TYPE_BYTES, rep, ""))
    message("FloatList", ("value", 1, F.TYPE_FLOAT, rep, ""))
    message("Int64List", ("value", 1, F.TYPE_INT64, rep, ""))
    feature = message(
        "Feature",
        ("bytes_list", 1, F.TYPE_MESSAGE, opt, ".tensorflow.BytesList"),
        ("float_list", 2, F.TYPE_MESSAGE, opt, ".tensorflow.FloatList"),
        ("int64_list", 3, F.TYPE_MESSAGE, opt, ".tensorflow.Int64List"),
    )
    feature.oneof_decl.add(name="kind")
    for f in feature.field:
        f.oneof_index = 0
    features = message("Features", ("feature", 1, F.TYPE_MESSAGE, rep,
                                     ".tensorflow.Features.FeatureEntry"))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt,
                    type_name=".tensorflow.Feature")
    message("Example", ("features", 1, F.TYPE_MESSAGE, opt, ".tensorflow.Features"))

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    names = ("Example", "Features", "Feature", "BytesList", "FloatList", "Int64List")
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.{n}"))
            for n in names}


_CLASSES = _example_classes()
Example = _CLASSES["Example"]


def _packed_payload(serialized: bytes) -> memoryview:
    """The payload of a list message re-serialized by protobuf: always one packed field 1.

    The classes above declare the lists packed, so protobuf re-emits them packed whatever form the
    file used (packed or not); the payload is then one contiguous buffer.
    """
    if not serialized:
        return memoryview(b"")
    if serialized[0] != 0x0A:  # field 1, wire type 2
        raise ValueError(f"unexpected tag 0x{serialized[0]:02x} in a re-serialized list")
    n = shift = 0
    i = 1
    while True:
        byte = serialized[i]
        i += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if i + n != len(serialized):
        raise ValueError("re-serialized list is not a single packed field")
    return memoryview(serialized)[i:]


def _floats(float_list: Any) -> np.ndarray:
    payload = _packed_payload(float_list.SerializeToString())
    return np.frombuffer(payload, dtype="<f4").astype(np.float32, copy=True)


def _decode_varints(payload: memoryview) -> np.ndarray:
    """Packed varints -> int64 (two's complement, as protobuf's int64), all at once."""
    b = np.frombuffer(payload, dtype=np.uint8)
    if b.size == 0:
        return np.zeros(0, np.int64)
    last = b < 0x80
    if last.all():  # every value fits in one byte (actions, flags): the common case
        return b.astype(np.int64)
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    value_of = np.repeat(np.arange(ends.size), ends - starts + 1)
    pos = np.arange(b.size) - starts[value_of]
    if pos.max() > 9:
        raise ValueError("varint longer than 10 bytes")
    parts = (b & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64)
    return np.add.reduceat(parts, starts).view(np.int64)


def _int64s(int64_list: Any) -> np.ndarray:
    payload = _packed_payload(int64_list.SerializeToString())
    if payload and payload[-1] >= 0x80:
        raise ValueError("truncated varint in an Int64List")
    if len(payload) <= _SMALL_LIST:  # a few values: array set-up would cost more than the work
        return np.array(int64_list.value, dtype=np.int64)
    return _decode_varints(payload)


def parse_example(data: bytes, *, uri: str = "<example>",
                  offset: int | None = None) -> dict[str, list[bytes] | np.ndarray]:
    """A serialized ``tf.train.Example`` -> ``{key: values}``.

    float_list -> float32 array, int64_list -> int64 array, bytes_list -> list of bytes; a feature
    with no list set is an empty bytes list (TensorFlow reads it as an empty list too). Malformed
    bytes raise :class:`SourceError` naming ``uri`` and ``offset`` (and the key when known).
    """
    try:
        ex = Example.FromString(data)
    except DecodeError as e:
        raise SourceError(uri, f"not a valid tf.train.Example: {e}", offset=offset) from None
    out: dict[str, list[bytes] | np.ndarray] = {}
    for key, feature in ex.features.feature.items():
        kind = feature.WhichOneof("kind")
        try:
            if kind == "float_list":
                out[key] = _floats(feature.float_list)
            elif kind == "int64_list":
                out[key] = _int64s(feature.int64_list)
            elif kind == "bytes_list":
                out[key] = list(feature.bytes_list.value)
            else:
                out[key] = []
        except (ValueError, IndexError) as e:
            raise SourceError(uri, f"malformed {kind}: {e}", offset=offset, key=key) from None
    return out
