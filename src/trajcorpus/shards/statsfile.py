"""The mergeable form of a config's raw-value statistics: ``OUT/statistics/{config}.json.zst``.

The manifest holds the statistics *summaries* (mean, std, quantiles), and summaries do not merge:
the q99 of two configs is not a function of their q99s (lerobot #4156 got this wrong). So the job
also writes the state behind them (moments, min/max, and the exact values or KLL sketches, see
:mod:`trajcorpus.schemas.stats`) per task and for the config, and a :class:`~.mixture.Mixture`
merges the states of its components into statistics of the union. This module writes and reads
that file, and nothing else does; the manifest lists it in the config's info as
``"statistics_state": {path, bytes, sha256, version}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import zstandard

from .. import fs
from ..errors import ShardError
from ..schemas.stats import STATE_VERSION, RawStats
from .layout import check_config_name
from .writer import atomic_open

__all__ = ["STATS_DIR", "stats_relpath", "write_stats_state", "read_stats_state"]

STATS_DIR = "statistics"
_FORMAT = "trajcorpus-statistics"
_LEVEL = 10  # fixed: the same states give the same bytes on every run
_MAX_BYTES = 1 << 30  # a decompressed state larger than this is refused, not loaded


def stats_relpath(config: str) -> str:
    return f"{STATS_DIR}/{check_config_name(config)}.json.zst"


def write_stats_state(out: str, config: str, config_state: Mapping,
                      task_states: Mapping[str, Mapping]) -> dict:
    """Write the states (``RawStats.to_state()`` dicts) and return the manifest entry."""
    doc = {"format": _FORMAT, "version": STATE_VERSION, "config": config_state,
           "tasks": {t: task_states[t] for t in sorted(task_states)}}
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    data = zstandard.ZstdCompressor(level=_LEVEL).compress(raw)
    rel = stats_relpath(config)
    uri = fs.join(out, rel)
    fs.makedirs(uri.rsplit("/", 1)[0])
    with atomic_open(uri) as f:
        f.write(data)
    return {"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "version": STATE_VERSION}


def read_stats_state(out: str, config: str, entry: Mapping | None
                     ) -> tuple[RawStats, dict[str, RawStats]]:
    """(config statistics, task -> statistics) from the file the manifest ``entry`` names,
    checked against its size and sha256."""
    if not isinstance(entry, Mapping) or "path" not in entry:
        raise ShardError(f"{out} config {config!r}", "the manifest lists no statistics state "
                         "(written by an older trajcorpus: rerun the job)")
    uri = fs.join(out, str(entry["path"]))
    if not fs.exists(uri):
        raise ShardError(uri, "statistics state listed in the manifest is missing")
    with fs.open_uri(uri, "rb") as f:
        data = f.read()
    if len(data) != entry.get("bytes") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise ShardError(uri, "statistics state differs from the manifest's size or sha256")
    try:
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=_MAX_BYTES)
        doc = json.loads(raw)
    except (zstandard.ZstdError, ValueError) as e:
        raise ShardError(uri, f"unreadable statistics state: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ShardError(uri, f"not a {_FORMAT} file")
    if doc.get("version") != STATE_VERSION:
        raise ShardError(uri, f"statistics state version {doc.get('version')!r}, this "
                         f"trajcorpus reads {STATE_VERSION} (rerun the job)")
    tasks = doc.get("tasks")
    if not isinstance(tasks, dict):
        raise ShardError(uri, "field 'tasks' must be an object")
    return (RawStats.from_state(doc.get("config"), f"{uri} config"),
            {t: RawStats.from_state(s, f"{uri} task {t!r}") for t, s in tasks.items()})
