"""Per-dimension statistics of the raw continuous values (before mu-law and binning).

One record, :class:`RawStats`, is made per episode by the job, merged per task and per config,
and summarised into the manifest; the card and the loaders read the summary. It is Beam-free so
the loaders can use it without the job's dependencies.

Each continuous field keeps, per dimension, a mergeable moment sketch (count, mean, sum of squared
deviations: Chan, Golub and LeVeque's parallel update, in float64) plus min and max, and for the
quantiles either the exact values (while a field holds at most ``exact_limit`` rows) or one
Apache DataSketches KLL sketch per dimension (beyond that). Why the exact stage: KLL compaction
draws random bits that cannot be seeded, so a sketched quantile varies between runs within its
rank error; every corpus up to ``EXACT_LIMIT`` steps per task therefore gets exact quantiles and
byte-identical statistics on every run, and larger ones get the sketch's documented bound.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import TrajcorpusError

__all__ = ["QUANTILES", "QUANTILE_NAMES", "KLL_K", "EXACT_LIMIT", "kll_rank_error",
           "FieldStats", "RawStats", "episode_stats", "ACTIONS", "STATE_VERSION"]

QUANTILES: tuple[float, ...] = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_NAMES: tuple[str, ...] = ("q01", "q10", "q50", "q90", "q99")
KLL_K = 200  # DataSketches' default: normalised rank error 1.33% (99% confidence)
EXACT_LIMIT = 65536  # rows per field kept exactly before switching to the KLL sketch
STATE_VERSION = 1  # of RawStats.to_state(): bump when its layout changes
ACTIONS = "actions"  # the field name of continuous actions; observations keep their own names


def kll_rank_error(k: int = KLL_K) -> float:
    """The KLL sketch's a-priori normalised rank error of one quantile (99% confidence)."""
    import datasketches

    return float(datasketches.kll_doubles_sketch.get_normalized_rank_error(k, False))


def _new_sketch(k: int):
    import datasketches

    return datasketches.kll_doubles_sketch(k)


