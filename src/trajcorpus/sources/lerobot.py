"""LeRobot datasets (layouts v2.1 and v3.0, video and image cameras) read without ``lerobot``.

The layout is detected from ``meta/info.json``'s ``codebase_version`` (lerobot's own rule):

* **v3.0**: ``meta/episodes/chunk-*/file-*.parquet`` (one row per episode: its data file, global
  row range, and per camera its video file and ``from_timestamp``/``to_timestamp``),
  ``meta/tasks.parquet``, ``data/...`` Parquet files holding many episodes, ``videos/{key}/...``
  MP4s holding many episodes back to back. One unit = one episode-metadata file.
* **v2.1**: ``meta/episodes.jsonl``, ``meta/tasks.jsonl``, one Parquet and one MP4 per camera
  per episode. One unit = one episode.

Paths come from info.json's ``data_path``/``video_path`` templates. Mapping to
:class:`~trajcorpus.schemas.Episode` (one row = one step):

* **observations**: each ``video``/``image`` feature is an ``image`` observation (HxWx3 uint8 at
  its native size; frames matched to rows by time within half a frame period, see
  :mod:`.video`); other float features are ``continuous``, int/bool ones ``discrete``; names
  drop the ``observation.`` prefix (``observation.state`` -> ``state``). The frame's task
  (``task_index`` -> tasks table) is the text observation ``instruction``: one entry when the
  episode has one task, else one per step.
* **actions**: ``action`` (float -> continuous); none -> ``action_kind`` "none".
* **rewards**: ``next.reward`` when the dataset has it; else zeros, ``source["rewards"]`` says
  ``"absent"`` and :meth:`LeRobotSource.rewardless` gives the reason (the job refuses to filter
  such a dataset). ``is_terminal`` = ``next.done`` of the last row (False without it).
* **names**: task = the repo id (option ``repo_id``, else the dataset folder's name), agent = the
  ``robot_type`` (else the repo id); template fields ``repo_id``, ``robot_type``,
  ``instruction`` (the episode's first task), ``episode_index``. order = (episode_index,),
  episode_id = ``episode_{index:06d}``. The per-dimension ``names`` of each feature are kept in
  ``source["names"]`` and given to the manifest's semantics by :meth:`field_names`.
"""

from __future__ import annotations

import fnmatch
import functools
import math
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from .. import fs
from ..errors import SourceError, TrajcorpusError, one_line
from ..schemas.episode import Episode, Rejected
from .base import Source, SourceOptions, Unit
from .imagecodec import decode_image
from .lerobot_meta import (
    EPISODES_DIR,
    RESERVED,
    Info,
    Place,
    episode_places_v21,
    episode_places_v30,
    flat_names,
    load_info,
    load_tasks,
)
from .metadata import Name, flag_array
from .video import OpenVideos

__all__ = ["LeRobotSource", "LeRobotOptions"]

_BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")


class LeRobotOptions(SourceOptions):
    repo_id: Name | None = None  # names the task; default: the dataset folder's name
    exclude: tuple[Name, ...] = ()  # feature keys (fnmatch patterns) not read
    tolerance_s: float | None = Field(None, gt=0)  # frame/row match; default half a frame period
    decoder_threads: bool = False  # FFmpeg's own threads in the video decoder (same pixels)


