"""RLDS datasets as TFDS writes them (Open X-Embodiment, envlogger), read without TensorFlow.

A dataset folder holds ``dataset_info.json`` (name, splits, shard lengths, file name template),
``features.json`` (the feature tree) and shards ``{name}-{split}.tfrecord-{i:05d}[-of-{n:05d}]``.
One record is one episode: a ``tf.train.Example`` whose keys are the feature paths joined by ``/``
(``steps/observation/image``, ``steps/action``, ``episode_metadata/...``); a key under ``steps``
holds the values of all N steps concatenated. features.json drives the decoding: encoded images
(through :func:`~trajcorpus.sources.imagecodec.decode_image`), tensors with their dtype and shape
(float64 with ``encoding: none`` is stored as float32; ``zlib``/``bytes`` tensors are raw
little-endian blobs), bools stored as int64, text as UTF-8.

Mapping to :class:`~trajcorpus.schemas.Episode`:

* **steps.** RLDS stores T+1 steps: the last (``is_last``) holds the final observation and padding
  (zero) action and reward. With ``final_step: auto`` (default) that step is dropped when it is
  ``is_last`` and its action and reward are all zero, so the episode has T agent steps; datasets
  converted without padding (a real last action) keep all steps. ``drop``/``keep`` force either.
  ``return`` is the float64 sum of the kept rewards as stored; ``is_terminal`` is the last stored
  step's ``is_terminal``, ``is_truncated`` its negation.
* **observations.** Each leaf under ``steps/observation`` is one observation named by its path
  below it (nesting flattened with ``/``): images -> ``image``, float tensors -> ``continuous``
  (declared dtype), int/bool tensors -> ``discrete``, text -> ``text``. The language instruction
  (``steps/language_instruction``, else ``episode_metadata/language_instruction``) becomes the text
  observation ``instruction``: length 1 when constant over the episode, else one per step; an
  all-empty instruction is dropped. Keys matching ``exclude`` (default ``*language_embedding*``:
  a 512-float sentence embedding that duplicates the instruction) are checked but not decoded.
* **actions.** ``steps/action`` or the leaves under it (sorted, each flattened per step and
  concatenated): all-integer -> ``discrete``, otherwise ``continuous``.
* **names.** task = dataset name (dataset_info.json); agent = ``episode_metadata/agent_id`` (or
  ``agent``) when present, else the dataset name: envlogger/OXE datasets come from one collection
  setup, so every episode of the dataset is a valid prompt for another. Template fields: ``task``,
  ``agent``, ``dataset_name``, ``version``, ``split`` and every scalar episode-metadata leaf by its
  last name (e.g. ``{task_name}``).
* **identity.** order = (shard index, record index) (prefixed by the split's position when several
  splits are read); episode_id = ``"{shard file name}:{record index}"``, or with option
  ``episode_id_key`` (e.g. ``episode_metadata/episode_id``) ``"{dataset}/{value}"``, which the user
  vouches is unique (a unit cannot check the whole dataset).

Units: one per shard file. A record whose keys or lengths disagree with features.json, or that fails
its data CRC, is one Rejected; damage that breaks the framing rejects the rest of the shard, and a
shard shorter than dataset_info.json's ``shardLengths`` is reported as a Rejected unit.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .. import fs
from ..errors import SourceError, TrajcorpusError
from ..schemas.episode import Episode, Rejected
from .base import Names, Source, SourceOptions, Unit
from .imagecaption import safe_relative_name
from .metadata import (
    flag_array,
    load_json,
)
from .rlds_features import DatasetInfo, Leaf, decode_leaf, flatten_features, shard_names
from .tfrecord import DEFAULT_MAX_RECORD_BYTES, Record, iter_records, parse_example

__all__ = ["RldsSource", "Leaf", "flatten_features", "decode_leaf", "shard_names"]

DEFAULT_EXCLUDE = ("*language_embedding*",)
_STEP_FLAGS = ("steps/is_first", "steps/is_last", "steps/is_terminal")
_RESERVED = ("steps/reward", "steps/discount", *_STEP_FLAGS)
_INSTRUCTION = ("steps/language_instruction", "episode_metadata/language_instruction")
_AGENT_KEYS = ("episode_metadata/agent_id", "episode_metadata/agent")
_METADATA_VALUES = 64  # array-valued episode metadata up to this size is kept in the lineage


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What units and records need from the dataset folder."""

    name: str
    version: str
    leaves: dict[str, Leaf]
    splits: tuple[tuple[str, tuple[str, ...], tuple[int | None, ...]], ...]


