"""The per-task episode filters, as pure functions: Gato's best-windowed-return rule (SPEC
section 3; Gato section 3.1) and MGDT's ``top_fraction`` (each task's best fraction of episodes by
return; Lee et al. 2022, appendix E).

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
           "collection_order", "is_kept", "top_count", "top_fraction"]


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
    rule: str = "gato"
    top_fraction: float | None = None  # the top_fraction rule's fraction
    # top_fraction: the last kept episode in (return descending, episode id ascending) order; an
    # episode whose return equals the threshold is kept iff its id is <= this one (exact count)
    threshold_episode_id: str | None = None

    def to_json(self) -> dict:
        """The record (``FilterResult(**record)`` rebuilds it); Gato's rule omits the fields of
        the other rules, so its record is the SPEC's."""
        out = dataclasses.asdict(self)
        if self.rule == "gato":
            for name in ("rule", "top_fraction", "threshold_episode_id"):
                del out[name]
        return out

    @property
    def cut(self) -> float | tuple[float, str] | None:
        """The keep rule the job sends to the episodes (see :func:`is_kept`)."""
        if self.threshold is None or self.threshold_episode_id is None:
            return self.threshold
        return (self.threshold, self.threshold_episode_id)

    def audit_extra(self) -> dict:
        """The rule's own audit keys; none for Gato's rule, whose audit record is the SPEC's."""
        if self.rule == "gato":
            return {}
        return {"rule": self.rule, "top_fraction": self.top_fraction,
                "threshold_episode_id": self.threshold_episode_id}


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


def is_kept(return_: float, threshold: float | tuple[float, str] | None,
            episode_id: str | None = None) -> bool:
    """The keep rule; ``None`` (filter disabled) keeps everything.

    ``threshold`` is a return (keep iff ``return_ >= threshold``) or, for ``top_fraction``, a
    ``(return, last episode id)`` cut: keep iff the return is above it, or equal with an episode id
    that sorts at or before the last kept one.
    """
    if threshold is None:
        return True
    if isinstance(threshold, tuple):
        thr, last_id = threshold
        if episode_id is None:
            raise ValueError("a top_fraction cut needs the episode id")
        return return_ > thr or (return_ == thr and episode_id <= last_id)
    return return_ >= threshold


def top_count(n: int, fraction: float) -> int:
    """Episodes ``top_fraction`` keeps out of n: ceil(fraction * n), so at least one of n >= 1.

    Computed in exact rational arithmetic on the float's decimal text (0.1 * 30 is 3, not
    ceil(3.0000000000000004) = 4).
    """
    from fractions import Fraction

    return min(n, math.ceil(Fraction(repr(fraction)) * n))


def top_fraction(task: str, summaries: Iterable[EpisodeSummary], fraction: float) -> FilterResult:
    """Keep a task's best ``top_count(N, fraction)`` episodes by return; ties at the cut go to
    the smaller episode id (string order), so the count is exact and independent of input order."""
    ranked = sorted(summaries, key=lambda s: (-float(s.return_), s.episode_id))
    n = len(ranked)
    if n == 0:
        return FilterResult(task, 0, None, None, None, None, kept=0, filtered=0,
                            rule="top_fraction", top_fraction=fraction)
    k = top_count(n, fraction)
    last = ranked[k - 1]
    return FilterResult(task, n, None, None, None, float(last.return_), kept=k, filtered=n - k,
                        rule="top_fraction", top_fraction=fraction,
                        threshold_episode_id=last.episode_id)


def filter_task(task: str, summaries: Iterable[EpisodeSummary],
                settings: FilterSettings) -> FilterResult:
    """Apply the entry's filter rule to one task's episodes (any input order)."""
    if settings.enabled and settings.rule == "top_fraction":
        return top_fraction(task, summaries, settings.top_fraction)
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