class LeRobotSource(Source):
    """Reads a LeRobot dataset root (local, gs://, hf://datasets/owner/name)."""

    kind = "lerobot"
    description = ("LeRobot dataset (v2.1 or v3.0): Parquet rows of robot state and actions, "
                   "camera streams as MP4 video (AV1/H.264/HEVC) or PNG images, task strings")
    task_categories = ("robotics", "reinforcement-learning")
    tags = ("robotics", "lerobot", "imitation-learning")
    carries_text = True
    Options = LeRobotOptions

    # -- dataset-wide facts (read once per worker) ---------------------------------------------
    @functools.cached_property
    def info(self) -> Info:
        return load_info(self.uri)

    @functools.cached_property
    def tasks(self) -> dict[int, str]:
        return load_tasks(self.uri, self.info)

    @functools.cached_property
    def features(self) -> dict[str, str]:
        """Feature key -> role (image, continuous, discrete), reserved and excluded left out."""
        out = {}
        for key, f in self.info.features.items():
            if key in RESERVED or any(fnmatch.fnmatchcase(key, p) for p in self.opts.exclude):
                continue
            if f.dtype in ("video", "image"):
                out[key] = "image"
            elif f.dtype.startswith("float"):
                out[key] = "continuous"
            elif f.dtype == "bool" or f.dtype.startswith(("int", "uint")):
                out[key] = "discrete"
            else:
                raise SourceError(fs.join(self.uri, "meta", "info.json"), f"feature dtype "
                                  f"{f.dtype!r} is not supported (use option exclude)",
                                  key=f"features.{key}.dtype")
        return out

    @property
    def repo_id(self) -> str:
        if self.opts.repo_id:
            return self.opts.repo_id
        path = self.uri.rstrip("/")
        if path.startswith("hf://datasets/"):  # OWNER/NAME[@REVISION][/FOLDER]
            return path.removeprefix("hf://datasets/").split("@")[0]
        return path.split("://", 1)[-1].rsplit("/", 1)[-1] or "lerobot"

    def rewardless(self) -> str | None:
        """Why the best-return filter cannot rank this dataset's episodes (None: it can)."""
        if "next.reward" in self.info.features:
            return None
        return (f"LeRobot dataset {self.repo_id!r} has no rewards (no 'next.reward' feature "
                "in meta/info.json)")

    def field_names(self) -> dict[str, list[str]]:
        """Episode field -> per-dimension names from info.json (for the manifest's semantics)."""
        out = {}
        for key, f in self.info.features.items():
            names = flat_names(f) if f.dtype not in ("video", "image") else None
            if names and (key == "action" or key in self.features):
                out["actions" if key == "action" else _obs_name(key)] = names
        return out

    # -- units -----------------------------------------------------------------------------
    def units(self) -> list[Unit]:
        info = self.info
        cameras = [k for k, r in self.features.items() if r == "image"]
        if info.codebase_version == "v3.0":
            folder = fs.join(self.uri, EPISODES_DIR)
            files = sorted(u for u in (fs.walk_files(folder) if fs.exists(folder) else [])
                           if u.endswith(".parquet"))
            if not files:
                raise SourceError(folder, "no episode metadata files (*.parquet)")
            base = len(fs.strip_scheme(self.uri).rstrip("/")) + 1
            return [Unit(key=fs.strip_scheme(u)[base:], uri=u, index=i,
                         params=(("cameras", tuple(cameras)),))
                    for i, u in enumerate(files)]
        places = episode_places_v21(self.uri, info, cameras)
        if not places:
            raise SourceError(fs.join(self.uri, "meta", "episodes.jsonl"), "no episodes")
        return [Unit(key=p.data_file, uri=fs.join(self.uri, p.data_file), index=i,
                     params=(("place", p),)) for i, p in enumerate(places)]

    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        if unit.param("place") is not None:
            places = [unit.param("place")]
        else:
            places = episode_places_v30(self.uri, unit.uri, self.info,
                                        list(unit.param("cameras", ())))
        data, videos = _DataFiles(self.uri), OpenVideos(self.opts.decoder_threads)
        try:
            for place in places:
                try:
                    episode = self._episode(place, data, videos)
                except TrajcorpusError as e:
                    # the task it would have had (its metadata's first task for {instruction})
                    yield self.reject(e.where, e.reason, task=self.task_name(
                        **self._fields(place, place.tasks[0] if place.tasks else "")))
                    continue
                yield self.checked(episode, f"{fs.join(self.uri, place.data_file)} "
                                   f"[episode {place.episode_index}]")
                del episode  # memory: one episode at a time, not this one and the next
        finally:
            data.close()
            videos.close()

    # -- one episode -----------------------------------------------------------------------
    def _episode(self, place: Place, data: _DataFiles, videos: OpenVideos) -> Episode:
        uri = fs.join(self.uri, place.data_file)
        wanted = [k for k, r in self.features.items() if self.info.features[k].dtype != "video"]
        columns = [c for c in (*_BOOKKEEPING, "action", "next.reward", "next.done", *wanted)
                   if c in self.info.features or c in _BOOKKEEPING]
        rows = data.episode_rows(place.data_file, place.episode_index, columns)
        n = rows.num_rows
        key = f"episode {place.episode_index}"
        if n != place.length:
            raise SourceError(uri, f"{n} rows but the episode metadata says length "
                              f"{place.length}", key=key)
        frame = _column(rows, "frame_index", uri, key).astype(np.int64)
        if not np.array_equal(frame, np.arange(n)):
            raise SourceError(uri, "frame_index is not 0..length-1 in row order", key=key)
        stamps = _column(rows, "timestamp", uri, key).astype(np.float64)
        observations, kinds, names = {}, {}, {}
        for k, role in self.features.items():
            name = _obs_name(k)
            f = self.info.features[k]
            if f.dtype == "video":
                observations[name] = self._video(place, k, stamps, key, videos)
            elif f.dtype == "image":
                observations[name] = _images(rows, k, uri, key)
            else:
                observations[name] = _vector(rows, k, f.shape, uri, key, role)
            kinds[name] = role
            if role != "image" and flat_names(f):
                names[name] = flat_names(f)
        instruction = self._instruction(rows, uri, key)
        if instruction is not None:
            observations["instruction"], kinds["instruction"] = instruction, "text"
        if "action" in self.info.features:
            role = "continuous" if self.info.features["action"].dtype.startswith("float") \
                else "discrete"
            actions = _vector(rows, "action", self.info.features["action"].shape, uri, key, role)
            actions = actions.reshape(n, -1)
            if flat_names(self.info.features["action"]):
                names["actions"] = flat_names(self.info.features["action"])
        else:
            role, actions = "none", np.zeros((n, 0), np.float32)
        if "next.reward" in self.info.features:
            raw = _column(rows, "next.reward", uri, key).reshape(n, -1)[:, 0].astype(np.float64)
            rewards, reward_src = raw.astype(np.float32), "next.reward"
        else:
            raw, rewards, reward_src = np.zeros(n), np.zeros(n, np.float32), "absent"
        done = False
        if "next.done" in self.info.features:
            flags = flag_array(_column(rows, "next.done", uri, key).reshape(n, -1)[:, 0], uri,
                               key="next.done", unit="row")
            done = bool(flags[-1])
        fields = self._fields(place, "" if instruction is None else str(instruction[0]))
        return Episode(
            dataset=self.dataset, task=self.task_name(**fields),
            agent=self.agent_name(**fields),
            episode_id=f"episode_{place.episode_index:06d}", order=(place.episode_index,),
            observations=observations, observation_kinds=kinds, actions=actions,
            action_kind=role, rewards=rewards, is_terminal=done, is_truncated=not done,
            return_=float(raw.sum()),
            source={"uri": uri, "episode_index": place.episode_index,
                    "codebase_version": self.info.codebase_version,
                    "videos": {k: fs.join(self.uri, p) for k, p, _, _ in place.videos},
                    "rewards": reward_src, "names": names})

    def _fields(self, place: Place, instruction: str) -> dict[str, object]:
        """The naming template's fields for one episode."""
        return {"task": self.repo_id, "agent": self.info.robot_type or self.repo_id,
                "repo_id": self.repo_id, "robot_type": self.info.robot_type or "",
                "instruction": instruction, "episode_index": place.episode_index}

    def _instruction(self, rows: pa.Table, uri: str, key: str) -> np.ndarray | None:
        index = _column(rows, "task_index", uri, key).astype(np.int64)
        unknown = sorted(set(np.unique(index).tolist()) - set(self.tasks))
        if unknown:
            raise SourceError(uri, f"task_index {unknown[0]} is not in the tasks table", key=key)
        if (index == index[0]).all():
            return np.array([self.tasks[int(index[0])]], dtype=object)
        return np.array([self.tasks[int(i)] for i in index], dtype=object)

    def _video(self, place: Place, camera: str, stamps: np.ndarray, key: str,
               videos: OpenVideos) -> np.ndarray:
        entry = next(v for v in place.videos if v[0] == camera)
        _, path, start, end = entry
        tolerance = self.opts.tolerance_s or 0.5 / self.info.fps
        frames, presented = videos.open(fs.join(self.uri, path), camera).frames_at(
            start + stamps, tolerance, span=(start, end), key=f"{camera}, {key}",
            arena=videos.arena(camera))
        if presented != stamps.size:
            where = f"[{start:.4f}s, {end:.4f}s)" if end is not None else "the file"
            raise SourceError(fs.join(self.uri, path), f"{presented} frames in {where} but "
                              f"the episode has {stamps.size} rows", key=f"{camera}, {key}")
        return frames