class RldsOptions(SourceOptions):
    split: Names = None  # default: "train" when the dataset has it, else every split
    final_step: Literal["auto", "drop", "keep"] = "auto"
    exclude: Names = DEFAULT_EXCLUDE  # feature keys (fnmatch patterns) not read
    episode_id_key: str | None = None
    compression: str = "auto"
    max_record_bytes: int = Field(DEFAULT_MAX_RECORD_BYTES, ge=1)


class RldsSource(Source):
    """A TFDS/RLDS dataset folder (the one holding dataset_info.json and features.json)."""

    kind = "rlds"
    description = "RLDS (TFDS layout): TFRecord files of serialized episodes with nested steps"
    task_categories = ("robotics", "reinforcement-learning")
    tags = ("robotics", "rlds", "offline-rl")
    Options = RldsOptions

    # -- dataset folder -------------------------------------------------------------------------
    def _json(self, name: str, what: str, model: Any) -> Any:
        uri = fs.join(self.uri, name)
        if not fs.exists(uri):
            raise SourceError(uri, f"missing {name}: an RLDS/TFDS dataset folder needs {what} "
                              "(point the input at the version folder, e.g. .../name/1.0.0)")
        return load_json(uri, model, what=name)

    @functools.cached_property
    def spec(self) -> _Spec:
        info: DatasetInfo = self._json("dataset_info.json", "dataset_info.json (name, splits, "
                                       "shards)", DatasetInfo)
        features = self._json("features.json", "features.json (the feature tree that says how "
                                               "to decode each key)", dict[str, Any])
        where = fs.join(self.uri, "features.json")
        leaves = flatten_features(features, where)
        for key in ("steps/reward",):
            if key not in leaves:
                raise SourceError(where, "RLDS episodes need this step feature", key=key)
        if not any(k == "steps/observation" or k.startswith("steps/observation/")
                   for k in leaves):
            raise SourceError(where, "RLDS episodes need step observations",
                              key="steps/observation")
        for key, leaf in leaves.items():
            if key.startswith("steps/") and not leaf.in_sequence:
                raise SourceError(where, "a step feature must be inside the steps sequence "
                                  "(one value per step)", key=key)
        name = info.name or _basename(self.uri)
        info_uri = fs.join(self.uri, "dataset_info.json")
        all_splits = info.splits
        wanted = self.opts.split
        if wanted is None:
            names = [s.name for s in all_splits]
            wanted = ("train",) if "train" in names else tuple(names)
        splits = []
        for w in wanted:
            split = next((s for s in all_splits if s.name == w), None)
            if split is None:
                raise SourceError(info_uri, f"no split {w!r} "
                                  f"(has: {[s.name for s in all_splits]})", key="split")
            lengths = tuple(int(n) for n in split.shardLengths)
            names = shard_names(info, split)
            bad = next((n for n in names if not safe_relative_name(n) or "/" in n), None)
            if bad is not None:
                raise SourceError(info_uri, f"shard file name {bad!r} from filepathTemplate is "
                                  "not a plain file name", key="splits.filepathTemplate")
            splits.append((w, tuple(names), lengths))
        return _Spec(name, info.version or "", leaves, tuple(splits))

    def units(self) -> list[Unit]:
        spec = self.spec
        units = []
        for split_pos, (split, names, lengths) in enumerate(spec.splits):
            for shard, name in enumerate(names):
                if shard < len(lengths) and lengths[shard] == 0:
                    continue  # declared empty: TFDS wrote an empty file, nothing to read
                params = (("split", split), ("split_position", split_pos), ("shard", shard),
                          ("records", lengths[shard] if shard < len(lengths) else None),
                          ("task", self._task(spec, split)))
                units.append(Unit(f"{split}/{name}", fs.join(self.uri, name), len(units), params))
        if not units:
            raise SourceError(fs.join(self.uri, "dataset_info.json"), "no shards listed "
                              "(splits[].shardLengths is empty)")
        return units

    def _task(self, spec: _Spec, split: str) -> str:
        return self.task_name(task=spec.name, dataset_name=spec.name, version=spec.version,
                              split=split, agent=spec.name)

    # -- records --------------------------------------------------------------------------------
    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        task = unit.param("task")
        read = 0
        records = iter_records(unit.uri, compression=self.opts.compression,
                               max_record_bytes=self.opts.max_record_bytes, recover=True)
        while True:
            try:
                rec = next(records, None)
            except SourceError as e:
                yield self.reject(unit.uri, f"{e} (framing lost: the rest of the shard after "
                                  f"{read} records is unreadable)" if read else str(e),
                                  kind="unit", task=task)
                return
            if rec is None:
                break
            read += 1
            location = f"{unit.uri} @ offset {rec.offset} (record {rec.index})"
            if rec.error is not None:
                yield self.reject(location, str(rec.error), task=task)
                continue
            try:
                episode = self._episode(rec, unit)
            except TrajcorpusError as e:
                yield self.reject(location, str(e), task=task)
                continue
            yield self.checked(episode, location)
        declared = unit.param("records")
        if declared is not None and read < declared:
            yield self.reject(unit.uri, f"shard ends after {read} records but dataset_info.json "
                              f"declares {declared}: file truncated at a record boundary?",
                              kind="unit", task=task)

    def _episode(self, rec: Record, unit: Unit) -> Episode:
        spec = self.spec
        uri, offset = unit.uri, rec.offset
        ex = parse_example(rec.data, uri=uri, offset=offset)
        _check_keys(ex, spec.leaves, uri, offset)
        steps = _count_steps(ex, spec.leaves, uri, offset)
        if steps == 0:
            raise SourceError(uri, "episode has no steps", offset=offset, key="steps")
        wanted = {k: leaf for k, leaf in spec.leaves.items() if not self._excluded(k)}
        values = {k: decode_leaf(leaf, ex[k], steps, uri, offset, self.opts.max_record_bytes)
                  for k, leaf in wanted.items()}

        def fail(key: str, reason: str) -> SourceError:
            return SourceError(uri, reason, offset=offset, key=key)

        rewards_all = np.asarray(values["steps/reward"], dtype=np.float64)
        if rewards_all.ndim != 1:
            if rewards_all[0].size != 1:
                raise fail("steps/reward", f"reward per step must be a scalar, got shape "
                                           f"{list(rewards_all.shape[1:])}")
            rewards_all = rewards_all.reshape(-1)
        actions_all, action_kind, action_keys = _actions(values, uri, offset)
        flags = {k: flag_array(values[k], uri, key=k, offset=offset).reshape(-1)
                 for k in _STEP_FLAGS if k in values}
        _check_step_flags(flags, fail)
        n = self._agent_steps(steps, rewards_all, actions_all, flags)
        if n < 1:
            raise fail("steps/is_first", f"episode has {steps} stored step(s) and no agent step")
        observations, kinds, ignored = _observations(values, spec.leaves, n)
        metadata = {k: _plain(v) for k, v in values.items()
                    if not spec.leaves[k].in_sequence and _plain(v) is not None}
        rewards = rewards_all[:n]
        fields = self._fields(spec, unit, metadata)
        terminal = bool(flags["steps/is_terminal"][-1]) if "steps/is_terminal" in flags else False
        name = unit.uri.rsplit("/", 1)[-1]
        episode_id = f"{name}:{rec.index}"
        if self.opts.episode_id_key:
            if self.opts.episode_id_key not in metadata:
                raise fail(self.opts.episode_id_key, "option episode_id_key names no scalar "
                                                "episode-metadata feature")
            episode_id = f"{spec.name}/{metadata[self.opts.episode_id_key]}"
        order = (unit.param("shard"), rec.index)
        if len(spec.splits) > 1:
            order = (unit.param("split_position"), *order)
        return Episode(
            dataset=self.dataset, task=self.task_name(**fields), agent=self.agent_name(**fields),
            episode_id=episode_id, order=order, observations=observations,
            observation_kinds=kinds,
            actions=actions_all[:n] if actions_all is not None else np.zeros((n, 0), np.float32),
            action_kind=action_kind, rewards=rewards.astype(np.float32),
            is_terminal=terminal, is_truncated=not terminal,
            return_=float(rewards.sum()),
            source={"uri": uri, "record": rec.index, "offset": offset,
                    "split": unit.param("split"), "shard": unit.param("shard"),
                    "stored_steps": steps, "final_step": "dropped" if n < steps else "kept",
                    "action_keys": action_keys, "metadata": metadata,
                    **({"ignored_keys": ignored} if ignored else {})},
        )

    def _excluded(self, key: str) -> bool:
        """``exclude`` patterns never drop what an episode needs (reward, flags, actions)."""
        if key in _RESERVED or key == "steps/action" or key.startswith("steps/action/"):
            return False
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in (self.opts.exclude or ()))

    def _agent_steps(self, steps: int, rewards: np.ndarray, actions: np.ndarray | None,
                     flags: Mapping[str, np.ndarray]) -> int:
        if self.opts.final_step == "keep" or steps == 0:
            return steps
        if self.opts.final_step == "drop":
            return steps - 1
        is_last = bool(flags["steps/is_last"][-1]) if "steps/is_last" in flags else True
        padding = rewards[-1] == 0 and (actions is None or not np.any(actions[-1]))
        return steps - 1 if is_last and padding else steps

    def _fields(self, spec: _Spec, unit: Unit, metadata: Mapping[str, Any]) -> dict[str, Any]:
        fields = {k.rsplit("/", 1)[-1]: v for k, v in metadata.items()
                  if not isinstance(v, list)}
        agent = next((str(metadata[k]) for k in _AGENT_KEYS if k in metadata), spec.name)
        fields.update(task=spec.name, agent=agent, dataset_name=spec.name, version=spec.version,
                      split=unit.param("split"))
        return fields


