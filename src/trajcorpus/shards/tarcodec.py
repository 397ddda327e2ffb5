"""WebDataset tar shards: one ``{key}.{field}.npy.zst`` member per array field plus
``{key}.meta.txt``, in a gzip-compressed tar stream (``.tar.gz``).

Why these member types: ``datasets``' WebDataset loader (and ours) decompresses ``.zst`` and
decodes ``.npy`` without pickle, giving typed integer arrays; ``meta`` is a ``.txt`` (a JSON
string, as in the Parquet shards) because ``datasets`` infers a ``.json`` member's struct type
from the first five samples and then fails on later samples whose prompt or lineage differ.

Why gzip around the tar: every tar member costs a 512-byte header plus padding to a 512-byte
block, so eight members are >= 8 KiB per example however well each member compresses (9.4
bytes per token on 1024-token Atari sequences). Gzip squeezes headers and padding to a few bytes
each (1.9 bytes per token); it is the one stream compression that webdataset, ``datasets`` and
``tar`` all open transparently. The members stay zstd-compressed inside (zstd level 9 beats
gzip on the pixels, and ``datasets`` decodes ``.npy.zst``). The gzip header carries no name and
mtime 0, so the same examples give the same bytes.

Reading never extracts: member names are parsed as strings, non-regular members are refused,
npy headers are parsed without pickle and decompression is bounded. The reader parses USTAR
headers itself instead of using :mod:`tarfile`, whose per-member TarInfo parsing cost more than
decompressing the pixels (2x the whole read path on Atari shards); it accepts exactly what
:func:`write_tar` writes (regular files, USTAR, checksummed headers) and refuses
links, devices and PAX/GNU extension headers rather than half-interpreting them. It reads plain
(uncompressed) tar shards too, told apart by the gzip magic.

Writing uses the stdlib's :mod:`tarfile` directly, with the conventions of
``webdataset.TarWriter`` (USTAR, a sample's members sorted by name, fixed mtime, owner and mode):
importing webdataset imports torch, which cost every job process and worker ~3 CPU s.
"""

from __future__ import annotations

import ast
import gzip
import io
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np
import zstandard
from numpy.lib import format as npformat

from ..errors import ShardError
from .codecs import Codec, register
from .example import FIELD_DTYPES

try:  # ISA-L inflates ~4x faster than zlib; optional (the same bytes either way)
    from isal import igzip as _gunzip
    from isal import isal_zlib as _isal_zlib

    _GZIP_ERRORS: tuple = (OSError, EOFError, zlib.error, _isal_zlib.error)
except ImportError:  # pragma: no cover - isal is a dependency, but a missing wheel is not fatal
    _gunzip = gzip
    _GZIP_ERRORS = (OSError, EOFError, zlib.error)

__all__ = ["MEMBER_NAMES", "ZSTD_LEVEL", "GZIP_LEVEL", "write_tar", "iter_tar",
           "encode_members", "decode_npy", "MAX_MEMBER_BYTES", "CODEC"]

ZSTD_LEVEL = 9
GZIP_LEVEL = 6  # the stream is headers, padding and zstd frames: level 9 gains <0.5%
_GZIP_MAGIC = b"\x1f\x8b"
MEMBER_NAMES = {**{f: f"{f}.npy.zst" for f in FIELD_DTYPES}, "meta": "meta.txt"}
_FIELD_OF_MEMBER = {m: f for f, m in MEMBER_NAMES.items()}
MAX_MEMBER_BYTES = 1 << 30  # bound on any member, compressed or decoded
_MTIME = 0  # fixed, so the same examples give the same bytes


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    npformat.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def encode_members(ex: dict, compressor: zstandard.ZstdCompressor) -> dict:
    """One sample's members: ``__key__`` and a bytes value per member name."""
    out = {"__key__": ex["__key__"], MEMBER_NAMES["meta"]: ex["meta"].encode("utf-8")}
    for field in FIELD_DTYPES:
        out[MEMBER_NAMES[field]] = compressor.compress(_npy_bytes(ex[field]))
    return out


def write_tar(examples: Iterable[dict], fileobj: IO[bytes], level: int = ZSTD_LEVEL,
              gzip_level: int = GZIP_LEVEL) -> int:
    """Write examples (already checked, in final order) as a gzip-compressed tar stream;
    returns the count.

    Each sample's members are sorted by name, and mtime, owner and mode are fixed (as are the
    gzip header's mtime and name), so the bytes depend on the examples only.
    """
    compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
    n = 0
    # zlib, not ISA-L: the stdlib's output is the same on every machine, so shards are too
    with gzip.GzipFile(fileobj=fileobj, mode="wb", compresslevel=gzip_level, mtime=_MTIME,
                       filename="") as stream:
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
            for ex in examples:
                _add_sample(tar, encode_members(ex, compressor))
                n += 1
    return n