def _obs_name(key: str) -> str:
    return key.removeprefix("observation.") or key


def _column(rows: pa.Table, name: str, uri: str, key: str) -> np.ndarray:
    col = rows.column(name)
    if col.null_count:
        raise SourceError(uri, f"null value in column {name!r}", key=key)
    t = col.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        flat = pa.concat_arrays([c.flatten() for c in col.chunks]) if col.num_chunks else []
        values = np.asarray(flat)
        if values.size % max(rows.num_rows, 1):
            raise SourceError(uri, f"column {name!r} has ragged lists", key=key)
        return values.reshape(rows.num_rows, -1)
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise SourceError(uri, f"column {name!r} holds {t}, not numbers", key=key)
    return col.to_numpy()


def _vector(rows: pa.Table, name: str, shape: list[int], uri: str, key: str,
            role: str) -> np.ndarray:
    x = _column(rows, name, uri, key)
    size = math.prod(shape)
    x = x.reshape(rows.num_rows, -1)
    if x.shape[1] != size:
        raise SourceError(uri, f"column {name!r} has {x.shape[1]} values per row, info.json "
                          f"declares shape {shape}", key=key)
    if role == "continuous":
        x = x.astype(np.float32 if x.dtype.itemsize <= 4 else np.float64, copy=False)
    elif x.dtype == np.bool_:
        x = x.astype(np.int64)
    return x.reshape(rows.num_rows, *shape) if len(shape) > 1 else x


