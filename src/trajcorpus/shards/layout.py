"""Where shards live under OUT, and which Hugging Face config loads them.

``OUT/data/{config}/{split}-{i:05d}-of-{n:05d}.{ext}``: one folder per config (catalog
dataset), every format side by side, told apart by its codec's extension (``shards.codecs``). WebDataset shards are
gzip-compressed tar streams (``.tar.gz``, which webdataset, ``datasets`` and ``tar`` read as
is): a plain tar spends a 512-byte header plus block padding on every member, 8 bytes per token
on Atari sequences whatever the members hold. The hub configs are derived from
this layout in :mod:`.hub`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import ShardError
from .codecs import extensions, get_codec

__all__ = ["DATA_DIR", "MIN_SHARDS", "MIN_SHARD_BYTES", "ShardName",
           "shard_relpath", "parse_relpath", "check_config_name", "check_split_name",
           "config_dir", "plan_num_shards"]

DATA_DIR = "data"
MIN_SHARDS = 16  # default floor on the shard count (see plan_num_shards)
MIN_SHARD_BYTES = 4 << 20  # ... which never makes shards smaller than this (by estimate)
_CONFIG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_]+$")  # datasets requires \w+ split names
_NAME_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<i>\d{5,})-of-(?P<n>\d{5,})\."
                      r"(?P<ext>[A-Za-z0-9][A-Za-z0-9.]*)$")  # a codec's extension


@dataclass(frozen=True)
class ShardName:
    config: str
    split: str
    format: str
    index: int
    count: int


def check_config_name(config: str) -> str:
    if not isinstance(config, str) or not _CONFIG_RE.match(config) or ".." in config:
        raise ShardError(f"config {config!r}", "must be letters, digits, '_', '-' or '.' "
                         "(it names a folder and a Hugging Face config)")
    return config


def check_split_name(split: str) -> str:
    if not isinstance(split, str) or not _SPLIT_RE.match(split):
        raise ShardError(f"split {split!r}", "must be letters, digits or '_' (datasets' rule)")
    return split


def config_dir(config: str) -> str:
    return f"{DATA_DIR}/{check_config_name(config)}"


def plan_num_shards(est_bytes: int, shard_bytes: int, min_shards: int = MIN_SHARDS) -> int:
    """How many shards a split gets: enough that none exceeds ``shard_bytes`` (by estimate),
    and at least ``min_shards`` while each still holds ``MIN_SHARD_BYTES``.

    Why a floor: a shard is written by one worker and read by one loader worker, so a corpus
    smaller than the byte target would otherwise be a single shard: the job's last stage would
    run on one core (measured: 0.83x the plain loop on 2 cores) and a trainer could not split it
    across nodes or DataLoader workers. The rule depends on the data only, never on the number
    of workers, so every runner writes the same shards.
    """
    if shard_bytes <= 0 or min_shards <= 0:
        raise ShardError("shard plan", f"shard_bytes ({shard_bytes}) and min_shards "
                         f"({min_shards}) must be positive")
    est = max(int(est_bytes), 0)
    return max(1, math.ceil(est / shard_bytes), min(min_shards, est // MIN_SHARD_BYTES))


def shard_relpath(config: str, split: str, fmt: str, index: int, count: int) -> str:
    """``data/{config}/{split}-{index:05d}-of-{count:05d}.{ext}``, relative to OUT."""
    ext = get_codec(fmt).extension
    if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
        raise ShardError(f"shard {index} of {count}", "need 0 <= index < count")
    return (f"{config_dir(config)}/{check_split_name(split)}-{index:05d}-of-{count:05d}."
            f"{ext}")


def parse_relpath(relpath: str) -> ShardName:
    """The inverse of :func:`shard_relpath`; ShardError for any other path."""
    parts = relpath.split("/")
    m = _NAME_RE.match(parts[-1]) if len(parts) == 3 and parts[0] == DATA_DIR else None
    by_ext = extensions()
    if m is None or not _CONFIG_RE.match(parts[1]) or m["ext"] not in by_ext:
        raise ShardError(relpath, "not a shard path data/{config}/{split}-NNNNN-of-NNNNN."
                         f"{{{'|'.join(by_ext)}}}")
    index, count = int(m["i"]), int(m["n"])
    if index >= count:
        raise ShardError(relpath, f"shard index {index} >= count {count}")
    return ShardName(parts[1], m["split"], by_ext[m["ext"]], index, count)
