"""What a trainer reads about a config besides its shards: the raw-value statistics, reference
scores and per-dimension semantics the job wrote into the manifest, and two helpers built on them:
normalising decoded continuous values, and turning predicted action tokens into named
environment actions (docs/statistics-and-semantics.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ..errors import ShardError
from ..tokenizers.continuous import decode_continuous
from ..tokenizers.discrete import decode_discrete
from ..tokenizers.scheme import CONTINUOUS_OFFSET

__all__ = ["TrainerInfo", "DecodedActions", "load_stats", "merged_stats", "normalize",
           "unnormalize", "NORMALIZATIONS"]

Normalization = Literal["mean_std", "min_max", "quantile"]
NORMALIZATIONS: tuple[str, ...] = ("mean_std", "min_max", "quantile")
_EPS = 1e-12  # below this spread a dimension is constant: centred, never divided


@dataclasses.dataclass(frozen=True)
class DecodedActions:
    """Actions of ``steps`` timesteps: ``values`` [steps, A] in the environment's units
    (continuous) or [steps] action indices (discrete); ``names`` per dimension (continuous) or per
    step (discrete: the action's meaning, e.g. "FIRE")."""

    values: np.ndarray
    names: list[str] | None

    def as_dicts(self) -> list[dict[str, float]]:
        """Continuous actions as one {dimension name: value} per step."""
        if self.values.ndim != 2 or self.names is None:
            raise ShardError("DecodedActions", "as_dicts needs named continuous actions")
        return [dict(zip(self.names, map(float, row), strict=True)) for row in self.values]


class TrainerInfo:
    """One config's ``statistics``, ``reference`` and ``semantics`` blocks, from its manifest."""

    def __init__(self, config: str, info: Mapping[str, Any]):
        if "statistics" not in info:
            raise ShardError(f"manifest config {config!r}", "no statistics block (written by an "
                             "older trajcorpus: rerun the job)")
        self.config = config
        self.statistics: dict = info["statistics"]
        self.reference: dict = info.get("reference") or {}
        self.semantics: dict = info.get("semantics") or {}
        self.tokenize: dict = (info.get("settings") or {}).get("tokenize") or {}

    @property
    def tasks(self) -> list[str]:
        return sorted(self.statistics.get("tasks", {}))

    def field(self, name: str, task: str | None = None) -> dict:
        """The statistics of field ``name`` (an observation's name or "actions") for ``task``,
        or the config's when ``task`` is None."""
        block = self.statistics["config"] if task is None else \
            self.statistics.get("tasks", {}).get(task)
        where = f"{self.config}" + (f" task {task!r}" if task else "")
        if block is None:
            raise ShardError(where, f"no statistics for this task (tasks: {self.tasks})")
        s = block.get(name)
        if s is None:
            raise ShardError(where, f"no statistics for field {name!r} (continuous fields: "
                             f"{sorted(block)})")
        if s.get("count") is None:
            raise ShardError(where, f"field {name!r}: {s.get('note')}; pass task=")
        return s

    def names(self, task: str, name: str) -> list[str] | None:
        """Per-dimension names of a field (continuous) or the action meanings (discrete)."""
        return ((self.semantics.get(task) or {}).get(name) or {}).get("names")

    def mu_law(self, name: str) -> bool:
        """Whether the job mu-law companded this field (its tokenize settings)."""
        from ..schemas.catalog import TokenizeSettings
        from ..tokenizers import EpisodeTokenizer

        return EpisodeTokenizer(TokenizeSettings(**self.tokenize), None).mu_law_for(name)

    def decode_actions(self, tokens: Any, task: str) -> DecodedActions:
        """Action tokens of whole steps (as predicted) -> named environment actions."""
        t = np.asarray(tokens)
        sem = (self.semantics.get(task) or {}).get("actions")
        if sem is None:
            raise ShardError(f"{self.config} task {task!r}", "no action semantics (tasks: "
                             f"{sorted(self.semantics)})")
        names = sem.get("names")
        if sem["kind"] == "discrete":
            idx = decode_discrete(t.ravel(), field="actions")
            if names is None:
                return DecodedActions(idx, None)
            if idx.size and idx.max() >= len(names):
                raise ShardError(f"{self.config} task {task!r}", f"action {int(idx.max())} is "
                                 f"outside the game's {len(names)} actions")
            return DecodedActions(idx, [names[i] for i in idx])
        width = int(np.prod(sem["shape"])) if sem.get("shape") else 1
        if sem["kind"] == "mixed":  # discrete ids stay ids, continuous tokens are decoded
            if t.size % width:
                raise ShardError(f"{self.config} task {task!r}", f"expected whole steps of "
                                 f"{width} action tokens, got {t.size} tokens")
            flat = t.ravel()
            cont = flat >= CONTINUOUS_OFFSET
            values = decode_discrete(np.where(cont, 0, flat), field="actions").astype(np.float32)
            values[cont] = decode_continuous(flat[cont], self.mu_law("actions"), field="actions")
            return DecodedActions(values.reshape(-1, width), names)
        if t.size % width or (t.size and t.min() < CONTINUOUS_OFFSET):
            raise ShardError(f"{self.config} task {task!r}", f"expected whole steps of {width} "
                             f"continuous action tokens, got {t.size} tokens")
        values = decode_continuous(t.ravel(), self.mu_law("actions"), field="actions")
        return DecodedActions(values.reshape(-1, width), names)


def load_stats(out: str, config: str) -> TrainerInfo:
    """The :class:`TrainerInfo` of ``config`` in the output folder ``out``."""
    from .manifest import read_manifest

    manifest = read_manifest(out)
    if config not in manifest.configs:
        raise ShardError(f"{out} config {config!r}",
                         f"not in the manifest (configs: {sorted(manifest.configs)})")
    return TrainerInfo(config, manifest.configs[config])


def merged_stats(name: str, parts: Sequence[tuple[str, str, Mapping[str, Any]]]) -> TrainerInfo:
    """The statistics of the union of several configs' kept data (what a Mixture trains on).

    ``parts`` are (output folder, config, manifest info). The summaries cannot be merged (a q99
    of a union is no function of the parts' q99s), so this merges the states the job wrote
    beside them (:mod:`.statsfile`): moments exactly, quantiles exactly while the union holds at
    most ``EXACT_LIMIT`` rows per field and within the KLL bound beyond. Per task, a task that
    several configs share is merged too. Sampling weights do not enter: these describe the
    union of the data, each step counted once per config that holds it. Reference scores and
    semantics come from the first config that has the task.
    """
    from ..schemas.stats import RawStats
    from .statsfile import read_stats_state

    if not parts:
        raise ShardError(name, "no configs to merge statistics from")
    config, tasks = RawStats(), {}
    semantics: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    tokenize = [(info.get("settings") or {}).get("tokenize") or {} for _, _, info in parts]
    for out, cfg, info in parts:
        mine, by_task = read_stats_state(out, cfg, info.get("statistics_state"))
        config.merge(mine, f"{name} config {cfg!r}")
        for task in sorted(by_task):
            if task in tasks:
                tasks[task].merge(by_task[task], f"{name} task {task!r}")
            else:
                tasks[task] = by_task[task]
        for block, into in (("semantics", semantics), ("reference", reference)):
            for task, value in (info.get(block) or {}).items():
                into.setdefault(task, value)
    method = dict((parts[0][2].get("statistics") or {}).get("method") or {})
    method["merged_from"] = [cfg for _, cfg, _ in parts]
    return TrainerInfo(name, {
        "statistics": {"method": method, "config": config.summary(),
                       "tasks": {t: tasks[t].summary() for t in sorted(tasks)}},
        "semantics": semantics, "reference": reference,
        # action decoding needs one tokenize setting: only when every config used the same
        "settings": {"tokenize": tokenize[0] if all(t == tokenize[0] for t in tokenize) else {}},
    })


def _bounds(stats: Mapping[str, Any], method: str) -> tuple[np.ndarray, np.ndarray]:
    if method == "mean_std":
        return np.asarray(stats["mean"]), np.asarray(stats["std"])
    lo, hi = ("min", "max") if method == "min_max" else ("q01", "q99")
    a, b = np.asarray(stats[lo]), np.asarray(stats[hi])
    return (a + b) / 2, (b - a) / 2  # centre and half-width: [lo, hi] -> [-1, 1]


def normalize(values: Any, stats: Mapping[str, Any], method: Normalization = "mean_std"
              ) -> np.ndarray:
    """Normalise raw (or decoded) values [..., D] of a field with its statistics ``stats``.

    "mean_std": (x - mean) / std; "min_max": [min, max] -> [-1, 1]; "quantile": [q01, q99] ->
    [-1, 1] (robust to outliers; values beyond stay beyond, clip if you want). A constant
    dimension (zero spread) is only centred.
    """
    if method not in NORMALIZATIONS:
        raise ShardError("normalize", f"method must be one of {NORMALIZATIONS}, got {method!r}")
    x = np.asarray(values, dtype=np.float64)
    centre, scale = _bounds(stats, method)
    if x.shape[-1:] != centre.shape and centre.size != 1:
        raise ShardError("normalize", f"values have {x.shape[-1] if x.ndim else 0} dimensions, "
                         f"the statistics {centre.size}")
    return ((x - centre) / _safe(scale)).astype(np.float32)


def unnormalize(values: Any, stats: Mapping[str, Any], method: Normalization = "mean_std"
                ) -> np.ndarray:
    """The inverse of :func:`normalize` (a model's normalised output -> the field's units)."""
    if method not in NORMALIZATIONS:
        raise ShardError("unnormalize", f"method must be one of {NORMALIZATIONS}, got {method!r}")
    centre, scale = _bounds(stats, method)
    return (np.asarray(values, dtype=np.float64) * _safe(scale) + centre).astype(np.float32)


def _safe(scale: np.ndarray) -> np.ndarray:
    return np.where(scale > _EPS, scale, 1.0)
