"""Whole-or-nothing file writes for the job's own files (spill, audit, results).

One implementation serves shards and the job's files alike: see
:func:`trajcorpus.shards.writer.atomic_open` (temporary name + rename on file systems; direct
write with a discarded upload on failure for object stores).
"""

from __future__ import annotations

from ..shards.writer import atomic_open

__all__ = ["atomic_open"]
