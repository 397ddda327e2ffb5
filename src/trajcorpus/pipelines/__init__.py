"""The Beam job that turns one catalog dataset into shards, audit, manifest and card.

``run_job`` is what ``trajcorpus run`` calls; the pure pieces (filter, prompts, sequences) are
importable on their own, without Beam (the job's names below are imported on first use).
"""

from typing import Any

from .filter import FilterResult, best_window, filter_task, threshold_for, window_size

__all__ = ["DEFAULT_SHARD_BYTES", "FilterResult", "JobResult", "best_window", "filter_task",
           "run_job", "threshold_for", "window_size"]

_JOB = {"DEFAULT_SHARD_BYTES", "JobResult", "run_job"}


def __getattr__(name: str) -> Any:
    if name in _JOB:
        from . import job

        return getattr(job, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