def _basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _check_keys(ex: Mapping[str, Any], leaves: Mapping[str, Leaf], uri: str, offset: int) -> None:
    unknown = sorted(set(ex) - set(leaves))
    if unknown:
        raise SourceError(uri, "feature not declared in features.json"
                          + (f" (and {len(unknown) - 1} more: {unknown[1:]})"
                             if len(unknown) > 1 else ""), offset=offset, key=unknown[0])
    missing = sorted(set(leaves) - set(ex))
    if missing:
        raise SourceError(uri, "declared in features.json but missing from the record"
                          + (f" (and {len(missing) - 1} more: {missing[1:]})"
                             if len(missing) > 1 else ""), offset=offset, key=missing[0])


def _count_steps(ex: Mapping[str, Any], leaves: Mapping[str, Leaf], uri: str,
                 offset: int) -> int:
    """N, the stored steps: from ``steps/is_first`` (else ``steps/reward``), as RLDS defines it."""
    ref = next(k for k in ("steps/is_first", "steps/reward") if k in leaves)
    raw = ex[ref]
    per = leaves[ref].size or 1
    if not isinstance(raw, list) and raw.size % per:
        raise SourceError(uri, f"{raw.size} values are not a whole number of steps of {per}",
                          offset=offset, key=ref)
    return len(raw) if isinstance(raw, list) else raw.size // per


