"""Write one shard: checked examples in, a file moved into place and its ShardFile record out."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import IO

from .. import fs
from ..errors import ShardError
from .codecs import get_codec
from .example import check_example
from .layout import parse_relpath

__all__ = ["ShardFile", "write_shard", "HashingWriter", "TEMP_MARKER", "atomic_open"]

TEMP_MARKER = ".tmp-"  # temporary names: {final}.tmp-{uuid}; verify reports leftovers as extra


def _abandon(f: IO[bytes]) -> None:
    """Drop an unfinished object-store upload without publishing it.

    fsspec's ``discard()`` cancels a started (resumable) upload but leaves the file open, and a
    small file has not started one at all; either way the file's ``__del__`` would later call
    ``close()``, which uploads the buffer and publishes the partial object (seen with gcsfs).
    Marking it closed prevents that. A failed cancel (the emulator answers 501) only leaves an
    unfinished upload, which GCS never publishes, so it does not mask the original error.
    """
    discard = getattr(f, "discard", None)
    if discard is not None:
        with contextlib.suppress(Exception):
            discard()
    with contextlib.suppress(AttributeError):
        f.closed = True


@contextlib.contextmanager
def atomic_open(uri: str) -> Iterator[IO[bytes]]:
    """Open ``uri`` for writing so that readers see the old file or the whole new one.

    File systems: a temporary name beside the target, renamed into place when complete. Object
    stores (gs://, s3://, memory://) publish an object only when its upload completes, so the
    target is written directly (a rename there is a copy plus a delete, slower and no safer)
    and a failed write discards the upload instead of closing, which would publish it.
    """
    if not fs.is_local(uri):
        f = fs.open_uri(uri, "wb")
        try:
            yield f
        except BaseException:
            _abandon(f)
            raise
        f.close()
        return
    temp = f"{uri}{TEMP_MARKER}{uuid.uuid4().hex[:12]}"
    try:
        with fs.open_uri(temp, "wb") as f:
            yield f
        fs.rename(temp, uri)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.remove(temp)
        raise


@dataclass(frozen=True)
class ShardFile:
    """One written shard as the manifest lists it; ``path`` is relative to OUT."""

    path: str
    bytes: int
    sha256: str
    examples: int
    config: str
    split: str
    format: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ShardFile:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


class HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through (one pass, no
    re-read of the written file, which may be on gs://)."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.count += len(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.count

    def flush(self) -> None:
        self.raw.flush()

    @property
    def closed(self) -> bool:
        return self.raw.closed

    def close(self) -> None:  # the owner closes the raw file
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False


def _checked(examples: Iterable[dict], relpath: str) -> Iterator[dict]:
    seen_last = None
    for ex in examples:
        check_example(ex)
        key = ex["__key__"]
        if seen_last is not None and key <= seen_last:
            raise ShardError(f"{relpath} example {key!r}",
                             f"keys must be unique and ascending (after {seen_last!r})")
        seen_last = key
        yield ex


def write_shard(examples: Iterable[dict], out: str, relpath: str, fmt: str) -> ShardFile:
    """Write ``examples`` (already in final order, keys ascending) to ``OUT/relpath``.

    The file appears under its shard name only once complete (:func:`atomic_open`), so a crash
    never leaves a truncated shard. The same examples give the same bytes (fixed tar metadata,
    deterministic zstd and Parquet encoders).
    """
    name = parse_relpath(relpath)
    if name.format != fmt:
        raise ShardError(relpath, f"extension does not match format {fmt!r}")
    target = fs.join(out, relpath)
    fs.makedirs(target.rsplit("/", 1)[0])
    with atomic_open(target) as raw:
        sink = HashingWriter(raw)
        rows = _checked(examples, relpath)
        count = get_codec(fmt).write(rows, sink)
    return ShardFile(path=relpath, bytes=sink.count, sha256=sink.sha.hexdigest(), examples=count,
                     config=name.config, split=name.split, format=fmt)