def _images(rows: pa.Table, name: str, uri: str, key: str) -> np.ndarray:
    col = rows.column(name)
    if not pa.types.is_struct(col.type) or col.type.get_field_index("bytes") < 0:
        raise SourceError(uri, f"image column {name!r} is {col.type}, not struct<bytes, path>",
                          key=key)
    blobs = pa.chunked_array([c.field("bytes") for c in col.chunks], col.type.field("bytes").type
                             ).to_pylist()
    frames = []
    for i, blob in enumerate(blobs):
        if blob is None:
            raise SourceError(uri, f"row {i}: image bytes are not embedded", key=f"{name}, {key}")
        img = decode_image(blob, uri, key=f"{name}, {key}, row {i}", mode="RGB")
        if frames and img.shape != frames[0].shape:
            raise SourceError(uri, f"row {i}: image {list(img.shape)} differs from row 0's "
                              f"{list(frames[0].shape)}", key=f"{name}, {key}")
        frames.append(img)
    return np.stack(frames)


class _DataFiles:
    """The Parquet data files of one unit, one open at a time, read by row group: an episode's
    rows are the row groups whose ``episode_index`` statistics include it (all when absent)."""

    def __init__(self, root: str):
        self.root = root
        self._path: str | None = None
        self._file = None
        self._pf: pq.ParquetFile | None = None
        self._group: tuple[int, pa.Table] | None = None

    def _open(self, path: str) -> pq.ParquetFile:
        if path != self._path:
            self.close()
            uri = fs.join(self.root, path)
            try:
                self._file = fs.open_uri(uri, "rb")
                self._pf = pq.ParquetFile(self._file)
            except FileNotFoundError:
                raise SourceError(uri, "missing data file") from None
            except (OSError, pa.ArrowException) as e:
                raise SourceError(uri, f"cannot read parquet: {one_line(e)}") from None
            self._path = path
        assert self._pf is not None
        return self._pf

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._path = self._file = self._pf = self._group = None

    def episode_rows(self, path: str, episode: int, columns: list[str]) -> pa.Table:
        pf = self._open(path)
        uri = fs.join(self.root, path)
        names = pf.schema_arrow.names
        for c in columns:
            if c not in names:
                raise SourceError(uri, "missing column", key=c)
        pos = names.index("episode_index")
        parts = []
        try:
            for g in range(pf.metadata.num_row_groups):
                stats = pf.metadata.row_group(g).column(pos).statistics
                if stats is not None and stats.has_min_max and not (
                        stats.min <= episode <= stats.max):
                    continue
                if self._group is None or self._group[0] != g:
                    self._group = (g, pf.read_row_group(g, columns=columns))
                table = self._group[1]
                mask = pc.equal(table.column("episode_index"), episode)
                parts.append(table.filter(mask))
        except (OSError, pa.ArrowException) as e:
            raise SourceError(uri, f"cannot read parquet: {one_line(e)}") from None
        return pa.concat_tables(parts) if parts else pf.schema_arrow.empty_table().select(
            columns)
