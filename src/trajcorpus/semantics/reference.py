"""Reference returns per task, and the normalised score of an episode against them.

Where they come from, in order: the source's own metadata (Minari's ``ref_min_score`` and
``ref_max_score`` in ``data/metadata.json``), then the catalog entry's ``reference`` block (D4RL's
published reference returns, the Atari random and human scores of the literature), each with its
citation. The corpus's own expert return and threshold (SPEC section 3) are added by the job from
the filter's results.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .. import fs

__all__ = ["task_references", "normalized_score", "minari_references"]


def normalized_score(ref: Mapping[str, Any] | None, return_: float) -> float | None:
    """100 * (R - random) / (expert - random), the D4RL and Atari convention; None when either
    end is missing or they coincide."""
    if not ref or ref.get("random") is None or ref.get("expert") is None:
        return None
    lo, hi = float(ref["random"]), float(ref["expert"])
    if hi == lo or not math.isfinite(return_):
        return None
    return 100.0 * (float(return_) - lo) / (hi - lo)


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


def task_references(entry: Mapping[str, Any], kind: str, units: Iterable[Any]) -> dict[str, dict]:
    """Task -> {"random", "expert", "expert_kind", "source"} for every task that has one."""
    out: dict[str, dict] = {}
    ref = entry.get("reference") or {}
    for task, score in (ref.get("scores") or {}).items():
        out[task] = {"random": score.get("random"), "expert": score.get("expert"),
                     "expert_kind": score.get("expert_kind", "expert"),
                     "source": ref.get("source", "")}
    if kind == "minari":
        out.update(minari_references(units))  # the data's own numbers win
    return out
