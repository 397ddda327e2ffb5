"""D4RL flat HDF5 files (e.g. ``hopper-medium-replay-v2.hdf5``) -> Episode records.

Layout (D4RL ``scripts/generation/mujoco/collect_data.py``, ``offline_env.get_dataset``): flat
top-level arrays over all N steps in collection order: ``observations``, ``actions``, ``rewards``,
``terminals`` (required), ``timeouts`` (optional: older files lack it; then only terminals end
episodes), ``next_observations``, ``infos/*`` and ``metadata/*`` (datasets, not attributes). An
episode ends at every row with ``terminals | timeouts`` (the split of ``d4rl.sequence_dataset``).

Choices this reader makes:

- **Units** are runs of rows (option ``rows_per_unit``, default 100 000); an episode is emitted by
  the unit in which it *starts*, reading past the unit's end until its last row (stitching).
- **Final partial trajectory.** Released files can end mid-episode (the collector stopped at 1M
  steps) with neither flag set. By default it is yielded as a *truncated* episode
  (``is_truncated=True``, ``source["partial"]=True``): it is a genuine prefix of an episode cut by
  the collector, exactly what Minari marks as a truncation, and its (lower) return is judged by the
  return filter like any other. Option ``partial_tail: reject`` turns it into a Rejected instead.
- **Task** = option ``task`` or the file name without extension (e.g. "hopper-medium-replay-v2");
  **agent** = ``metadata/algorithm`` or the file name. Template fields: ``task``, ``agent``,
  ``file``, ``algorithm``. **Order** = (file index, first row); **episode_id** = "<file>/<first row>".
- ``observations`` -> observation "observation" (dtype as stored, float32 in the releases);
  actions float32; rewards as stored (float32), the return summed in float64 from them.
  ``next_observations`` and ``infos/*`` are not observations (D4RL's own loaders treat them alike).

Input: one ``.hdf5``/``.h5`` file, or a folder whose ``*.hdf5``/``*.h5`` files are read in name order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import h5py
import numpy as np
import pydantic

from .. import fs
from ..errors import SourceError, one_line
from ..schemas.episode import Episode, Rejected
from .base import Label, SourceOptions, Unit
from .families import MujocoLogs
from .h5file import open_h5, read_dataset
from .metadata import flag_array

__all__ = ["D4RLSource"]

_REQUIRED = ("observations", "actions", "rewards", "terminals")
_MAX_NAME_BYTES = 1 << 16  # metadata/algorithm is a name
_SCAN_ROWS = 65536  # rows read at a time when an episode runs past its unit


def _stem(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _algorithm(uri: str, f: h5py.File) -> str:
    node = f.get("metadata/algorithm")
    value: Any = (read_dataset(uri, f, "metadata/algorithm", limit=_MAX_NAME_BYTES)
                  if isinstance(node, h5py.Dataset) else f.attrs.get("algorithm"))
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return one_line(value)[:200] if value is not None else ""


def _row_count(uri: str, f: h5py.File) -> int:
    for key in ("rewards", "observations", "actions", "terminals"):
        node = f.get(key)
        if isinstance(node, h5py.Dataset) and node.shape:
            return int(node.shape[0])
    raise SourceError(uri, "not a D4RL file: no rewards/observations/actions dataset",
                      key="rewards")


def _check_layout(uri: str, f: h5py.File, n: int) -> None:
    """Every required key present, every per-step array exactly n rows long."""
    lengths = {}
    for key in _REQUIRED + ("timeouts",):
        node = f.get(key)
        if node is None:
            if key == "timeouts":
                continue
            raise SourceError(uri, "missing dataset (a D4RL file needs observations, actions, "
                              "rewards and terminals)", key=key)
        if not isinstance(node, h5py.Dataset) or not node.shape:
            raise SourceError(uri, "expected an array over steps", key=key)
        lengths[key] = int(node.shape[0])
    bad = {k: v for k, v in lengths.items() if v != n}
    if bad:
        listed = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise SourceError(uri, f"per-step arrays differ in length ({listed} rows)",
                          key="/".join(bad))
    for key in ("rewards", "terminals", "timeouts"):
        if key in lengths and len(f[key].shape) != 1:
            raise SourceError(uri, f"expected shape [N], got {list(f[key].shape)}", key=key)
    for key in lengths:
        if f[key].dtype.kind not in "biuf":
            raise SourceError(uri, f"expected numbers, got dtype {f[key].dtype}", key=key)


def _done(uri: str, f: h5py.File, lo: int, hi: int) -> np.ndarray:
    done = _flags(uri, f, "terminals", lo, hi)
    if "timeouts" in f:
        done |= _flags(uri, f, "timeouts", lo, hi)
    return done


def _flags(uri: str, f: h5py.File, key: str, lo: int, hi: int) -> np.ndarray:
    """Rows lo:hi of a flag dataset; a value other than 0/1 names its row in the file."""
    return flag_array(read_dataset(uri, f, key, np.s_[lo:hi]), uri, key=key, first=lo, unit="row")


class D4RLOptions(SourceOptions):
    rows_per_unit: int = pydantic.Field(100_000, ge=1)
    partial_tail: Literal["truncate", "reject"] = "truncate"  # a last run with no end flag
    task: Label = None  # default: the file's stem


class D4RLSource(MujocoLogs):
    """Reads D4RL flat HDF5 files; one unit = a run of rows of one file."""

    kind = "d4rl"
    description = "D4RL HDF5: flat arrays over transitions with `terminals`/`timeouts` flags"
    carries_text = False  # flat arrays of numbers only
    Options = D4RLOptions

    def _files(self) -> list[str]:
        if self.uri.endswith((".hdf5", ".h5")):
            return [self.uri]
        files = fs.glob_literal(self.uri, "*.hdf5") + fs.glob_literal(self.uri, "*.h5")
        if not files:
            raise SourceError(self.uri, "no .hdf5 file found (expected a D4RL file or a folder "
                              "of them)")
        return sorted(files)

    def units(self) -> list[Unit]:
        per_unit = self.opts.rows_per_unit
        units: list[Unit] = []
        for file_index, uri in enumerate(self._files()):
            with open_h5(uri) as f:
                n = _row_count(uri, f)
                algorithm = _algorithm(uri, f)
            stem = _stem(uri)
            fields = {"task": self.opts.task or stem,
                      "agent": algorithm or stem, "file": stem, "algorithm": algorithm}
            task, agent = self.task_name(**fields), self.agent_name(**fields)
            for start in range(0, n, per_unit):
                stop = min(n, start + per_unit)
                units.append(Unit(key=f"{stem}/rows {start}-{stop}", uri=uri, index=len(units),
                                  params=(("file_index", file_index), ("start", start),
                                          ("stop", stop), ("rows", n), ("name", stem),
                                          ("task", task), ("agent", agent))))
        if not units:
            raise SourceError(self.uri, "no rows to read (empty D4RL file)")
        return units

    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        uri = unit.uri
        start, stop, n = unit.param("start"), unit.param("stop"), unit.param("rows")
        with open_h5(uri) as f:
            _check_layout(uri, f, n)
            spans = self._spans(uri, f, start, stop, n)
            if not spans:
                return
            lo, hi = spans[0][0], spans[-1][1]
            data = {k: read_dataset(uri, f, k, np.s_[lo:hi]) for k in _REQUIRED}
            data["terminals"] = _flags(uri, f, "terminals", lo, hi)
            data["timeouts"] = (_flags(uri, f, "timeouts", lo, hi)
                                if "timeouts" in f else np.zeros(hi - lo, dtype=bool))
        for a, b in spans:
            yield self._episode(unit, data, lo, a, b)

    def _spans(self, uri: str, f: h5py.File, start: int, stop: int, n: int
               ) -> list[tuple[int, int]]:
        """[first row, end) of every episode that starts in [start, stop)."""
        done = _done(uri, f, start, stop)
        prev = True if start == 0 else bool(_done(uri, f, start - 1, start)[0])
        begins = start + np.flatnonzero(np.concatenate([[prev], done[:-1]]))
        ends = start + np.flatnonzero(done) + 1
        own_ends = [int(e) for e in (ends if prev else ends[1:])]
        if len(own_ends) < len(begins):  # the last episode runs past this unit: stitch
            own_ends.append(self._scan_end(uri, f, stop, n))
        return list(zip((int(b) for b in begins), own_ends, strict=True))

    @staticmethod
    def _scan_end(uri: str, f: h5py.File, pos: int, n: int) -> int:
        while pos < n:
            hi = min(n, pos + _SCAN_ROWS)
            hits = np.flatnonzero(_done(uri, f, pos, hi))
            if hits.size:
                return pos + int(hits[0]) + 1
            pos = hi
        return n

    def _episode(self, unit: Unit, data: dict[str, np.ndarray], lo: int, a: int, b: int
                 ) -> Episode | Rejected:
        uri, task = unit.uri, unit.param("task")
        location = f"{uri} @ offset {a} [rows {a}:{b}]"
        terminal = bool(data["terminals"][b - 1 - lo])
        timeout = bool(data["timeouts"][b - 1 - lo])
        partial = not (terminal or timeout)
        if partial and self.opts.partial_tail == "reject":
            return self.reject(location, f"final partial trajectory of {b - a} steps has neither "
                               "terminals nor timeouts set (option partial_tail=reject)", task=task)
        seg = slice(a - lo, b - lo)
        obs = data["observations"][seg]
        if obs.ndim != 2:
            obs = obs.reshape(obs.shape[0], -1)
        actions = data["actions"][seg]
        if actions.dtype.kind == "f":
            action_kind, actions = "continuous", actions.astype(np.float32)
        else:
            action_kind = "discrete"
        rewards = data["rewards"][seg]
        if rewards.dtype.kind not in "fiub":
            return self.reject(location, f"rewards must be numeric, got {rewards.dtype}", task=task)
        episode = Episode(
            dataset=self.dataset, task=task, agent=unit.param("agent"),
            episode_id=f"{unit.param('name')}/{a}", order=(unit.param("file_index"), a),
            observations={"observation": obs},
            observation_kinds={"observation": "continuous" if obs.dtype.kind == "f"
                               else "discrete"},
            actions=actions, action_kind=action_kind, rewards=rewards.astype(np.float32),
            is_terminal=terminal, is_truncated=timeout or partial,
            return_=float(np.sum(rewards, dtype=np.float64)),
            source={"uri": uri, "rows": [a, b], "partial": partial})
        return self.checked(episode, location)
