"""LeRobot dataset metadata, typed and checked: ``meta/info.json``, the task table and where each
episode lives (v3.0 ``meta/episodes/*.parquet`` or v2.1 ``meta/episodes.jsonl`` + path templates).

Everything a reader takes from the files passes :mod:`.metadata`'s strict gate first, so a wrong
shape is one :class:`SourceError` naming the file and the field. The layouts follow what
lerobot's code writes (0.6.1 for v3.0, 0.3.3 for v2.1), see tests/fixtures/lerobot/PROVENANCE.md.
"""

from __future__ import annotations

import dataclasses
import math
import string
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from .. import fs
from ..errors import SourceError, one_line
from .imagecaption import safe_relative_name
from .metadata import MAX_JSON_BYTES, Name, Strict, Text, digits, load_json, parse_json, validate

__all__ = ["LAYOUTS", "RESERVED", "Feature", "Info", "Place", "load_info", "load_tasks",
           "episode_places_v30", "episode_places_v21", "format_path", "flat_names"]

LAYOUTS = ("v2.1", "v3.0")
# Bookkeeping columns of every data file, and the features with a fixed role in the Episode.
RESERVED = ("timestamp", "frame_index", "episode_index", "index", "task_index",
            "action", "next.reward", "next.done")
EPISODES_DIR = "meta/episodes"  # v3.0: constant in lerobot (DEFAULT_EPISODES_PATH), not in info
_V30_FIELDS = {"data": {"chunk_index", "file_index"},
               "video": {"video_key", "chunk_index", "file_index"}}
_V21_FIELDS = {"data": {"episode_chunk", "episode_index"},
               "video": {"video_key", "episode_chunk", "episode_index"}}


class Feature(Strict):
    """One ``features`` entry of info.json."""

    dtype: Name
    shape: list[digits(ge=0, le=1 << 31)] = Field(max_length=8)
    names: list[Any] | dict[Name, Any] | None = None
    info: dict[Name, Any] | None = None


class Info(Strict):
    """``meta/info.json``: the fields the reader uses (others are kept, formats grow)."""

    codebase_version: Name
    fps: float = Field(gt=0, le=100_000)
    features: dict[Name, Feature] = Field(max_length=4096)
    data_path: Name
    video_path: Name | None = None
    chunks_size: digits(ge=1) = 1000
    robot_type: Name | None = None
    total_episodes: digits() | None = None


class _TaskLine(Strict):
    task_index: digits()
    task: Text


class _EpisodeLine(Strict):
    episode_index: digits()
    length: digits()
    tasks: list[Text] = Field(default_factory=list, max_length=1 << 16)


@dataclasses.dataclass(frozen=True)
class Place:
    """Where one episode lives: its rows and, per camera, its video file and time span."""

    episode_index: int
    length: int
    data_file: str  # path below the dataset root
    rows: tuple[int, int] | None  # v3.0: global [from, to) of the ``index`` column
    videos: tuple[tuple[str, str, float, float | None], ...]  # (key, path, from_s, to_s)
    tasks: tuple[str, ...]


def load_info(root: str) -> Info:
    """info.json validated, with a supported ``codebase_version`` and usable path templates."""
    uri = fs.join(root, "meta", "info.json")
    info = load_json(uri, Info, what="LeRobot meta/info.json")
    if info.codebase_version not in LAYOUTS:
        raise SourceError(uri, f"unsupported codebase_version {info.codebase_version[:40]!r} "
                          f"(known: {', '.join(LAYOUTS)})", key="codebase_version")
    fields = _V30_FIELDS if info.codebase_version == "v3.0" else _V21_FIELDS
    _check_template(info.data_path, fields["data"], uri, "data_path")
    if any(f.dtype == "video" for f in info.features.values()):
        if not info.video_path:
            raise SourceError(uri, "video features but no video_path", key="video_path")
        _check_template(info.video_path, fields["video"], uri, "video_path")
    for name, f in info.features.items():
        if f.dtype in ("video", "image") and (len(f.shape) != 3 or f.shape[-1] not in (1, 3, 4)):
            raise SourceError(uri, f"camera shape {f.shape} is not [H, W, C]",
                              key=f"features.{name}.shape")
        if math.prod(f.shape) > 1 << 24:
            raise SourceError(uri, f"shape {f.shape} too large", key=f"features.{name}.shape")
    return info