def _add_sample(tar: tarfile.TarFile, members: dict) -> None:
    key = members["__key__"]
    for name in sorted(members):
        if name == "__key__":
            continue
        data = members[name]
        info = tarfile.TarInfo(f"{key}.{name}")
        info.size, info.mtime, info.mode = len(data), _MTIME, 0o444
        info.uname = info.gname = "trajcorpus"
        tar.addfile(info, io.BytesIO(data))


# ---------------------------------------------------------------------------- reading

_HEADER_CACHE: dict[bytes, tuple[np.dtype, tuple[int, ...], int]] = {}
_DECOMPRESSOR = zstandard.ZstdDecompressor()


def _parse_npy_header(raw: bytes | memoryview, where: str) -> tuple[np.dtype, tuple, int]:
    """(dtype, shape, data offset). Headers repeat across samples, so they are parsed once."""
    head = bytes(raw[:10])
    if head[:6] != b"\x93NUMPY":
        raise ShardError(where, "not an .npy array (bad magic)")
    major = head[6]
    if major == 1:
        hlen, start = int.from_bytes(head[8:10], "little"), 10
    elif major in (2, 3):
        hlen, start = int.from_bytes(bytes(raw[8:12]), "little"), 12
    else:
        raise ShardError(where, f"unsupported .npy version {major}")
    header = bytes(raw[:start + hlen])
    hit = _HEADER_CACHE.get(header)
    if hit is not None:
        return hit
    try:
        d = ast.literal_eval(header[start:].decode("latin1"))  # a dict literal, never code
        dtype = npformat.descr_to_dtype(d["descr"])
        shape = tuple(int(s) for s in d["shape"])
        fortran = bool(d["fortran_order"])
    except (ValueError, SyntaxError, KeyError, TypeError) as e:
        raise ShardError(where, f"bad .npy header: {e}") from None
    if dtype.hasobject:
        raise ShardError(where, "object arrays are refused (they would need pickle)")
    if fortran:
        raise ShardError(where, "Fortran-ordered arrays are not written by trajcorpus")
    hit = (dtype, shape, start + hlen)
    if len(_HEADER_CACHE) < 4096:
        _HEADER_CACHE[header] = hit
    return hit