class FieldStats:
    """The mergeable statistics of one field: ``dims`` columns (the per-step shape flattened)."""

    def __init__(self, shape: tuple[int, ...], n: int, mean: np.ndarray, m2: np.ndarray,
                 lo: np.ndarray, hi: np.ndarray, values: list[np.ndarray] | None,
                 sketches: list | None, k: int = KLL_K, exact_limit: int = EXACT_LIMIT):
        self.shape, self.n, self.mean, self.m2, self.lo, self.hi = shape, n, mean, m2, lo, hi
        self.values, self.sketches, self.k, self.exact_limit = values, sketches, k, exact_limit

    @classmethod
    def of(cls, x: np.ndarray, *, k: int = KLL_K, exact_limit: int = EXACT_LIMIT) -> FieldStats:
        """Statistics of ``x`` [T, ...] (T steps of one per-step shape)."""
        a = np.asarray(x)
        shape = tuple(int(s) for s in a.shape[1:])
        cols = a.reshape(a.shape[0], -1).astype(np.float64)
        mean = cols.mean(axis=0)
        m2 = ((cols - mean) ** 2).sum(axis=0)
        out = cls(shape, cols.shape[0], mean, m2, cols.min(axis=0), cols.max(axis=0), [cols],
                  None, k, exact_limit)
        out._maybe_sketch()
        return out

    @property
    def dims(self) -> int:
        return int(math.prod(self.shape))

    @property
    def exact(self) -> bool:
        return self.sketches is None

    def _maybe_sketch(self) -> None:
        if self.values is not None and self.n > self.exact_limit:
            cols = np.concatenate(self.values)
            self.sketches = []
            for d in range(cols.shape[1]):
                s = _new_sketch(self.k)
                s.update(np.ascontiguousarray(cols[:, d]))
                self.sketches.append(s)
            self.values = None

    def copy(self) -> FieldStats:
        """An independent copy (merging mutates sketches in place; inputs must stay intact)."""
        out = FieldStats.__new__(FieldStats)
        out.__setstate__(self.__getstate__())
        return out

    def merge(self, other: FieldStats, where: str = "statistics") -> FieldStats:
        """Fold ``other`` into self (in place) and return self."""
        if other.shape != self.shape:
            raise TrajcorpusError(where, f"per-step shape {list(other.shape)} differs from "
                                  f"{list(self.shape)} seen before")
        if other.n == 0:
            return self
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.n / n)
        self.m2 = self.m2 + other.m2 + delta * delta * (self.n * other.n / n)
        self.lo, self.hi = np.minimum(self.lo, other.lo), np.maximum(self.hi, other.hi)
        self.n = n
        if self.values is not None and other.values is not None:
            self.values = self.values + other.values
            self._maybe_sketch()
            return self
        if self.values is not None:  # past the exact stage: sketch our own values first
            self.exact_limit = -1
            self._maybe_sketch()
        theirs = other.sketches
        if theirs is None:
            tmp = FieldStats(other.shape, other.n, other.mean, other.m2, other.lo, other.hi,
                             list(other.values or []), None, self.k, -1)
            tmp._maybe_sketch()
            theirs = tmp.sketches
        for mine, t in zip(self.sketches or [], theirs or [], strict=True):
            mine.merge(t)
        return self

    def _sorted_columns(self) -> np.ndarray:
        """The exact stage's values, each dimension sorted: independent of the merge order."""
        if not self.values:
            return np.zeros((0, self.dims))
        return np.sort(np.concatenate(self.values), axis=0)

    def summary(self) -> dict[str, Any]:
        """JSON-ready per-dimension lists: count, mean, std (population), min, max, quantiles."""
        out: dict[str, Any] = {"shape": list(self.shape), "count": int(self.n)}
        if self.exact:
            cols = self._sorted_columns()
            # from the sorted values: the same numbers whatever order episodes were merged in
            mean, std = cols.mean(axis=0), cols.std(axis=0)
            qs = np.quantile(cols, QUANTILES, axis=0, method="inverted_cdf")
            out.update(quantiles="exact", rank_error=0.0)
        else:
            mean, std = self.mean, np.sqrt(self.m2 / self.n)
            qs = np.array([s.get_quantiles(list(QUANTILES), True) for s in self.sketches]).T
            out.update(quantiles=f"kll(k={self.k})", rank_error=kll_rank_error(self.k))
        out.update(mean=_floats(mean), std=_floats(std), min=_floats(self.lo),
                   max=_floats(self.hi))
        for name, row in zip(QUANTILE_NAMES, qs, strict=True):
            out[name] = _floats(row)
        return out

    # pickling (Beam moves accumulators between workers): sketches travel as their own bytes
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.sketches is not None:
            state["sketches"] = [s.serialize() for s in self.sketches]
        if self.values is not None and len(self.values) > 1:
            state["values"] = [np.concatenate(self.values)]
        return state

    def __setstate__(self, state: dict) -> None:
        if state.get("sketches") is not None:
            import datasketches

            state["sketches"] = [datasketches.kll_doubles_sketch.deserialize(b)
                                 for b in state["sketches"]]
        self.__dict__.update(state)


    # the persisted form (the job's statistics file, which a Mixture merges): arrays travel as
    # little-endian float64 bytes, so NaN and every bit of every value survive JSON
    def to_state(self) -> dict[str, Any]:
        mean, m2, values = self.mean, self.m2, None
        if self.values is not None:  # exact stage: everything from the sorted columns, so the
            cols = self._sorted_columns()  # bytes do not depend on the order parts merged in
            if cols.shape[0]:
                mean = cols.mean(axis=0)
                m2 = ((cols - mean) ** 2).sum(axis=0)
            values = _b64(cols)
        return {"shape": list(self.shape), "n": int(self.n), "k": self.k,
                "exact_limit": self.exact_limit, "mean": _b64(mean), "m2": _b64(m2),
                "min": _b64(self.lo), "max": _b64(self.hi), "values": values,
                "sketches": None if self.sketches is None else
                [base64.b64encode(s.serialize()).decode() for s in self.sketches]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], where: str) -> FieldStats:
        try:
            shape = tuple(int(x) for x in state["shape"])
            dims = int(math.prod(shape))
            vec = [_unb64(state[k], (dims,), where) for k in ("mean", "m2", "min", "max")]
            values = None if state["values"] is None else \
                [_unb64(state["values"], (-1, dims), where)]
            sketches = None
            if state["sketches"] is not None:
                import datasketches

                sketches = [datasketches.kll_doubles_sketch.deserialize(base64.b64decode(b))
                            for b in state["sketches"]]
                if len(sketches) != dims:
                    raise ValueError(f"{len(sketches)} sketches for {dims} dimensions")
            return cls(shape, int(state["n"]), *vec, values, sketches, int(state["k"]),
                       int(state["exact_limit"]))
        except TrajcorpusError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise TrajcorpusError(where, f"unreadable field statistics: {e}") from None


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode()


