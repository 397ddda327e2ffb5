"""Shards (SPEC section 6): writers for WebDataset tar and Parquet (one codec module each, behind
the registry in ``codecs``), the manifest, verification,
the Hugging Face layout, and streaming readers for PyTorch and NumPy/JAX.

Layout and loading are documented in docs/output-format.md. The PyTorch classes are imported on
first use, so writing shards (the Beam job) does not need torch.
"""

from __future__ import annotations

from typing import Any

from .codecs import Codec, format_names, get_codec, registered_codecs
from .collate import collate
from .epoch import Deal, EpochPlan
from .example import (
    EXAMPLE_FIELDS,
    FIELD_DTYPES,
    SEQUENCE_FIELDS,
    check_example,
    example_nbytes,
    safe_key,
)
from .hub import (
    hub_configs,
    primary_format,
    publish,
    webdataset_data_files,
    webdataset_features,
)
from .index import EpisodeIndex, IndexEntry, read_index
from .layout import parse_relpath, shard_relpath
from .loaders import NumpyLoader
from .manifest import Manifest, VerifyReport, read_manifest, verify_output, write_manifest
from .mixture import Mixture
from .stats import DecodedActions, TrainerInfo, load_stats, normalize, unnormalize
from .stream import ShardDataset, ShardRef, ShardStream, StreamStats
from .writer import ShardFile, write_shard

__all__ = [
    "EXAMPLE_FIELDS", "SEQUENCE_FIELDS", "FIELD_DTYPES", "Codec", "registered_codecs", "format_names",
    "get_codec", "check_example",
    "example_nbytes", "safe_key", "shard_relpath", "parse_relpath", "write_shard", "ShardFile",
    "write_manifest", "read_manifest", "Manifest", "verify_output", "VerifyReport",
    "hub_configs", "primary_format", "webdataset_data_files", "webdataset_features", "publish",
    "ShardDataset", "ShardRef", "ShardStream", "StreamStats", "Mixture", "NumpyLoader",
    "collate", "TorchShardDataset", "StatefulLoader", "EpochPlan", "Deal", "EpisodeIndex",
    "IndexEntry", "read_index",
    "TrainerInfo", "DecodedActions", "load_stats", "normalize", "unnormalize",
]

_TORCH = {"TorchShardDataset", "StatefulLoader"}


def __getattr__(name: str) -> Any:
    if name in _TORCH:
        from . import torchloader

        return getattr(torchloader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