def decode_npy(raw: bytes | memoryview, field: str, where: str) -> np.ndarray:
    """A read-only array viewing ``raw``; checks the field's dtype and the payload length."""
    dtype, shape, offset = _parse_npy_header(raw, where)
    want = FIELD_DTYPES[field]
    if dtype != want:
        raise ShardError(where, f"dtype {dtype}, expected {want}")
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - offset != count * dtype.itemsize:
        raise ShardError(where, f"payload of {len(raw) - offset} bytes for shape {shape}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape)


def _decompress(data: bytes | memoryview, where: str) -> bytes:
    size = zstandard.frame_content_size(data) if len(data) >= 4 else -1
    if size < 0 or size > MAX_MEMBER_BYTES:
        raise ShardError(where, "zstd frame without a content size or larger than "
                         f"{MAX_MEMBER_BYTES} bytes")
    try:
        return _DECOMPRESSOR.decompress(data, max_output_size=size)
    except zstandard.ZstdError as e:
        raise ShardError(where, f"corrupt zstd data: {e}") from None


def _split_name(name: str, where: str) -> tuple[str, str]:
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot <= slash + 1:
        raise ShardError(where, f"member {name!r} is not KEY.FIELD")
    return name[:dot], name[dot + 1:]


def _decode_sample(key: str, members: dict, uri: str) -> dict:
    ex: dict = {"__key__": key}
    for member, field in _FIELD_OF_MEMBER.items():
        raw = members.get(member)
        where = f"{uri} [{key}.{member}]"
        if raw is None:
            raise ShardError(where, "member missing from the sample")
        if field == "meta":
            try:
                ex["meta"] = bytes(raw).decode("utf-8")
            except UnicodeDecodeError as e:
                raise ShardError(where, f"not UTF-8: {e}") from None
        else:
            ex[field] = decode_npy(_decompress(raw, where), field, where)
    return ex


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_REGULAR = (b"0", b"\0")


def _octal(field: bytes, what: str, where: str) -> int:
    if field[:1] and field[0] & 0x80:
        raise ShardError(where, f"base-256 {what} (members over 8 GiB are not written here)")
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ShardError(where, f"corrupt tar header: {what} {field!r}") from None


def _members(f: IO[bytes], uri: str, keep: Any) -> Iterator[tuple[str, memoryview | None]]:
    """(member name, data) in archive order; data is None where ``keep(name)`` is False (those
    bytes are seeked over, not read)."""
    seek = f.seekable()
    offset = 0
    while True:
        header = f.read(_BLOCK)
        where = f"{uri} @ offset {offset}"
        if not header:
            return  # no end-of-archive blocks: a short archive is caught by the example count
        if len(header) < _BLOCK:
            raise ShardError(where, f"truncated tar header ({len(header)} of {_BLOCK} bytes)")
        if header == _ZERO_BLOCK:
            return
        if header[257:262] != b"ustar":
            raise ShardError(where, "not a USTAR tar header (corrupt or not a tar shard)")
        stored = _octal(header[148:156], "checksum", where)
        arr = np.frombuffer(header, dtype=np.uint8)
        if int(arr.sum()) - int(arr[148:156].sum()) + 8 * 32 != stored:
            raise ShardError(where, "tar header checksum mismatch (corrupt shard)")
        name = header[:100].split(b"\0", 1)[0]
        prefix = header[345:500].split(b"\0", 1)[0]
        try:
            text = (prefix + b"/" + name if prefix else name).decode("utf-8")
        except UnicodeDecodeError:
            raise ShardError(where, "member name is not UTF-8") from None
        if header[156:157] not in _REGULAR:
            raise ShardError(where, f"member {text!r} is not a regular file (type "
                             f"{header[156:157]!r}); trajcorpus shards hold only files")
        size = _octal(header[124:136], "size", where)
        if size > MAX_MEMBER_BYTES:
            raise ShardError(where, f"member {text!r} has {size} bytes")
        padded = -(-size // _BLOCK) * _BLOCK
        if keep(text):
            data = f.read(padded)
            if len(data) < size:
                raise ShardError(f"{uri} [{text}]",
                                 f"truncated member: {len(data)} of {size} bytes")
            yield text, memoryview(data)[:size]
        else:
            if seek:
                f.seek(padded, io.SEEK_CUR)
            else:
                f.read(padded)
            yield text, None
        offset += _BLOCK + padded


def _tar_stream(fileobj: IO[bytes], uri: str) -> IO[bytes]:
    """The uncompressed tar stream of a ``.tar.gz`` (or plain ``.tar``) shard."""
    if not fileobj.seekable():
        raise ShardError(uri, "tar shards are read from seekable files")
    magic = fileobj.read(2)
    fileobj.seek(-len(magic), io.SEEK_CUR)
    if magic != _GZIP_MAGIC:
        return fileobj
    return _gunzip.GzipFile(fileobj=fileobj, mode="rb")


def iter_tar(fileobj: IO[bytes], uri: str, wanted: np.ndarray | None = None,
             ) -> Iterator[tuple[int, dict | None]]:
    """Yield ``(index, example)`` for every sample in order; ``example`` is None for samples
    with ``wanted[index]`` False, whose members are skipped without decoding.

    Raises ShardError for truncated, corrupt or malformed archives (offsets count bytes of the
    uncompressed tar stream).
    """
    stream = _tar_stream(fileobj, uri)
    try:
        yield from _iter_samples(stream, uri, wanted)
    except _GZIP_ERRORS as e:  # gzip: bad CRC, truncated, corrupt
        raise ShardError(uri, f"corrupt or truncated gzip stream: {e}") from None


def _iter_samples(fileobj: IO[bytes], uri: str, wanted: np.ndarray | None,
                  ) -> Iterator[tuple[int, dict | None]]:
    state = {"index": 0, "key": None}

    def keep(name: str) -> bool:
        slash = name.rfind("/")
        dot = name.find(".", slash + 1)
        k = name[:dot] if dot > slash + 1 else name
        i = state["index"] + (state["key"] is not None and k != state["key"])
        return wanted is None or (i < len(wanted) and bool(wanted[i]))

    index, key, members = 0, None, {}
    for name, data in _members(fileobj, uri, keep):
        k, member = _split_name(name, f"{uri} [{name}]")
        if k != key:
            if key is not None:
                yield index, _decode_sample(key, members, uri) if members is not None else None
                index += 1
            key = k
            state["index"], state["key"] = index, key
            members = {} if data is not None else None
        if members is None or member not in _FIELD_OF_MEMBER:
            continue
        if member in members:
            raise ShardError(f"{uri} [{name}]", "duplicate member in a sample")
        members[member] = data
    if key is not None:
        yield index, _decode_sample(key, members, uri) if members is not None else None


GZ_MEMBER_OVERHEAD = 16  # a member's 512-byte header + padding, gzipped (measured: 10-20 bytes)


def _estimate(sizes: list[int], key: str) -> int:
    """+ each member's tar header and padding, once gzipped."""
    return sum(sizes) + len(sizes) * GZ_MEMBER_OVERHEAD


CODEC = register(Codec(name="webdataset", extension="tar.gz", rank=1, hub_builder="webdataset",
                       write=write_tar, read=iter_tar, estimate=_estimate))
