"""Beam's side of the raw-value statistics: a CombineFn over per-episode :class:`RawStats`.

ReadUnit makes one small record per episode (its continuous fields' moments and values or KLL
sketches, see :mod:`trajcorpus.schemas.stats`); the job keeps the kept episodes' records and
combines them per task, then the per-task results into the config's. Merging is associative and
commutative, so Beam may combine in any order on any number of workers (combiner lifting keeps
the shuffled accumulators small: once a task passes the exact stage they are sketches).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import apache_beam as beam

from ..schemas.stats import RawStats, episode_stats

__all__ = ["CombineRawStats", "EpisodeStats", "episode_record"]


class CombineRawStats(beam.CombineFn):
    """RawStats records -> their union (a RawStats; ``.summary()`` gives the manifest form)."""

    def __init__(self, where: str = "statistics"):
        self.where = where

    def create_accumulator(self) -> RawStats:
        return RawStats()

    def add_input(self, acc: RawStats, item: RawStats) -> RawStats:
        return acc.merge(item, self.where)

    def merge_accumulators(self, accs: Iterable[RawStats]) -> RawStats:
        return RawStats.merged(accs, self.where)

    def extract_output(self, acc: RawStats) -> RawStats:
        return acc


class EpisodeStats(NamedTuple):
    """One read episode's statistics record (what ReadUnit emits under the "rawstats" tag); the
    task, return and vl flag let the job keep only the kept episodes' records."""

    task: str
    return_: float
    vl: bool
    stats: RawStats
    episode_id: str = ""  # for a top_fraction cut's tie-break (pipelines/filter.is_kept)


def episode_record(ep: Any) -> EpisodeStats:
    """The statistics record of an Episode (its continuous fields and its schema)."""
    return EpisodeStats(ep.task, float(ep.return_), ep.action_kind == "none",
                        episode_stats(ep.observations, ep.observation_kinds, ep.actions,
                                      ep.action_kind), ep.episode_id)
