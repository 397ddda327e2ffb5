"""The Beam DoFns and CombineFns of the job's read, filter and prompt stages (the records that
flow between them are :mod:`.spec`'s, the shard writer is :mod:`.write_stage`).

Only small records cross a shuffle: episode summaries (for the filter and prompt candidates),
window references (where a tokenized window was spilled), prompt references and shard statistics.
The heavy arrays stay in the stage that made them and are written to spill files there (see
:mod:`.spill`).
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from ..errors import TrajcorpusError
from ..schemas.catalog import FilterSettings, TokenizeSettings
from ..schemas.episode import Episode, EpisodeSummary, Rejected
from ..schemas.records import episode_row
from ..semantics.reference import normalized_score
from ..sources.base import Unit
from ..tokenizers.scheme import MODALITY_NAMES
from ..tokenizers.tokenized import TokenizedEpisode
from . import prompts
from .atomic import atomic_open
from .buildcache import cached
from .filter import FilterResult, filter_task
from .sequences import assemble, cut_windows, pack_vl, step_sizes
from .spec import (
    _NS,
    UNATTRIBUTED,
    EpisodeWindows,
    JobSpec,
    PromptRef,
    WindowRef,
    relative_lineage,
    say,
    sequence_key,
    shard_of,
)
from .spill import SpillWriter
from .stats import episode_record
from .write_stage import WriteShard

__all__ = ["JobSpec", "WindowRef", "PromptRef", "UNATTRIBUTED", "MODALITY_NAMES",
           "ReadUnit", "ExtractTexts", "BottomK", "WriteShard", "filter_group", "shard_of",
           "sequence_key", "resolve_prompts", "say", "relative_lineage"]


def _location(ep: Episode) -> str:
    return f"{ep.source.get('uri', '?')} [episode {ep.episode_id}]"


def _text_names(ep: Episode, settings: TokenizeSettings) -> list[str]:
    names = [n for n, k in ep.observation_kinds.items() if k == "text"]
    if settings.text_fields is not None:
        names = [n for n in names if n in settings.text_fields]
    return sorted(names)


class ExtractTexts(beam.DoFn):
    """First pass for datasets with text and no model file: the corpus's distinct texts."""

    def __init__(self, spec: JobSpec):
        self.spec = spec

    def setup(self) -> None:
        self.source = self.spec.open_source()

    def process(self, unit: Unit) -> Iterator[str]:
        yield from cached(self.spec, unit, "texts", "", lambda _: self._texts(unit))

    def _texts(self, unit: Unit) -> Iterator[str]:
        seen: set[str] = set()
        for item in self.source.read_unit_safely(unit):
            if isinstance(item, Rejected):
                continue
            for name in _text_names(item, self.spec.tokenize):
                for s in item.observations[name]:
                    if s and s not in seen:
                        seen.add(s)
                        yield str(s)


def _raw_nbytes(tok: TokenizedEpisode) -> int:
    return int(tok.num_tokens * 9 + tok.patches.nbytes + tok.patch_position.nbytes)


