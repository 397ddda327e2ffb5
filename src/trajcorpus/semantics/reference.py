"""Reference returns per task, and the normalised score of an episode against them.

Where they come from, in order: the source's own metadata (Minari's ``ref_min_score`` and
``ref_max_score`` in ``data/metadata.json``), then the catalog entry's ``reference`` block (D4RL's
published reference returns, the Atari random and human scores of the literature), each with its
citation. The corpus's own expert return and threshold (SPEC section 3) are added by the job from
the filter's results.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["task_references", "normalized_score"]


def normalized_score(ref: Mapping[str, Any] | None, return_: float) -> float | None:
    """100 * (R - random) / (expert - random), the D4RL and Atari convention; None when either
    end is missing or they coincide."""
    if not ref or ref.get("random") is None or ref.get("expert") is None:
        return None
    lo, hi = float(ref["random"]), float(ref["expert"])
    if hi == lo or not math.isfinite(return_):
        return None
    return 100.0 * (float(return_) - lo) / (hi - lo)


def task_references(entry: Mapping[str, Any], kind: str, units: Iterable[Any]) -> dict[str, dict]:
    """Task -> {"random", "expert", "expert_kind", "source"} for every task that has one."""
    out: dict[str, dict] = {}
    ref = entry.get("reference") or {}
    for task, score in (ref.get("scores") or {}).items():
        out[task] = {"random": score.get("random"), "expert": score.get("expert"),
                     "expert_kind": score.get("expert_kind", "expert"),
                     "source": ref.get("source", "")}
    from ..sources.base import get_source

    out.update(get_source(kind).own_references(list(units)))  # the data's own numbers win
    return out
