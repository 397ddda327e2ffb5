"""The canonical Episode record (SPEC section 2): one shape for every source kind.

Readers build these; the filter, tokenizer and sequence builder consume them. ``validate`` is the
single gate that turns an inconsistent record into an :class:`EpisodeError` naming the field.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from ..errors import EpisodeError

__all__ = [
    "ObsKind",
    "ActionKind",
    "OBS_KINDS",
    "ACTION_KINDS",
    "Episode",
    "Rejected",
    "EpisodeSummary",
    "ordered_observation_names",
    "EPISODE_ARROW_SCHEMA",
    "episode_to_arrow",
    "episode_from_arrow",
]

ObsKind = Literal["image", "continuous", "discrete", "text"]
ActionKind = Literal["discrete", "continuous", "mixed", "none"]
OBS_KINDS: tuple[str, ...] = ("text", "image", "continuous", "discrete")
ACTION_KINDS: tuple[str, ...] = ("discrete", "continuous", "mixed", "none")
_KIND_RANK = {"text": 0, "image": 1, "continuous": 2, "discrete": 2}


def ordered_observation_names(kinds: Mapping[str, str]) -> list[str]:
    """SPEC 2.1 order within a timestep: text, then images, then tensors; names lexicographic.

    Nested structures are flattened with '/' (e.g. ``proprio/joints``), so a lexicographic sort of
    the flat names is the lexicographic order of the nested keys.
    """
    return sorted(kinds, key=lambda n: (_KIND_RANK[kinds[n]], n))


@dataclasses.dataclass
class Episode:
    """One episode (or one image-caption record, ``length == 1``) in canonical form.

    Arrays are over time on axis 0. Text observations are 1-D object arrays of ``str``: either one
    entry per step, or a single entry that holds for the whole episode (a caption, an instruction).
    ``actions`` is ``[T]`` or ``[T, A]``; image-caption records use ``action_kind="none"`` and an
    empty ``[T, 0]`` array. ``return_`` is the sum of rewards as the source stores them, computed by
    the reader in float64 before any cast.

    ``action_kind="mixed"`` (e.g. VPT: 23 buttons + a camera) is one float ``[T, A]`` array whose
    first ``discrete_action_dims`` columns are discrete values (whole numbers in [0, 1024), exact in
    float32) and whose other columns are continuous; the tokenizer emits them in that order.
    ``discrete_action_dims`` is 0 for every other kind.
    """

    dataset: str
    task: str
    agent: str
    episode_id: str
    order: tuple[int, ...]
    observations: dict[str, np.ndarray]
    observation_kinds: dict[str, str]
    actions: np.ndarray
    action_kind: str
    rewards: np.ndarray
    is_terminal: bool
    is_truncated: bool
    return_: float
    source: dict[str, Any]
    discrete_action_dims: int = 0

    @property
    def length(self) -> int:
        """Agent steps (the number of actions taken; 1 for an image-caption record)."""
        return int(self.rewards.shape[0])

    def observation_names(self) -> list[str]:
        return ordered_observation_names(self.observation_kinds)

    def validate(self) -> Episode:
        """Raise :class:`EpisodeError` naming the first inconsistent field; return self if fine."""
        eid = self.episode_id or "<no id>"

        def fail(field: str, reason: str) -> None:
            raise EpisodeError(eid, field, reason)

        for name in ("dataset", "task", "agent", "episode_id"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                fail(name, "must be a non-empty string")
        if not isinstance(self.order, tuple) or not all(
            isinstance(o, (int, np.integer)) for o in self.order
        ):
            fail("order", f"must be a tuple of ints, got {self.order!r}")
        rewards = self.rewards
        if not isinstance(rewards, np.ndarray) or rewards.ndim != 1:
            fail("rewards", "must be a 1-D array over time")
        if rewards.dtype != np.float32:
            fail("rewards", f"dtype must be float32, got {rewards.dtype}")
        n = rewards.shape[0]
        if n == 0:
            fail("rewards", "empty episode (0 steps)")
        if not np.isfinite(rewards).all():
            bad = int(np.flatnonzero(~np.isfinite(rewards))[0])
            fail("rewards", f"non-finite value {rewards[bad]} at step {bad}")
        if not np.isfinite(self.return_):
            fail("return", f"non-finite return {self.return_}")
        self._validate_actions(fail, n)
        if set(self.observations) != set(self.observation_kinds):
            fail("observations", "names differ from observation_kinds: "
                 f"{sorted(self.observations)} vs {sorted(self.observation_kinds)}")
        if not self.observations:
            fail("observations", "no observations")
        for name in self.observations:
            self._validate_observation(fail, name, n)
        if not isinstance(self.source, dict) or "uri" not in self.source:
            fail("source", "must be a dict with at least 'uri'")
        return self

    def _validate_actions(self, fail, n: int) -> None:
        a = self.actions
        if self.action_kind not in ACTION_KINDS:
            fail("action_kind", f"must be one of {ACTION_KINDS}, got {self.action_kind!r}")
        if not isinstance(a, np.ndarray) or a.ndim not in (1, 2):
            fail("actions", "must be a [T] or [T, A] array")
        if a.shape[0] != n:
            fail("actions", f"has {a.shape[0]} steps but rewards has {n}")
        if self.action_kind == "none":
            if a.size:
                fail("actions", "action_kind 'none' needs an empty [T, 0] array")
            return
        if self.action_kind == "mixed":
            self._validate_mixed(fail, a)
            return
        if self.discrete_action_dims:
            fail("discrete_action_dims", f"must be 0 unless action_kind is 'mixed', got "
                 f"{self.discrete_action_dims}")
        if self.action_kind == "discrete":
            _check_discrete(fail, "actions", a)
        else:
            if a.dtype.kind != "f":
                fail("actions", f"continuous actions must be float, got {a.dtype}")
            _check_finite(fail, "actions", a)

    def _validate_mixed(self, fail, a: np.ndarray) -> None:
        d = self.discrete_action_dims
        if a.ndim != 2 or a.dtype.kind != "f":
            fail("actions", f"mixed actions must be a float [T, A] array, got {a.dtype} "
                 f"{a.shape}")
        if not isinstance(d, (int, np.integer)) or not 0 < d < a.shape[1]:
            fail("discrete_action_dims", f"must be in [1, {a.shape[1]}) for mixed actions "
                 f"(leading discrete columns, at least one continuous), got {d!r}")
        head = a[:, :d]
        whole = np.isfinite(head) & (head == np.floor(head))
        if not whole.all():
            idx = tuple(int(i) for i in np.argwhere(~whole)[0])
            fail("actions", f"discrete value {head[idx].item()!r} at index {idx} is not an "
                 "integer")
        _check_discrete(fail, "actions", head.astype(np.int64))
        _check_finite(fail, "actions", a[:, d:])

    def _validate_observation(self, fail, name: str, n: int) -> None:
        field = f"observations/{name}"
        kind = self.observation_kinds[name]
        x = self.observations[name]
        if kind not in OBS_KINDS:
            fail(field, f"unknown kind {kind!r} (known: {OBS_KINDS})")
        if not isinstance(x, np.ndarray):
            fail(field, f"must be a numpy array, got {type(x).__name__}")
        if kind == "text":
            if x.ndim != 1 or x.shape[0] not in (1, n):
                fail(field, f"text must be [1] (per episode) or [{n}] (per step), got {x.shape}")
            for i, s in enumerate(x):
                if not isinstance(s, str):
                    fail(field, f"step {i}: text must be str, got {type(s).__name__}")
            return
        # Minari stores N+1 observations; readers drop the final one so every field has N steps.
        if x.shape[0] != n:
            fail(field, f"has {x.shape[0]} steps but rewards has {n}")
        if kind == "image":
            if x.dtype != np.uint8:
                fail(field, f"images must be uint8, got {x.dtype}")
            if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
                fail(field, f"images must be [T, H, W] or [T, H, W, C] with C in 1/3/4, got {x.shape}")
            if x.shape[1] == 0 or x.shape[2] == 0:
                fail(field, f"empty image {x.shape}")
        elif kind == "discrete":
            _check_discrete(fail, field, x)
        elif kind == "continuous":
            if x.dtype.kind != "f":
                fail(field, f"continuous observations must be float, got {x.dtype}")
            _check_finite(fail, field, x)

    def step_shapes(self) -> dict[str, dict[str, Any]]:
        """name -> shape and dtype of one step (what ``trajcorpus episodes --json`` prints)."""
        out = {}
        for name in self.observation_names():
            x = self.observations[name]
            shape = [] if self.observation_kinds[name] == "text" else list(x.shape[1:])
            out[name] = {"kind": self.observation_kinds[name], "shape": shape,
                         "dtype": "str" if self.observation_kinds[name] == "text" else str(x.dtype)}
        return out

    def text(self) -> str | None:
        """The episode-level text (caption or instruction), if any."""
        for name in self.observation_names():
            if self.observation_kinds[name] == "text":
                return str(self.observations[name][0])
        return None


def _check_discrete(fail, field: str, x: np.ndarray) -> None:
    # SPEC section 4: the token scheme owns the range (imported here: a module-level import
    # would cycle through tokenizers/__init__, which imports this module)
    from ..tokenizers.scheme import DISCRETE_LIMIT

    if x.dtype.kind not in "iub":
        fail(field, f"discrete values must be integers, got {x.dtype}")
    if x.size:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= DISCRETE_LIMIT:
            bad = lo if lo < 0 else hi
            fail(field, f"discrete value {bad} outside [0, {DISCRETE_LIMIT})")


def _check_finite(fail, field: str, x: np.ndarray) -> None:
    finite = np.isfinite(x)
    if not finite.all():
        idx = np.argwhere(~finite)[0]
        fail(field, f"non-finite value {x[tuple(idx)]} at index {tuple(int(i) for i in idx)}")


@dataclasses.dataclass(frozen=True)
class Rejected:
    """An input that could not become a valid Episode: quarantined by the job, never dropped."""

    dataset: str
    location: str  # file/URI, offset or key: where a user finds it
    reason: str
    # "episode", "unit" (a whole file/checkpoint) or "missing" (a failure the producer recorded,
    # e.g. an img2dataset download that returned 404: listed in the audit, not bad input)
    kind: str = "episode"
    task: str = ""  # the task it would have belonged to, when the reader knows it

    @property
    def message(self) -> str:
        """``location: reason``, the one-line form a user reads."""
        return f"{self.location}: {self.reason}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclasses.dataclass(frozen=True)
class EpisodeSummary:
    """The small per-episode fact the filter groups by task (never whole episodes), the prompt
    candidates are drawn from and the audit lists (``schemas.records.episode_row``)."""

    dataset: str
    task: str
    agent: str
    episode_id: str
    order: tuple[int, ...]
    return_: float
    length: int
    vl: bool = False  # an image-caption record (never filtered by return, never prompted)


# Arrow form of an Episode, for storing or exchanging records column-wise. Arrays are kept as raw
# bytes with dtype and shape beside them, so every kind round-trips exactly.
_ARRAY = pa.struct([("dtype", pa.string()), ("shape", pa.list_(pa.int64())), ("data", pa.binary())])
EPISODE_ARROW_SCHEMA = pa.schema([
    ("dataset", pa.string()),
    ("task", pa.string()),
    ("agent", pa.string()),
    ("episode_id", pa.string()),
    ("order", pa.list_(pa.int64())),
    ("observations", pa.map_(pa.string(), _ARRAY)),
    ("observation_kinds", pa.map_(pa.string(), pa.string())),
    ("text", pa.map_(pa.string(), pa.list_(pa.string()))),
    ("actions", _ARRAY),
    ("action_kind", pa.string()),
    ("discrete_action_dims", pa.int64()),
    ("rewards", _ARRAY),
    ("is_terminal", pa.bool_()),
    ("is_truncated", pa.bool_()),
    ("return", pa.float64()),
    ("length", pa.int64()),
    ("source", pa.string()),
])


def _arr(x: np.ndarray) -> dict[str, Any]:
    x = np.ascontiguousarray(x)
    return {"dtype": x.dtype.str, "shape": list(x.shape), "data": x.tobytes()}


def _unarr(d: Mapping[str, Any]) -> np.ndarray:
    return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def episode_to_arrow(episodes: list[Episode]) -> pa.Table:
    rows = []
    for e in episodes:
        kinds = e.observation_kinds
        rows.append({
            "dataset": e.dataset, "task": e.task, "agent": e.agent, "episode_id": e.episode_id,
            "order": list(e.order),
            "observations": [(k, _arr(v)) for k, v in e.observations.items() if kinds[k] != "text"],
            "observation_kinds": list(kinds.items()),
            "text": [(k, [str(s) for s in v]) for k, v in e.observations.items()
                     if kinds[k] == "text"],
            "actions": _arr(e.actions), "action_kind": e.action_kind,
            "discrete_action_dims": int(e.discrete_action_dims), "rewards": _arr(e.rewards),
            "is_terminal": bool(e.is_terminal), "is_truncated": bool(e.is_truncated),
            "return": float(e.return_), "length": e.length,
            "source": json.dumps(e.source, sort_keys=True),
        })
    return pa.Table.from_pylist(rows, schema=EPISODE_ARROW_SCHEMA)


def episode_from_arrow(table: pa.Table) -> list[Episode]:
    out = []
    for r in table.to_pylist():
        obs = {k: _unarr(v) for k, v in r["observations"]}
        obs.update({k: np.array(v, dtype=object) for k, v in r["text"]})
        out.append(Episode(
            dataset=r["dataset"], task=r["task"], agent=r["agent"], episode_id=r["episode_id"],
            order=tuple(r["order"]), observations=obs, observation_kinds=dict(r["observation_kinds"]),
            actions=_unarr(r["actions"]), action_kind=r["action_kind"], rewards=_unarr(r["rewards"]),
            is_terminal=r["is_terminal"], is_truncated=r["is_truncated"], return_=r["return"],
            source=json.loads(r["source"]), discrete_action_dims=r["discrete_action_dims"],
        ))
    return out