def _check_template(template: str, allowed: set[str], uri: str, key: str) -> None:
    """A path template may use only the layout's fields, plain (no attribute or index access)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise SourceError(uri, f"bad template: {one_line(e)}", key=key) from None
    for _, field, _, _ in parts:
        if field is not None and field not in allowed:
            raise SourceError(uri, f"template field {{{field}}} is not one of "
                              f"{sorted(allowed)}", key=key)


def format_path(template: str, where: str, key: str, **fields: Any) -> str:
    """A data/video path from its template (info.json ``key``); refused unless a plain path
    below the root. ``where`` names the file whose values filled it."""
    try:
        path = template.format(**fields)
    except (ValueError, KeyError, IndexError) as e:
        raise SourceError(where, f"cannot fill info.json {key} {template!r}: {one_line(e)}",
                          key=key) from None
    if not safe_relative_name(path):
        raise SourceError(where, f"info.json {key} gives {path!r}, which leaves the dataset "
                          "folder", key=key)
    return path


def flat_names(feature: Feature) -> list[str] | None:
    """The per-dimension names of a vector feature: a list, or ``{"motors": [...]}`` (several
    lists concatenated in order); None unless one name per value."""
    raw = feature.names
    if isinstance(raw, dict):
        lists = list(raw.values())
        if not all(isinstance(v, list) for v in lists):
            return None
        raw = [x for v in lists for x in v]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        return None
    return [x[:200] for x in raw] if len(raw) == math.prod(feature.shape) else None


def _jsonl(uri: str, model: type, what: str) -> list[Any]:
    try:
        with fs.open_uri(uri, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise SourceError(uri, f"missing {what}") from None
    if len(data) > MAX_JSON_BYTES:
        raise SourceError(uri, f"larger than the limit of {MAX_JSON_BYTES} bytes")
    out = []
    for n, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            out.append(validate(parse_json(line, uri, key=f"line {n}", what=what), model, uri,
                                key=f"line {n}"))
    return out


def load_tasks(root: str, info: Info) -> dict[int, str]:
    """task_index -> task string (v3.0 ``meta/tasks.parquet``, v2.1 ``meta/tasks.jsonl``)."""
    if info.codebase_version == "v2.1":
        lines = _jsonl(fs.join(root, "meta", "tasks.jsonl"), _TaskLine, "tasks line")
        return {t.task_index: t.task for t in lines}
    uri = fs.join(root, "meta", "tasks.parquet")
    table = _read_parquet(uri, ["task_index", "task"])
    index = _ints(table, "task_index", uri)
    task = table.column("task")
    if not (pa.types.is_string(task.type) or pa.types.is_large_string(task.type)):
        raise SourceError(uri, f"expected text, got {task.type}", key="task")
    if task.null_count:
        raise SourceError(uri, "null task", key="task")
    return dict(zip(index.tolist(), task.to_pylist(), strict=True))


def _read_parquet(uri: str, columns: list[str]) -> pa.Table:
    try:
        with fs.open_uri(uri, "rb") as f:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            for c in columns:
                if c not in names:
                    raise SourceError(uri, "missing column", key=c)
            return pf.read(columns=columns)
    except FileNotFoundError:
        raise SourceError(uri, "missing file") from None
    except (OSError, pa.ArrowException) as e:
        raise SourceError(uri, f"cannot read parquet: {one_line(e)}") from None


def _ints(table: pa.Table, column: str, uri: str) -> np.ndarray:
    col = table.column(column)
    if not pa.types.is_integer(col.type):
        raise SourceError(uri, f"expected integers, got {col.type}", key=column)
    if col.null_count:
        raise SourceError(uri, "null value", key=column)
    return col.to_numpy().astype(np.int64)


def _floats(table: pa.Table, column: str, uri: str) -> np.ndarray:
    col = table.column(column)
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        raise SourceError(uri, f"expected numbers, got {col.type}", key=column)
    if col.null_count:
        raise SourceError(uri, "null value", key=column)
    out = col.to_numpy().astype(np.float64)
    if not np.isfinite(out).all():
        raise SourceError(uri, "non-finite value", key=column)
    return out


def episode_places_v30(root: str, uri: str, info: Info, cameras: list[str]) -> list[Place]:
    """The episodes listed in one v3.0 ``meta/episodes/chunk-*/file-*.parquet``."""
    video = [c for c in cameras if info.features[c].dtype == "video"]
    cols = ["episode_index", "length", "data/chunk_index", "data/file_index",
            "dataset_from_index", "dataset_to_index"]
    vcols = [f"videos/{k}/{p}" for k in video
             for p in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    table = _read_parquet(uri, cols + vcols + ["tasks"])
    ints = {c: _ints(table, c, uri) for c in cols + [c for c in vcols if c.endswith("_index")]}
    floats = {c: _floats(table, c, uri) for c in vcols if c.endswith("_timestamp")}
    tasks = table.column("tasks").to_pylist()
    places = []
    for i in range(table.num_rows):
        ep = int(ints["episode_index"][i])
        if ints["length"][i] < 0 or ints["dataset_to_index"][i] - ints["dataset_from_index"][i] \
                != ints["length"][i]:
            raise SourceError(uri, f"episode {ep}: dataset_to_index - dataset_from_index "
                              f"differs from length {ints['length'][i]}", key="length")
        data = format_path(info.data_path, uri, "data_path",
                           chunk_index=int(ints["data/chunk_index"][i]),
                           file_index=int(ints["data/file_index"][i]))
        vids = []
        for k in video:
            lo, hi = floats[f"videos/{k}/from_timestamp"][i], floats[f"videos/{k}/to_timestamp"][i]
            if hi < lo or lo < 0:
                raise SourceError(uri, f"episode {ep}: bad time span [{lo}, {hi})",
                                  key=f"videos/{k}/from_timestamp")
            path = format_path(info.video_path or "", uri, "video_path", video_key=k,
                               chunk_index=int(ints[f"videos/{k}/chunk_index"][i]),
                               file_index=int(ints[f"videos/{k}/file_index"][i]))
            vids.append((k, path, float(lo), float(hi)))
        t = tasks[i]
        places.append(Place(ep, int(ints["length"][i]), data,
                            (int(ints["dataset_from_index"][i]), int(ints["dataset_to_index"][i])),
                            tuple(vids), tuple(x for x in t if isinstance(x, str)) if isinstance(
                                t, list) else ()))
    return places


def episode_places_v21(root: str, info: Info, cameras: list[str]) -> list[Place]:
    """Every episode of a v2.1 dataset, from ``meta/episodes.jsonl`` and the path templates."""
    uri = fs.join(root, "meta", "episodes.jsonl")
    video = [c for c in cameras if info.features[c].dtype == "video"]
    places = []
    for line in _jsonl(uri, _EpisodeLine, "episodes line"):
        ep, chunk = line.episode_index, line.episode_index // info.chunks_size
        data = format_path(info.data_path, uri, "data_path", episode_chunk=chunk,
                           episode_index=ep)
        vids = tuple((k, format_path(info.video_path or "", uri, "video_path", video_key=k,
                                     episode_chunk=chunk, episode_index=ep), 0.0, None)
                     for k in video)
        places.append(Place(ep, line.length, data, None, vids, tuple(line.tasks)))
    return places
