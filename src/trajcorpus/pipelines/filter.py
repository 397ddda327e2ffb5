"""The best-windowed-return filter (SPEC section 3; Gato section 3.1), as a pure function.

It sees one task's small per-episode summaries, never the episodes: the Beam job groups
:class:`~trajcorpus.schemas.EpisodeSummary` records by task, calls :func:`filter_task`, and sends
only the resulting threshold back to the heavy data as a side input.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np

from ..schemas.catalog import FilterSettings
from ..schemas.episode import EpisodeSummary

__all__ = ["FilterResult", "window_size", "best_window", "threshold_for", "filter_task",
           "collection_order", "is_kept"]


@dataclasses.dataclass(frozen=True)
class FilterResult:
    """What the audit records per task. Window fields are None when the filter is disabled."""

    task: str
    episodes_total: int
    window: int | None
    best_window_start: int | None
    expert_return: float | None
    threshold: float | None
    kept: int
    filtered: int

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def window_size(n: int, settings: FilterSettings) -> int:
    """W = max(1, min(max_window, floor(window_fraction * N)))."""
    return max(1, min(settings.max_window, math.floor(settings.window_fraction * n)))


def best_window(returns: Sequence[float], window: int) -> tuple[int, float]:
    """(start j, mean) of the first best run of ``window`` consecutive returns.

    Sliding sums come from a float64 cumulative sum; ties go to the earliest window.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError("best_window needs a non-empty 1-D sequence of returns")
    if not 1 <= window <= r.size:
        raise ValueError(f"window {window} outside [1, {r.size}]")
    csum = np.concatenate(([0.0], np.cumsum(r)))
    means = (csum[window:] - csum[:-window]) / window
    j = int(np.argmax(means))
    return j, float(means[j])


def threshold_for(expert_return: float, fraction: float) -> float:
    """fraction * R_exp for R_exp >= 0, else R_exp - (1 - fraction) * |R_exp| (SPEC 3)."""
    if expert_return >= 0:
        return fraction * expert_return
    return expert_return - (1.0 - fraction) * abs(expert_return)


def collection_order(summaries: Iterable[EpisodeSummary]) -> list[EpisodeSummary]:
    """Episodes of one task in collection order: by ``order``, ties broken by episode id."""
    return sorted(summaries, key=lambda s: (tuple(s.order), s.episode_id))


def is_kept(return_: float, threshold: float | None) -> bool:
    """The keep rule; ``None`` (filter disabled) keeps everything."""
    return threshold is None or return_ >= threshold


def filter_task(task: str, summaries: Iterable[EpisodeSummary],
                settings: FilterSettings) -> FilterResult:
    """Apply SPEC section 3 to one task's episodes (any input order)."""
    ordered = collection_order(summaries)
    n = len(ordered)
    if not settings.enabled or n == 0:
        return FilterResult(task, n, None, None, None, None, kept=n, filtered=0)
    returns = np.array([s.return_ for s in ordered], dtype=np.float64)
    w = window_size(n, settings)
    j, r_exp = best_window(returns, w)
    thr = threshold_for(r_exp, settings.fraction)
    kept = int(np.count_nonzero(returns >= thr))
    return FilterResult(task, n, w, j, r_exp, thr, kept=kept, filtered=n - kept)