class ReadUnit(beam.DoFn):
    """Read one unit, tokenize each episode, cut windows, spill them; emit small records.

    Main output: one tuple of :class:`.spec.EpisodeWindows` per unit (see :mod:`.bundles`). Tagged: "summary" (EpisodeSummary), "rejected" (task, Rejected JSON),
    "rawstats" (:class:`.stats.EpisodeStats`, one per non-image-caption episode).
    A per-unit episodes/rejected JSONL file is written for the audit, so the driver can stitch
    them in unit order without a global sort.
    """

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.read_ctr = Metrics.counter(_NS, "episodes_read")
        self.rej_ctr = Metrics.counter(_NS, "inputs_rejected")
        self.win_ctr = Metrics.counter(_NS, "windows")
        self.step_ctr = Metrics.counter(_NS, "steps")

    def setup(self) -> None:
        self.source = self.spec.open_source()
        self._tokenizers: dict[str | None, Any] = {}

    def _tokenizer(self, text_model: dict | None):
        path = text_model["uri"] if text_model else None
        if path not in self._tokenizers:
            from ..tokenizers import TextTokenizer
            from ..tokenizers.schemes import scheme_of

            text = TextTokenizer.load(path) if path else None
            self._tokenizers[path] = scheme_of(self.spec.tokenize).tokenizer(self.spec.tokenize,
                                                                             text)
        return self._tokenizers[path]

    def process(self, unit: Unit, text_model: dict | None = None) -> Iterator[Any]:
        """From the build cache when this unit's entry exists (:mod:`.buildcache`)."""
        yield from cached(self.spec, unit, "read", (text_model or {}).get("sha256", ""),
                          lambda spill: self._read(unit, text_model, spill),
                          files=("episodes.jsonl", "rejected.jsonl"))

    def _read(self, unit: Unit, text_model: dict | None, spill: str) -> Iterator[Any]:
        t0 = time.perf_counter()
        spec = self.spec
        tokenizer = self._tokenizer(text_model)
        writer = SpillWriter(spill)
        episodes: list[dict] = []
        rejected: list[Rejected] = []
        vl_buffers: dict[str, list[tuple[Episode, TokenizedEpisode]]] = defaultdict(list)
        bundle: list[EpisodeWindows] = []
        try:
            for item in self.source.read_unit_safely(unit):
                if isinstance(item, Rejected):
                    rejected.append(item)
                    continue
                try:
                    tok = tokenizer.tokenize(item)
                    if item.action_kind == "none":
                        buf = vl_buffers[item.task]
                        buf.append((item, tok))
                        if len(buf) >= spec.sequence.vl_pairs:
                            bundle.append(self._flush_vl(buf, writer))
                    else:
                        windows = self._windows(item, tok, writer)
                        if windows is not None:
                            bundle.append(windows)
                except TrajcorpusError as e:
                    rejected.append(Rejected(spec.config, _location(item), str(e), "episode",
                                             item.task))
                    continue
                row = EpisodeSummary(spec.config, item.task, item.agent, item.episode_id,
                                     tuple(int(o) for o in item.order), float(item.return_),
                                     item.length, item.action_kind == "none")
                episodes.append(episode_row(row))
                self.read_ctr.inc()
                self.step_ctr.inc(row.length)
                yield beam.pvalue.TaggedOutput("summary", row)
                if not row.vl:  # raw-value statistics, kept episodes' combined by the job
                    yield beam.pvalue.TaggedOutput("rawstats", episode_record(item))
            for buf in vl_buffers.values():
                if buf:
                    bundle.append(self._flush_vl(buf, writer))
        except BaseException:
            writer.abort()
            raise
        writer.close()
        n_windows = sum(len(e.windows) for e in bundle)
        if bundle:
            yield tuple(bundle)
        self.win_ctr.inc(n_windows)
        self.rej_ctr.inc(len(rejected))
        for r in rejected:
            yield beam.pvalue.TaggedOutput("rejected", (r.task or UNATTRIBUTED, 1))
        _write_jsonl(spec.unit_file(unit, "episodes.jsonl"), episodes)
        _write_jsonl(spec.unit_file(unit, "rejected.jsonl"),
                     [{"location": relative_lineage(r.location, spec.lineage_root),
                       "reason": relative_lineage(r.reason, spec.lineage_root), "kind": r.kind,
                       "task": r.task or UNATTRIBUTED} for r in rejected])
        say(spec, f"read unit {unit.index + 1}/{spec.num_units} {unit.key}: {len(episodes)} "
            f"episodes, {len(rejected)} rejected, {n_windows} windows "
            f"({time.perf_counter() - t0:.1f}s)")

    def _windows(self, ep: Episode, tok: TokenizedEpisode, writer: SpillWriter
                 ) -> EpisodeWindows | None:
        seq = self.spec.sequence
        seed = self.spec.seed
        sizes = step_sizes(tok)
        budget = seq.prompt_tokens if seq.prompt_probability > 0 else 0
        windows = cut_windows(
            sizes, seq.length, budget,
            lambda w: prompts.wants_prompt(seed, ep.episode_id, w, seq.prompt_probability),
            ep.episode_id)
        if not windows:
            return None
        # per episode, not per window: the fixed meta fields (JSON once), each window's largest
        # timestep (one reduceat), the size estimate's compression ratio (one window)
        fixed = json.dumps({
            "dataset": self.spec.config, "task": ep.task, "agent": ep.agent,
            "episode_id": ep.episode_id,
            "lineage": relative_lineage(ep.source, self.spec.lineage_root),
            "normalized_score": normalized_score(self.spec.references.get(ep.task), ep.return_)},
            sort_keys=True)[:-1]
        max_step = np.maximum.reduceat(sizes, [w.start for w in windows])
        return_ = float(ep.return_)
        ratio = None
        rows = []
        for w, top in zip(windows, max_step.tolist(), strict=True):
            part = tok.span(w.start, w.stop)
            if ratio is None:
                ratio = self._compression_ratio(part)
            offset, length = writer.write(part)
            raw = _raw_nbytes(part)
            if w.wants_prompt:
                raw += int(budget * raw / max(part.num_tokens, 1))
            rows.append((w.index, w.start, w.stop - 1, part.num_tokens, top, w.wants_prompt,
                         offset, length, int(math.ceil(raw * ratio)) + 256))
        return EpisodeWindows(ep.task, ep.agent, ep.episode_id, return_, False, writer.uri, fixed,
                              tuple(rows))

    def _flush_vl(self, buf: list[tuple[Episode, TokenizedEpisode]], writer: SpillWriter
                  ) -> EpisodeWindows:
        records = list(buf)
        buf.clear()
        packed, cropped = pack_vl([t for _, t in records], self.spec.sequence.length)
        first = records[0][0]
        offset, length = writer.write(packed)
        meta = {"dataset": self.spec.config, "task": first.task, "agent": first.agent,
                "episode_id": first.episode_id, "episode_ids": [e.episode_id for e, _ in records],
                "window": 0, "first_step": 0, "last_step": 0, "cropped": cropped,
                "lineage": [relative_lineage(e.source, self.spec.lineage_root)
                            for e, _ in records]}
        est = int(math.ceil(_raw_nbytes(packed) * self._compression_ratio(packed))) + 256
        return EpisodeWindows(first.task, first.agent, first.episode_id, 0.0, True, writer.uri,
                              json.dumps(meta, sort_keys=True),
                              ((0, 0, 0, packed.num_tokens, packed.num_tokens, False, offset,
                                length, est),))

    def _compression_ratio(self, part: TokenizedEpisode) -> float:
        """Estimated encoded bytes per raw byte, from the shards module's own estimator."""
        from ..shards.example import example_nbytes

        arrays = assemble(part, None, max(self.spec.sequence.length, part.num_tokens))
        ex = {"__key__": "estimate", **arrays.as_dict(), "meta": "{}"}
        return example_nbytes(ex, self.spec.formats[0]) / max(_raw_nbytes(part), 1)


