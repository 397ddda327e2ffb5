"""Minari datasets (minari >= 0.5; HDF5 and Arrow back-ends) -> Episode records.

Input: a Minari datasets root (``<namespace...>/<name-vN>/data/`` folders below it, found by walking
at most five levels) or one dataset folder. ``data/metadata.json`` is required: it names the back-end,
the observation/action spaces and ``env_spec`` (each a JSON *string*).

- HDF5: ``data/main_data.hdf5``, one group ``episode_<id>`` per episode. h5py lists groups
  lexicographically (episode_0, episode_1, episode_10, ...); collection order is the integer id.
- Arrow: ``data/<id>/part-<k>.arrow`` IPC files holding N+1 rows; the last row of actions, rewards,
  terminations and truncations is zero padding and is dropped.

Choices this reader makes (the format leaves them open):

- **Final observation.** Minari stores N+1 observations for N steps (obs[0] is the reset
  observation, obs[N] the one after the last action). Gato tokenizes one (observation, action) pair
  per timestep, so obs[N] has nothing to pair with and is *dropped*; ``source["final_observation"]``
  names where it is stored (file, key, row) so lineage can still reach it.
- **Task** = the environment id from ``env_spec`` (e.g. "Hopper-v5"), so the simple/medium/expert
  datasets of one environment form one task, as Gato groups its data; a dataset without an env_spec
  uses its dataset id. **Agent** = the Minari dataset id (e.g. "mujoco/hopper/expert-v0").
  Template fields: ``task``, ``agent``, ``dataset_id``, ``env_id``. **Order** = (episode id,).
- **Observations** keep their stored dtype (float64 for MuJoCo; the return is summed from the stored
  float64 rewards before the float32 cast). A Box space is named "observation"; Dict and Tuple
  spaces become their keys / indices joined with "/" (e.g. "achieved_goal", "0/pos"). uint8 Box
  leaves shaped [H, W] or [H, W, C] are images, other integer leaves and Discrete are discrete, Text
  is per-step text. **Actions**: continuous Box -> float32 [T, A]; Discrete / integer Box -> int64.
  Dict/Tuple action spaces are refused with a clear error.

Options: ``episodes_per_unit`` (default 100: an HDF5 file may hold millions of steps, so it is split
into units of whole episodes), ``datasets`` (folders relative to the root, to pick some datasets
instead of discovering all).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
from pydantic import Field

from .. import fs
from ..errors import SourceError
from ..schemas.episode import Episode, Rejected
from .base import Names, SourceOptions, Unit
from .families import MujocoLogs
from .h5file import open_h5, read_dataset
from .metadata import (
    flag_array,
    load_json,
    parse_json,
    small_int,
    validate,
)
from .minari_spaces import (
    EnvSpec,
    Leaf,
    MinariMetadata,
    Space,
    _actions,
    _arrow_values,
    _Meta,
    _shape_leaf,
    leaf_kind,
    space_leaves,
)

__all__ = ["MinariSource", "Leaf", "space_leaves", "leaf_kind", "minari_references"]

_EPISODE_GROUP = re.compile(r"^episode_(\d{1,18})$")  # bounded: int() of 5,000 digits fails
_ARROW_PART = re.compile(r"^part-(\d{1,18})\.arrow$")
_MAX_DEPTH = 5
_STEP_KEYS = ("actions", "rewards", "terminations", "truncations")

class MinariOptions(SourceOptions):
    datasets: Names = None  # dataset folders under a root uri (default: every one found)
    episodes_per_unit: int = Field(100, ge=1)


class MinariSource(MujocoLogs):
    """Reads a Minari root or dataset folder; one unit = a run of whole episodes of one dataset."""

    kind = "minari"
    description = "Minari datasets: `main_data.hdf5` (one group per episode) + metadata"
    Options = MinariOptions
    selection_options = ("datasets",)

    @classmethod
    def own_references(cls, units: list[Unit]) -> dict[str, dict]:
        """Each dataset's ``ref_min_score``/``ref_max_score`` (see :func:`minari_references`)."""
        return minari_references(units)

    @classmethod
    def is_single_dataset(cls, uri: str) -> bool:
        """A dataset folder (it has data/metadata.json)."""
        return fs.exists(fs.join(uri, "data", "metadata.json"))

    def __init__(self, uri: str, **kwargs: Any):
        super().__init__(uri, **kwargs)
        self._meta_cache: dict[str, _Meta] = {}

    # -- planning ---------------------------------------------------------------------------------
    def units(self) -> list[Unit]:
        per_unit = self.opts.episodes_per_unit
        units: list[Unit] = []
        for folder in self._dataset_folders():
            meta = self._meta(folder)
            task, agent = self._names(meta)
            common = (("dataset_dir", folder), ("backend", meta.backend), ("task", task),
                      ("agent", agent))
            if meta.backend == "hdf5":
                uri = fs.join(folder, "data", "main_data.hdf5")
                ids: list[Any] = self._hdf5_ids(uri)
            else:
                uri = fs.join(folder, "data")
                ids = self._arrow_ids(uri)
            for lo in range(0, len(ids), per_unit):
                chunk = tuple(ids[lo:lo + per_unit])
                first, last = _first_id(chunk[0]), _first_id(chunk[-1])
                units.append(Unit(key=f"{meta.dataset_id}/episodes {first}-{last}", uri=uri,
                                  index=len(units), params=common + (("episodes", chunk),)))
        if not units:
            raise SourceError(self.uri, "no Minari episodes found")
        return units

    def _dataset_folders(self) -> list[str]:
        picked = self.opts.datasets
        if picked:
            return [fs.join(self.uri, p) for p in picked]
        found = _find_datasets(self.uri, _MAX_DEPTH)
        if not found:
            raise SourceError(self.uri, "no Minari dataset found (expected folders with data/ and "
                              f"data/metadata.json up to {_MAX_DEPTH} levels below)")
        return found

    def _meta(self, folder: str) -> _Meta:
        if folder in self._meta_cache:
            return self._meta_cache[folder]
        uri = fs.join(folder, "data", "metadata.json")
        if not fs.exists(uri):
            raise SourceError(uri, "missing Minari metadata file data/metadata.json (it names the "
                              "back-end and the observation/action spaces)")
        raw = load_json(uri, MinariMetadata, what="Minari metadata")
        obs_space = _json_field(raw.observation_space, "observation_space", uri)
        act_space = _json_field(raw.action_space, "action_space", uri)
        env_id = _env_id(raw.env_spec, uri)
        backend = raw.data_format or "hdf5"
        if backend not in ("hdf5", "arrow"):
            raise SourceError(uri, f"data_format {backend!r} is not supported (hdf5, arrow)",
                              key="data_format")
        try:
            leaves = tuple(space_leaves(obs_space))
            kinds = {leaf.name: leaf_kind(leaf.space, f"{uri} [observation_space]")
                     for leaf in leaves}
            if act_space.get("type") in ("Dict", "Tuple"):
                raise SourceError(uri, f"{act_space.get('type')} action spaces are not supported",
                                  key="action_space")
            leaf_kind(act_space, f"{uri} [action_space]")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SourceError(uri, f"malformed space description: {type(e).__name__}: {e}",
                              key="observation_space/action_space") from None
        dataset_id = raw.dataset_id or fs.strip_scheme(folder).rstrip("/")
        meta = _Meta(uri, dataset_id, env_id, backend, leaves, kinds, act_space)
        self._meta_cache[folder] = meta
        return meta

    def _names(self, meta: _Meta) -> tuple[str, str]:
        fields = {"task": meta.env_id or meta.dataset_id, "agent": meta.dataset_id,
                  "dataset_id": meta.dataset_id, "env_id": meta.env_id}
        return self.task_name(**fields), self.agent_name(**fields)

    @staticmethod
    def _hdf5_ids(uri: str) -> list[int]:
        with open_h5(uri) as f:
            ids = [int(m.group(1)) for m in map(_EPISODE_GROUP.match, f.keys()) if m]
        return sorted(ids)

    @staticmethod
    def _arrow_ids(data_dir: str) -> list[tuple[int, tuple[str, ...]]]:
        parts: dict[int, list[tuple[int, str]]] = {}
        for path in fs.walk_files(data_dir):
            segs = path.rstrip("/").rsplit("/", 2)[-2:]
            if len(segs) != 2 or small_int(segs[0]) is None:
                continue
            m = _ARROW_PART.match(segs[-1])
            # an episode folder with files but no part (metadata only) is kept, to be rejected
            found = parts.setdefault(int(segs[0]), [])
            if m:
                found.append((int(m.group(1)), segs[1]))
        return [(eid, tuple(name for _, name in sorted(parts[eid]))) for eid in sorted(parts)]

    # -- reading ----------------------------------------------------------------------------------
    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        meta = self._meta(unit.param("dataset_dir"))
        task, agent = unit.param("task"), unit.param("agent")
        if unit.param("backend") == "hdf5":
            with open_h5(unit.uri) as f:
                for eid in unit.param("episodes"):
                    yield self._one(meta, task, agent, eid, unit.uri, f"episode_{eid}",
                                    lambda eid=eid, f=f: self._hdf5_episode(meta, unit.uri, f, eid))
        else:
            for eid, names in unit.param("episodes"):
                folder = fs.join(unit.uri, str(eid))
                yield self._one(meta, task, agent, eid,
                                fs.join(folder, names[0]) if names else folder, "",
                                lambda eid=eid, folder=folder, names=names:
                                self._arrow_episode(meta, folder, names, eid))

    def _one(self, meta: _Meta, task: str, agent: str, eid: int, uri: str, key: str,
             load) -> Episode | Rejected:
        location = f"{uri} [{key}]" if key else uri
        try:
            obs, actions, action_kind, rewards, terms, truncs, source = load()
        except SourceError as e:
            return self.reject(str(e.where), e.reason, task=task)
        episode = Episode(
            dataset=self.dataset, task=task, agent=agent,
            episode_id=f"{meta.dataset_id}/episode_{eid}", order=(int(eid),),
            observations=obs, observation_kinds=dict(meta.kinds), actions=actions,
            action_kind=action_kind, rewards=rewards.astype(np.float32),
            is_terminal=bool(terms[-1]), is_truncated=bool(truncs[-1]),
            return_=float(np.sum(rewards, dtype=np.float64)), source=source)
        return self.checked(episode, location)

    def _hdf5_episode(self, meta: _Meta, uri: str, f: h5py.File, eid: int):
        key = f"episode_{eid}"
        group = f.get(key)
        if not isinstance(group, h5py.Group):
            raise SourceError(uri, "episode group missing", key=key)
        steps = {k: read_dataset(uri, group, k) for k in _STEP_KEYS}
        obs_node = group.get("observations")
        if obs_node is None:
            raise SourceError(uri, "missing dataset", key=f"{key}/observations")
        obs = {}
        for leaf in meta.obs_leaves:
            node, path = obs_node, f"{key}/observations"
            if leaf.h5_path and not isinstance(obs_node, h5py.Group):
                raise SourceError(uri, "expected a group for a Dict/Tuple observation space, "
                                  "found a dataset", key=path)
            for seg in leaf.h5_path[:-1]:
                node, path = node.get(seg), f"{path}/{seg}"
                if not isinstance(node, h5py.Group):
                    raise SourceError(uri, "missing group", key=path)
            if leaf.h5_path:
                raw = read_dataset(uri, node, leaf.h5_path[-1])
            elif isinstance(obs_node, h5py.Dataset):
                raw = read_dataset(uri, group, "observations")
            else:
                raise SourceError(uri, "expected a dataset for a Box/Discrete observation space, "
                                  "found a group", key=path)
            obs[leaf.name] = _shape_leaf(raw, leaf.space, uri, "/".join((path,) + leaf.h5_path))
        source = {"uri": uri, "key": key, "dataset_id": meta.dataset_id, "backend": "hdf5"}
        return self._assemble(meta, uri, key, obs, steps, source, padded=False)

    def _arrow_episode(self, meta: _Meta, folder: str, names: tuple[str, ...], eid: int):
        """One episode from its ``part-<k>.arrow`` files, which must be numbered 0, 1, ... (a
        folder with only metadata, or a gap, is an incomplete copy: never a shorter episode)."""
        numbers = [int(n[len("part-"):-len(".arrow")]) for n in names]
        if not numbers or numbers != list(range(len(numbers))):
            raise SourceError(folder, f"episode {eid}: no part-0.arrow file (an incomplete copy?)"
                              if not numbers else f"episode {eid}: parts {numbers} are not "
                              f"numbered 0..{len(numbers) - 1} (a part is missing)")
        uris = [fs.join(folder, n) for n in names]
        tables = []
        for uri in uris:
            with fs.open_uri(uri, "rb", cache_type="readahead") as f:
                data = f.read()
            try:
                tables.append(ipc.open_file(pa.BufferReader(data)).read_all())
            except (pa.ArrowException, OSError) as e:
                raise SourceError(uri, f"not an Arrow IPC file: {e}") from None
        uri = uris[0]
        try:
            table = pa.concat_tables(tables)
        except pa.ArrowException as e:
            raise SourceError(uri, f"parts of episode {eid} do not share a schema: {e}") from None
        cols = {}
        for name in ("observations",) + _STEP_KEYS:
            if name not in table.column_names:
                raise SourceError(uri, "missing column", key=name)
            cols[name] = table.column(name).combine_chunks()
        steps = {k: _arrow_values(cols[k], uri, k) for k in _STEP_KEYS}
        obs = {}
        for leaf in meta.obs_leaves:
            col, path = cols["observations"], "observations"
            for field in leaf.arrow_path:
                path = f"{path}/{field}"
                if not pa.types.is_struct(col.type) or col.type.get_field_index(field) < 0:
                    raise SourceError(uri, "missing struct field", key=path)
                if col.null_count:
                    raise SourceError(uri, f"{col.null_count} null rows", key=path)
                col = col.field(field)
            obs[leaf.name] = _shape_leaf(_arrow_values(col, uri, path), leaf.space, uri, path)
        source = {"uri": uri, "dataset_id": meta.dataset_id, "backend": "arrow",
                  "episode": int(eid)}
        if len(uris) > 1:
            source["parts"] = uris
        return self._assemble(meta, uri, "", obs, steps, source, padded=True)

    def _assemble(self, meta: _Meta, uri: str, key: str, obs: dict[str, np.ndarray],
                  steps: dict[str, np.ndarray], source: dict[str, Any], padded: bool):
        """Check Minari's N / N+1 layout, drop padding and the final observation."""
        prefix = f"{key}/" if key else ""
        rewards = steps["rewards"]
        if rewards.ndim != 1 or rewards.dtype.kind not in "fiub":
            raise SourceError(uri, f"rewards must be a 1-D numeric array, got {rewards.dtype} "
                              f"{rewards.shape}", key=f"{prefix}rewards")
        n = rewards.shape[0] - (1 if padded else 0)
        if n <= 0:
            raise SourceError(uri, "empty episode (0 steps)", key=f"{prefix}rewards")
        rows = n + (1 if padded else 0)
        for name in ("actions", "terminations", "truncations"):
            if steps[name].ndim == 0:
                raise SourceError(uri, f"expected one value per step, got a scalar "
                                  f"({steps[name].dtype})", key=f"{prefix}{name}")
            if steps[name].shape[0] != rows:
                raise SourceError(uri, f"has {steps[name].shape[0]} steps but rewards has {rows}",
                                  key=f"{prefix}{name}")
        for name, arr in obs.items():
            if arr.shape[0] != n + 1:
                raise SourceError(uri, f"has {arr.shape[0]} rows; Minari stores steps + 1 = {n + 1}"
                                  f" observations for {n} steps", key=f"{prefix}observations/{name}"
                                  if name != "observation" else f"{prefix}observations")
        actions, action_kind = _actions(steps["actions"][:n], meta.action_space, uri,
                                        f"{prefix}actions")
        flags = {k: flag_array(steps[k][:n], uri, key=f"{prefix}{k}")
                 for k in ("terminations", "truncations")}
        source.update(steps=n, final_observation={"uri": uri, "key": f"{prefix}observations",
                                                  "row": n, "kept": False})
        return ({k: v[:n] for k, v in obs.items()}, actions, action_kind, rewards[:n],
                flags["terminations"], flags["truncations"], source)