def _unb64(text: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 8:
        raise TrajcorpusError(where, f"array of {len(raw)} bytes is not float64")
    return np.frombuffer(raw, dtype="<f8").astype(np.float64).reshape(shape)


def _floats(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


class RawStats:
    """Field name -> :class:`FieldStats`, plus every field's kind and per-step shape (``schema``:
    what the semantics name); merging unions both."""

    def __init__(self, fields: Mapping[str, FieldStats] | None = None,
                 schema: Mapping[str, tuple] | None = None):
        self.fields: dict[str, FieldStats] = dict(fields or {})
        self.schema: dict[str, tuple] = dict(schema or {})
        # fields whose per-step shape differs between the merged parts (e.g. the observations of
        # two environments in one config): they get no statistics here, only their shapes
        self.conflicts: dict[str, set[tuple[int, ...]]] = {}

    def merge(self, other: RawStats, where: str = "statistics") -> RawStats:
        for name, spec in other.schema.items():  # a conflict keeps the smaller: order-free
            mine = self.schema.get(name)
            self.schema[name] = spec if mine is None else min(mine, spec, key=repr)
        for name, shapes in other.conflicts.items():
            self._conflict(name, shapes)
        for name, f in other.fields.items():
            if name in self.conflicts:
                self._conflict(name, {f.shape})
            elif name not in self.fields:
                self.fields[name] = f.copy()
            elif self.fields[name].shape != f.shape:
                self._conflict(name, {f.shape})
            else:
                self.fields[name].merge(f, f"{where} field {name!r}")
        return self

    def _conflict(self, name: str, shapes: set) -> None:
        mine = self.fields.pop(name, None)
        self.conflicts.setdefault(name, set()).update(shapes | ({mine.shape} if mine else set()))

    @classmethod
    def merged(cls, items: Iterable[RawStats], where: str = "statistics") -> RawStats:
        out = cls()
        for s in items:
            out.merge(s, where)
        return out

    def summary(self) -> dict[str, dict]:
        """Field -> :meth:`FieldStats.summary`, fields sorted (deterministic JSON)."""
        out = {name: self.fields[name].summary() for name in self.fields}
        for name, shapes in self.conflicts.items():
            out[name] = {"shapes": sorted(list(s) for s in shapes), "count": None,
                         "note": "per-step shape differs between parts: see the per-task "
                                 "statistics"}
        return {name: out[name] for name in sorted(out)}

    def to_state(self) -> dict[str, Any]:
        """Everything needed to merge these statistics later (JSON-ready; see from_state)."""
        return {"version": STATE_VERSION,
                "fields": {n: self.fields[n].to_state() for n in sorted(self.fields)},
                "schema": {n: [self.schema[n][0], None if self.schema[n][1] is None
                               else list(self.schema[n][1])] for n in sorted(self.schema)},
                "conflicts": {n: sorted(list(s) for s in self.conflicts[n])
                              for n in sorted(self.conflicts)}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], where: str) -> RawStats:
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            got = state.get("version") if isinstance(state, Mapping) else type(state).__name__
            raise TrajcorpusError(where, f"statistics state version {got!r}, this trajcorpus "
                                  f"reads {STATE_VERSION} (rerun the job)")
        try:
            out = cls({n: FieldStats.from_state(f, f"{where} field {n!r}")
                       for n, f in state["fields"].items()},
                      {n: (k, None if shp is None else tuple(int(x) for x in shp))
                       for n, (k, shp) in state["schema"].items()})
            out.conflicts = {n: {tuple(int(x) for x in s) for s in shapes}
                             for n, shapes in state["conflicts"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TrajcorpusError(where, f"unreadable statistics state: {e}") from None
        return out

    def schema_json(self) -> dict[str, dict]:
        """Field -> {"kind", "shape"} (shape null for images and text), sorted."""
        return {n: {"kind": self.schema[n][0], "shape": None if self.schema[n][1] is None
                    else list(self.schema[n][1])} for n in sorted(self.schema)}


def episode_stats(observations: Mapping[str, np.ndarray], kinds: Mapping[str, str],
                  actions: np.ndarray, action_kind: str, *, k: int = KLL_K,
                  exact_limit: int = EXACT_LIMIT) -> RawStats:
    """The statistics of one episode's continuous observation fields and continuous actions
    (mixed actions: every column, the discrete ones as their values, e.g. a button's press rate
    as its mean)."""
    fields = {_obs_key(name): FieldStats.of(observations[name], k=k, exact_limit=exact_limit)
              for name, kind in kinds.items() if kind == "continuous"}
    schema = {_obs_key(name): (kind, None if kind in ("image", "text")
                               else tuple(int(s) for s in np.shape(observations[name])[1:]))
              for name, kind in kinds.items()}
    if action_kind != "none":
        schema[ACTIONS] = (action_kind, tuple(int(s) for s in actions.shape[1:]))
    if action_kind in ("continuous", "mixed") and actions.size:  # mixed: every column
        fields[ACTIONS] = FieldStats.of(actions, k=k, exact_limit=exact_limit)
    return RawStats(fields, schema)


def _obs_key(name: str) -> str:
    """An observation's field name; one called "actions" is kept apart from the actions."""
    return f"observations/{name}" if name == ACTIONS else name