def _actions(values: Mapping[str, Any], uri: str,
             offset: int) -> tuple[np.ndarray | None, str, list[str]]:
    keys = sorted(k for k in values if k == "steps/action" or k.startswith("steps/action/"))
    if not keys:
        return None, "none", []
    parts = [np.asarray(values[k]) for k in keys]
    if any(p.dtype == object or p.dtype.kind in "US" for p in parts):
        bad = next(k for k, p in zip(keys, parts, strict=True)
                   if p.dtype == object or p.dtype.kind in "US")
        raise SourceError(uri, "text actions are not supported", offset=offset, key=bad)
    if all(p.dtype.kind in "biu" for p in parts):
        if len(parts) == 1 and parts[0].ndim == 1:
            return parts[0].astype(np.int64), "discrete", keys
        flat = [p.reshape(p.shape[0], -1).astype(np.int64) for p in parts]
        return np.concatenate(flat, axis=1), "discrete", keys
    flat = [p.reshape(p.shape[0], -1) for p in parts]
    dtype = np.result_type(*[p.dtype for p in flat if p.dtype.kind == "f"])
    return np.concatenate([p.astype(dtype) for p in flat], axis=1), "continuous", keys


def _observations(values: Mapping[str, Any], leaves: Mapping[str, Leaf], n: int
                  ) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    """Observation arrays cut to the ``n`` agent steps, their kinds, and step keys left unused."""
    obs: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    ignored = []
    prefix = "steps/observation/"
    for key, v in values.items():
        if key == "steps/observation" or key.startswith(prefix):
            name = key[len(prefix):] if key.startswith(prefix) else "observation"
        else:
            if (key.startswith("steps/") and key not in _RESERVED and key not in _INSTRUCTION
                    and key != "steps/action" and not key.startswith("steps/action/")):
                ignored.append(key)
            continue
        if isinstance(v, list):
            text = _text(v[:n])
            if text is not None:
                obs[name], kinds[name] = text, "text"
            continue
        arr = v[:n]
        if leaves[key].kind == "image":
            kinds[name] = "image"
        elif arr.dtype.kind in "fc":
            kinds[name] = "continuous"
        elif arr.dtype.kind == "b":
            arr, kinds[name] = arr.astype(np.uint8), "discrete"
        else:
            kinds[name] = "discrete"
        obs[name] = arr
    for key in _INSTRUCTION:
        v = values.get(key)
        text = None
        if isinstance(v, list):
            text = _text(v[:n])
        elif isinstance(v, str):
            text = _text([v])
        if text is not None:
            obs["instruction"], kinds["instruction"] = text, "text"
            break
    return obs, kinds, ignored