def _first_id(item: Any) -> int:
    return int(item[0] if isinstance(item, tuple) else item)


def _json_field(value: str | dict[str, Any] | None, name: str, uri: str) -> dict[str, Any]:
    """A space description (a JSON string inside metadata.json), typed and bounded."""
    if value is None:
        raise SourceError(uri, "missing field", key=name)
    parsed = (parse_json(value, uri, key=name, what="space description")
              if isinstance(value, str) else value)
    validate(parsed, Space, uri, key=name)
    return parsed


def _env_id(env_spec: str | dict[str, Any] | None, uri: str) -> str:
    """The gymnasium id inside ``env_spec`` (a JSON string, or null for datasets without an env)."""
    if not env_spec:
        return ""
    spec = (parse_json(env_spec, uri, key="env_spec", what="environment spec")
            if isinstance(env_spec, str) else env_spec)
    if spec is None:
        return ""
    return validate(spec, EnvSpec, uri, key="env_spec").id or ""


def _subdirs(uri: str) -> list[str]:
    """Names of the folders directly under ``uri`` (one listing request)."""
    try:
        entries = fs.filesystem(uri).ls(fs.strip_scheme(uri), detail=True)
    except FileNotFoundError:
        raise SourceError(uri, "not found") from None
    names = []
    for e in entries:
        if e.get("type") == "directory":
            names.append(e["name"].rstrip("/").rsplit("/", 1)[-1])
    return sorted(set(names))


