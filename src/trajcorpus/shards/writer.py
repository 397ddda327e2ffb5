"""Write one shard: checked examples in, a file moved into place and its ShardFile record out."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import IO

from .. import fs
from ..errors import ShardError
from .example import check_example
from .layout import parse_relpath
from .parquetcodec import write_parquet
from .tarcodec import write_tar

__all__ = ["ShardFile", "write_shard", "HashingWriter", "TEMP_MARKER"]

TEMP_MARKER = ".tmp-"  # temporary names: {final}.tmp-{uuid}; verify reports leftovers as extra


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

    The bytes go to a temporary name beside the target and are moved into place only once
    complete, so a crash never leaves a truncated file under a shard name. The same examples
    give the same bytes (fixed tar metadata, deterministic zstd and Parquet encoders).
    """
    name = parse_relpath(relpath)
    if name.format != fmt:
        raise ShardError(relpath, f"extension does not match format {fmt!r}")
    target = fs.join(out, relpath)
    temp = f"{target}{TEMP_MARKER}{uuid.uuid4().hex[:12]}"
    fs.makedirs(target.rsplit("/", 1)[0])
    try:
        with fs.open_uri(temp, "wb") as raw:
            sink = HashingWriter(raw)
            rows = _checked(examples, relpath)
            count = write_tar(rows, sink) if fmt == "webdataset" else write_parquet(rows, sink)
        fs.rename(temp, target)
    except BaseException:
        try:
            fs.remove(temp)
        except OSError:
            pass
        raise
    return ShardFile(path=relpath, bytes=sink.count, sha256=sink.sha.hexdigest(), examples=count,
                     config=name.config, split=name.split, format=fmt)
