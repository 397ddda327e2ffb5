"""The job's window bundles: what crosses the shuffles between reading and the shard writers.

Beam's cost is per element (encode, hand to the runner, decode, invoke the next DoFn), not per
byte, and a corpus has tens of thousands of windows. So the reading stage emits one bundle per
unit: a tuple of :class:`.spec.EpisodeWindows`, one per episode. The filter keeps or drops whole
episodes inside the bundle, the prompt requests and candidate windows leave it grouped by prompt
episode, and the shard routing splits it into one part per shard it touches. The shard writers
expand the parts back to one :class:`.spec.WindowRef` per window and sort them by key, so the
examples, their order and every output byte are what one element per window gave.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from . import prompts
from .filter import is_kept
from .spec import EpisodeWindows, JobSpec, PromptRef, WindowRef, sequence_key, shard_of

__all__ = ["Bundle", "kept", "make_request", "keep_episodes", "est_bytes", "prompt_requests",
           "candidate_windows", "split_by_shard", "group_by_shard", "window_refs"]

Bundle = tuple[EpisodeWindows, ...]


def kept(r: Any, thresholds: Mapping[str, Any]) -> bool:
    """Whether the filter keeps the episode of ``r`` (anything with task, return_, episode_id
    and vl: a summary, a statistics record, an :class:`EpisodeWindows`)."""
    return r.vl or is_kept(r.return_, thresholds.get(r.task), r.episode_id)


def keep_episodes(bundle: Bundle, thresholds: Mapping[str, Any]) -> Bundle:
    return tuple(e for e in bundle if kept(e, thresholds))


def est_bytes(bundle: Bundle) -> int:
    """The estimated encoded bytes of the bundle's examples (the shard count's input)."""
    return sum(w[8] for e in bundle for w in e.windows)


def make_request(spec: JobSpec, e: EpisodeWindows, window: int, candidates: Mapping
                 ) -> tuple[str, tuple[str, str, float, bool]]:
    """(prompt episode id, (sequence key, mode, start draw, is_self)) for window ``window`` of
    episode ``e``, which wants a prompt."""
    cands = candidates.get((e.task, e.agent), [e.episode_id])
    c = prompts.choose_prompt(spec.seed, e.episode_id, window, cands,
                              spec.sequence.prompt_end_share)
    return c.episode_id, (sequence_key(e.episode_id, window), c.mode, c.u, c.is_self)


def prompt_requests(spec: JobSpec, bundle: Bundle, candidates: Mapping
                    ) -> Iterator[tuple[str, tuple]]:
    """(prompt episode id, its requests from this bundle) for the prompted windows, where a
    request is (sequence key, mode, start draw, is_self) as :func:`make_request` makes."""
    out: dict[str, list] = defaultdict(list)
    for e in bundle:
        for w in e.windows:
            if w[5]:  # wants_prompt (the tuple's layout: spec.EpisodeWindows)
                eid, request = make_request(spec, e, w[0], candidates)
                out[eid].append(request)
    for eid in sorted(out):
        yield eid, tuple(out[eid])


def candidate_windows(bundle: Bundle, candidates: Mapping) -> Iterator[tuple[str, tuple]]:
    """(episode id, its windows as (first_step, last_step, max_step_tokens, uri, offset,
    length)) for each control episode of the bundle that can serve as a prompt."""
    for e in bundle:
        if not e.vl and e.episode_id in candidates.get((e.task, e.agent), ()):
            yield e.episode_id, tuple((w[1], w[2], w[4], e.uri, w[6], w[7]) for w in e.windows)


def split_by_shard(bundle: Bundle, num_shards: int) -> Iterator[tuple[int, Bundle]]:
    """(shard, the bundle's windows hashed there, still grouped by episode) per shard touched."""
    parts: dict[int, list[EpisodeWindows]] = defaultdict(list)
    for e in bundle:
        split: dict[int, list] = defaultdict(list)
        for w in e.windows:
            split[shard_of(sequence_key(e.episode_id, w[0]), num_shards)].append(w)
        for shard, windows in split.items():
            parts[shard].append(e._replace(windows=tuple(windows)))
    for shard in sorted(parts):
        yield shard, tuple(parts[shard])


def group_by_shard(items: Iterable[tuple[str, PromptRef | None]], num_shards: int
                   ) -> Iterator[tuple[int, tuple]]:
    """(shard, its (sequence key, prompt) pairs) from pairs keyed by sequence key."""
    out: dict[int, list] = defaultdict(list)
    for key, ref in items:
        out[shard_of(key, num_shards)].append((key, ref))
    for shard in sorted(out):
        yield shard, tuple(out[shard])


def window_refs(parts: Iterable[Bundle]) -> list[WindowRef]:
    """One shard's windows from its bundle parts, sorted by sequence key."""
    return sorted((r for part in parts for e in part for r in e.refs()), key=lambda r: r.key)