def _find_datasets(uri: str, depth: int) -> list[str]:
    """Folders holding ``data/`` at most ``depth`` levels below ``uri``; never looks inside data/."""
    names = _subdirs(uri)
    if "data" in names:
        return [uri]
    if depth == 0:
        return []
    out: list[str] = []
    for name in names:
        out += _find_datasets(fs.join(uri, name), depth - 1)
    return out


def minari_references(units: Iterable[Any]) -> dict[str, dict]:
    """Task -> reference from each Minari dataset's metadata (the first dataset id of a task
    that has both ends, in id order)."""
    found: dict[str, list[tuple[str, dict]]] = {}
    pairs = {(u.param("dataset_dir"), u.param("task")) for u in units}
    for folder, task in sorted(p for p in pairs if isinstance(p[0], str) and isinstance(p[1], str)):
        uri = fs.join(folder, "data", "metadata.json")
        try:
            with fs.open_uri(uri, "rb") as f:
                meta = json.loads(f.read())
        except (OSError, ValueError):
            continue  # the reader reports an unreadable metadata file itself
        lo, hi = meta.get("ref_min_score"), meta.get("ref_max_score")
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            did = str(meta.get("dataset_id", folder))
            found.setdefault(task, []).append((did, {
                "random": float(lo), "expert": float(hi), "expert_kind": "expert",
                "source": f"Minari dataset metadata ref_min_score/ref_max_score ({did})"}))
    return {task: sorted(v, key=lambda t: t[0])[0][1] for task, v in found.items()}
