"""The Beam job that turns one catalog dataset into shards, audit, manifest and card.

``run_job`` is what ``trajcorpus run`` calls; the pure pieces (filter, prompts, sequences) are
importable on their own and tested without Beam.
"""

from .filter import FilterResult, best_window, filter_task, threshold_for, window_size
from .job import DEFAULT_SHARD_BYTES, JobResult, run_job

__all__ = ["DEFAULT_SHARD_BYTES", "FilterResult", "JobResult", "best_window", "filter_task",
           "run_job", "threshold_for", "window_size"]