def _text(strings: list[str]) -> np.ndarray | None:
    """Per-episode text ([1]) when constant, per-step text otherwise; None when all empty."""
    if not strings or all(s == "" for s in strings):
        return None
    if all(s == strings[0] for s in strings):
        return np.array([strings[0]], dtype=object)
    return np.array(strings, dtype=object)


def _plain(v: Any) -> Any:
    """Episode metadata as JSON-able values for the lineage (None: too big to copy there)."""
    if isinstance(v, str):
        return v
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return v.item()
        if v.size <= _METADATA_VALUES and v.dtype.kind in "biuf":
            return v.tolist()
    return None


def _check_step_flags(flags: Mapping[str, np.ndarray], fail: Any) -> None:
    """RLDS marks exactly the first stored step ``is_first`` and no step before the last
    ``is_last``: anything else means one record holds pieces of several episodes (or none)."""
    first = flags.get("steps/is_first")
    if first is not None and first.size:
        others = np.flatnonzero(first[1:])
        if not first[0]:
            raise fail("steps/is_first", "the first stored step is not marked is_first")
        if others.size:
            raise fail("steps/is_first", f"step {int(others[0]) + 1} is marked is_first: a new "
                                         "episode starts inside this record")
    last = flags.get("steps/is_last")
    if last is not None and last.size:
        early = np.flatnonzero(last[:-1])
        if early.size:
            raise fail("steps/is_last", f"step {int(early[0])} is marked is_last, before the "
                                        f"last stored step {last.size - 1}")
