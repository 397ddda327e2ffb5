"""The job's settings and the small records that cross a shuffle (window and prompt references,
their keys and shards): picklable, and importable without Beam."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, NamedTuple

from .. import fs
from ..schemas.catalog import FilterSettings, SequenceSettings, TokenizeSettings
from ..shards.layout import MIN_SHARDS
from ..sources.base import Source, Unit
from . import prompts

__all__ = ["JobSpec", "WindowRef", "EpisodeWindows", "PromptRef", "UNATTRIBUTED", "say", "sequence_key",
           "shard_of", "relative_lineage"]


UNATTRIBUTED = "(unattributed)"


_NS = "trajcorpus"


def say(spec: JobSpec, message: str) -> None:
    """A progress line on stderr (local runs); workers' stderr reaches the terminal."""
    if spec.progress:
        print(f"[trajcorpus {spec.config}] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs, picklable; built once by the driver."""

    config: str
    kind: str
    uri: str
    options: dict
    task_template: str
    agent_template: str
    filter: FilterSettings
    tokenize: TokenizeSettings
    sequence: SequenceSettings
    seed: int
    formats: tuple[str, ...]
    output: str
    tmp: str
    shard_bytes: int
    num_units: int
    min_shards: int = MIN_SHARDS
    progress: bool = True
    split: str = "train"
    entry: dict = dataclasses.field(default_factory=dict)  # the catalog entry, for the manifest
    references: dict = dataclasses.field(default_factory=dict)  # task -> reference returns
    input: str = ""  # the input as the user gave it (--input or the entry's uri), for the manifest
    lineage_root: str = ""  # meta lineage paths are relative to this (see relative_lineage)
    cache: Any = None  # a buildcache.BuildCache, or None: no build cache

    def open_source(self) -> Source:
        from ..sources import open_source

        return open_source(self.kind, self.uri, dataset=self.config, options=self.options,
                           task_template=self.task_template, agent_template=self.agent_template)

    @property
    def staging(self) -> str:
        """Where shards are written before finalize() moves them under OUT."""
        return fs.join(self.tmp, "staged")

    def unit_file(self, unit: Unit, suffix: str) -> str:
        return fs.join(self.tmp, "units", f"{unit.index:06d}.{suffix}")


class WindowRef(NamedTuple):
    """One future example: where its window was spilled, and what is needed to finish it."""

    key: str
    task: str
    agent: str
    episode_id: str
    return_: float
    vl: bool
    window: int
    first_step: int
    last_step: int  # inclusive
    num_tokens: int
    max_step_tokens: int
    wants_prompt: bool
    uri: str
    offset: int
    length: int
    est_bytes: int
    meta: str  # JSON of the fixed meta fields; the writer adds the prompt


class EpisodeWindows(NamedTuple):
    """All the windows of one episode (or one image-caption pack) as one record: what they share
    once, and per window the tuple (window, first_step, last_step, num_tokens, max_step_tokens,
    wants_prompt, offset, length, est_bytes). The job moves these, a few per unit, instead of
    one :class:`WindowRef` per window: Beam's cost is per element, not per byte."""

    task: str
    agent: str
    episode_id: str
    return_: float
    vl: bool
    uri: str
    meta: str  # control: the fixed meta JSON without its closing brace; image-caption: all of it
    windows: tuple[tuple[int, int, int, int, int, bool, int, int, int], ...]

    def meta_of(self, w: tuple) -> str:
        if self.vl:
            return self.meta
        return f'{self.meta}, "first_step": {w[1]}, "last_step": {w[2]}, "window": {w[0]}}}'

    def refs(self) -> list[WindowRef]:
        """One :class:`WindowRef` per window, in window order."""
        return [WindowRef(sequence_key(self.episode_id, w[0]), self.task, self.agent,
                          self.episode_id, self.return_, self.vl, w[0], w[1], w[2], w[3], w[4],
                          w[5], self.uri, w[6], w[7], w[8], self.meta_of(w))
                for w in self.windows]


class PromptRef(NamedTuple):
    """The resolved prompt of one sequence: steps [start, stop) of ``episode_id``, spilled in
    ``windows`` (first_step, uri, offset, length), in step order."""

    episode_id: str
    mode: str
    is_self: bool
    start: int
    stop: int
    windows: tuple[tuple[int, str, int, int], ...]


def sequence_key(episode_id: str, window: int) -> str:
    """The example's ``__key__``: a hash of the episode id (so a shard mixes episodes) + window."""
    return f"{prompts.hash64(0, 'key', episode_id):016x}-{window:05d}"


def shard_of(key: str, num_shards: int) -> int:
    """The shard of a key: a stable hash, independent of workers, order and seed."""
    return prompts.hash64(0, "shard", key) % num_shards


def relative_lineage(value: Any, root: str) -> Any:
    """``value`` (a reader's lineage: dicts, lists, strings) with every path under ``root`` made
    relative to it, so published meta and audit lists never carry the builder's own paths."""
    if not root or root == "/":
        return value
    if isinstance(value, str):
        out = value
        for base in sorted({root, fs.local_path(root)}, key=len, reverse=True):
            out = "." if out == base else out.replace(base + "/", "")
        return out
    if isinstance(value, dict):
        return {k: relative_lineage(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [relative_lineage(v, root) for v in value]
    return value