def _write_jsonl(uri: str, rows: Iterable[dict]) -> None:
    with atomic_open(uri) as f:
        for row in rows:
            f.write((json.dumps(row, sort_keys=True) + "\n").encode("utf-8"))


# --- filter and prompt candidates ------------------------------------------------------------

def filter_group(spec: JobSpec, task: str, rows: Iterable[EpisodeSummary]
                 ) -> tuple[str, FilterResult]:
    """SPEC section 3 on one task's summaries; image-caption tasks are never filtered."""
    rows = list(rows)
    settings = spec.filter
    if any(r.vl for r in rows):
        settings = FilterSettings(enabled=False)
    result = filter_task(task, rows, settings)
    if result.rule == "top_fraction":
        say(spec, f"filter {task}: top {result.top_fraction:.4g} of N={result.episodes_total} by "
            f"return: {result.kept} kept (threshold {result.threshold}), {result.filtered} filtered")
    elif result.window is None:
        say(spec, f"filter {task}: off, {result.kept} kept")
    else:
        say(spec, f"filter {task}: N={result.episodes_total} W={result.window} best window at "
            f"{result.best_window_start}, expert return {result.expert_return:.4g}, threshold "
            f"{result.threshold:.4g}: {result.kept} kept, {result.filtered} filtered")
    Metrics.counter(_NS, "episodes_kept").inc(result.kept)
    Metrics.counter(_NS, "episodes_filtered").inc(result.filtered)
    return task, result


class BottomK(beam.CombineFn):
    """Per (task, agent): the k kept episode ids with the smallest keyed hash."""

    def __init__(self, seed: int, k: int = prompts.CANDIDATES_PER_AGENT):
        self.seed, self.k = seed, k

    def create_accumulator(self) -> list[str]:
        return []

    def add_input(self, acc: list[str], eid: str) -> list[str]:
        return prompts.merge_bottom_k(self.seed, [acc, [eid]], self.k)

    def merge_accumulators(self, accs: Iterable[list[str]]) -> list[str]:
        return prompts.merge_bottom_k(self.seed, accs, self.k)

    def extract_output(self, acc: list[str]) -> list[str]:
        return sorted(acc)


def resolve_prompts(spec: JobSpec, element: tuple[str, dict]
                    ) -> Iterator[tuple[str, PromptRef | None]]:
    """Join one prompt episode's windows with the sequences that asked for it."""
    eid, groups = element
    # (first_step, last_step, max_step_tokens, uri, offset, length), from each bundle's part
    windows = sorted(w for part in groups["windows"] for w in part)
    if not windows:
        return
    num_steps = windows[-1][1] + 1
    max_tokens = max(w[2] for w in windows)
    budget = spec.sequence.prompt_tokens
    for key, mode, u, is_self in (r for part in groups["requests"] for r in part):
        span = prompts.prompt_steps(mode, u, num_steps, max_tokens, budget)
        if span is None:
            yield key, None
            continue
        start, stop = span
        cover = tuple((w[0], w[3], w[4], w[5]) for w in windows if w[0] < stop and w[1] >= start)
        yield key, PromptRef(eid, mode, is_self, start, stop, cover)




