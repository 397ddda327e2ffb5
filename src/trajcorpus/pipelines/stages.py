"""The Beam DoFns and CombineFns of the job, and the small records that flow between them.

Only small records cross a shuffle: episode summaries (for the filter and prompt candidates),
window references (where a tokenized window was spilled), prompt references and shard statistics.
The heavy arrays stay in the stage that made them and are written to spill files there (see
:mod:`.spill`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from .. import fs
from ..errors import TrajcorpusError
from ..schemas.catalog import FilterSettings, SequenceSettings, TokenizeSettings
from ..schemas.episode import Episode, EpisodeSummary, Rejected
from ..semantics.reference import normalized_score
from ..shards.layout import MIN_SHARDS
from ..sources.base import Source, Unit
from ..tokenizers.scheme import MODALITY_NAMES
from ..tokenizers.schemes import scheme_of
from ..tokenizers.tokenized import TokenizedEpisode
from . import prompts
from .atomic import atomic_open
from .filter import FilterResult, filter_task
from .sequences import assemble, concat_tokenized, cut_windows, pack_vl, step_sizes
from .spill import SpillReader, SpillWriter
from .stats import episode_record

__all__ = ["JobSpec", "EpisodeRow", "WindowRef", "PromptRef", "UNATTRIBUTED", "MODALITY_NAMES",
           "ReadUnit", "ExtractTexts", "BottomK", "WriteShard", "filter_group", "shard_of",
           "sequence_key", "resolve_prompts", "make_request", "say", "relative_lineage"]

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


class EpisodeRow(NamedTuple):
    """A read episode's summary (what the filter, the candidates and the audit need)."""

    task: str
    agent: str
    episode_id: str
    order: tuple[int, ...]
    return_: float
    length: int
    vl: bool  # an image-caption record (never filtered by return, never prompted)

    def summary(self, dataset: str) -> EpisodeSummary:
        return EpisodeSummary(dataset, self.task, self.agent, self.episode_id, self.order,
                              self.return_, self.length)


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


def _location(ep: Episode) -> str:
    return f"{ep.source.get('uri', '?')} [episode {ep.episode_id}]"


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

    Main output: WindowRef. Tagged: "summary" (EpisodeRow), "rejected" (task, Rejected JSON),
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
        t0 = time.perf_counter()
        spec = self.spec
        tokenizer = self._tokenizer(text_model)
        writer = SpillWriter(spec.unit_file(unit, "spill"))
        episodes: list[dict] = []
        rejected: list[Rejected] = []
        vl_buffers: dict[str, list[tuple[Episode, TokenizedEpisode]]] = defaultdict(list)
        n_windows = 0
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
                        refs = self._flush_vl(buf, writer) if len(buf) >= \
                            spec.sequence.vl_pairs else []
                    else:
                        refs = list(self._windows(item, tok, writer))
                except TrajcorpusError as e:
                    rejected.append(Rejected(spec.config, _location(item), str(e), "episode",
                                             item.task))
                    continue
                row = EpisodeRow(item.task, item.agent, item.episode_id,
                                 tuple(int(o) for o in item.order), float(item.return_),
                                 item.length, item.action_kind == "none")
                episodes.append({"task": row.task, "agent": row.agent,
                                 "episode_id": row.episode_id, "order": list(row.order),
                                 "return": row.return_, "length": row.length})
                self.read_ctr.inc()
                self.step_ctr.inc(row.length)
                yield beam.pvalue.TaggedOutput("summary", row)
                if not row.vl:  # raw-value statistics, kept episodes' combined by the job
                    yield beam.pvalue.TaggedOutput("rawstats", episode_record(item))
                n_windows += len(refs)
                yield from refs
            for buf in vl_buffers.values():
                if buf:
                    refs = self._flush_vl(buf, writer)
                    n_windows += len(refs)
                    yield from refs
        except BaseException:
            writer.abort()
            raise
        writer.close()
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
                 ) -> Iterator[WindowRef]:
        seq = self.spec.sequence
        seed = self.spec.seed
        sizes = step_sizes(tok)
        budget = seq.prompt_tokens if seq.prompt_probability > 0 else 0
        windows = cut_windows(
            sizes, seq.length, budget,
            lambda w: prompts.wants_prompt(seed, ep.episode_id, w, seq.prompt_probability),
            ep.episode_id)
        ratio = None
        for w in windows:
            part = tok.span(w.start, w.stop)
            if ratio is None:
                ratio = self._compression_ratio(part)
            offset, length = writer.write(part)
            raw = _raw_nbytes(part)
            if w.wants_prompt:
                raw += int(budget * raw / max(part.num_tokens, 1))
            meta = {"dataset": self.spec.config, "task": ep.task, "agent": ep.agent,
                    "episode_id": ep.episode_id, "window": w.index, "first_step": w.start,
                    "last_step": w.stop - 1,
                    "lineage": relative_lineage(ep.source, self.spec.lineage_root),
                    "normalized_score": normalized_score(self.spec.references.get(ep.task),
                                                         ep.return_)}
            yield WindowRef(
                sequence_key(ep.episode_id, w.index), ep.task, ep.agent, ep.episode_id,
                float(ep.return_), False, w.index, w.start, w.stop - 1, part.num_tokens,
                int(sizes[w.start:w.stop].max()), w.wants_prompt, writer.uri, offset, length,
                int(math.ceil(raw * ratio)) + 256, json.dumps(meta, sort_keys=True))

    def _flush_vl(self, buf: list[tuple[Episode, TokenizedEpisode]], writer: SpillWriter
                  ) -> list[WindowRef]:
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
        return [WindowRef(sequence_key(first.episode_id, 0), first.task, first.agent,
                          first.episode_id, 0.0, True, 0, 0, 0, packed.num_tokens,
                          packed.num_tokens, False, writer.uri, offset, length, est,
                          json.dumps(meta, sort_keys=True))]

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

def filter_group(spec: JobSpec, task: str, rows: Iterable[EpisodeRow]) -> tuple[str, FilterResult]:
    """SPEC section 3 on one task's summaries; image-caption tasks are never filtered."""
    rows = list(rows)
    settings = spec.filter
    if any(r.vl for r in rows):
        settings = FilterSettings(enabled=False)
    result = filter_task(task, (r.summary(spec.config) for r in rows), settings)
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


def make_request(spec: JobSpec, ref: WindowRef, candidates: dict
                 ) -> tuple[str, tuple[str, str, float, bool]]:
    """(prompt episode id, (sequence key, mode, start draw, is_self)) for a prompted window."""
    cands = candidates.get((ref.task, ref.agent), [ref.episode_id])
    c = prompts.choose_prompt(spec.seed, ref.episode_id, ref.window, cands,
                              spec.sequence.prompt_end_share)
    return c.episode_id, (ref.key, c.mode, c.u, c.is_self)


def resolve_prompts(spec: JobSpec, element: tuple[str, dict]
                    ) -> Iterator[tuple[str, PromptRef | None]]:
    """Join one prompt episode's windows with the sequences that asked for it."""
    eid, groups = element
    windows = sorted(groups["windows"])  # (first_step, last_step, max_step_tokens, uri, off, len)
    if not windows:
        return
    num_steps = windows[-1][1] + 1
    max_tokens = max(w[2] for w in windows)
    budget = spec.sequence.prompt_tokens
    for key, mode, u, is_self in groups["requests"]:
        span = prompts.prompt_steps(mode, u, num_steps, max_tokens, budget)
        if span is None:
            yield key, None
            continue
        start, stop = span
        cover = tuple((w[0], w[3], w[4], w[5]) for w in windows if w[0] < stop and w[1] >= start)
        yield key, PromptRef(eid, mode, is_self, start, stop, cover)


# --- shard writing -----------------------------------------------------------------------------

class WriteShard(beam.DoFn):
    """Write shard ``index`` of ``n``: its sequences sorted by key, prompts attached, in every
    requested format; a shard with no sequence is not written. Emits the ShardFile records (main) and per-task statistics ("stats")."""

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.seq_ctr = Metrics.counter(_NS, "sequences")
        self.prompt_ctr = Metrics.counter(_NS, "prompted_sequences")
        self.bytes_ctr = Metrics.counter(_NS, "output_bytes")

    def setup(self) -> None:
        self.reader = SpillReader()

    def teardown(self) -> None:
        self.reader.close()

    def process(self, element: tuple[int, dict], num_shards: int) -> Iterator[Any]:
        from ..shards.index import IndexTap
        from ..shards.layout import shard_relpath
        from ..shards.writer import write_shard

        t0 = time.perf_counter()
        index, groups = element
        refs: list[WindowRef] = sorted(groups["seq"], key=lambda r: r.key)
        if not refs:  # no sequence hashed here: no empty file (finalize closes the numbering)
            return
        for a, b in zip(refs, refs[1:], strict=False):
            if a.key == b.key:
                raise TrajcorpusError(self.spec.config, f"duplicate sequence key {a.key} "
                                      f"({a.episode_id} window {a.window})")
        prompt_of = dict(groups["prompt"])
        stats: dict[str, dict] = {}
        for i, fmt in enumerate(self.spec.formats):
            relpath = shard_relpath(self.spec.config, self.spec.split, fmt, index, num_shards)
            examples = self._examples(refs, prompt_of, stats if i == 0 else None)
            tap = IndexTap(self.spec.split, index)  # every format holds the same rows
            # staged under the run's temporary folder: finalize() moves every shard into place
            # just before the manifest, so a failed run leaves no file under a shard name
            shard = write_shard(tap(examples), self.spec.staging, relpath, fmt)
            if i == 0:
                tap.write(self.spec.staging, self.spec.config)
            record = _shard_record(shard)
            self.bytes_ctr.inc(record["bytes"])
            yield record
            say(self.spec, f"wrote {relpath}: {record['examples']} examples, "
                f"{record['bytes'] / 1e6:.1f} MB ({time.perf_counter() - t0:.1f}s)")
        for task, s in stats.items():
            yield beam.pvalue.TaggedOutput("stats", (task, s))

    def _prompt(self, ref: PromptRef | None) -> TokenizedEpisode | None:
        if ref is None:
            return None
        parts = [self.reader.read(uri, off, n, cache=True) for _, uri, off, n in ref.windows]
        base = ref.windows[0][0]
        return concat_tokenized(parts).span(ref.start - base, ref.stop - base)

    def _examples(self, refs: list[WindowRef], prompt_of: dict, stats: dict | None
                  ) -> Iterator[dict]:
        """The shard's examples in key order (write_shard checks each against SPEC 6)."""
        length = self.spec.sequence.length
        for r in refs:
            window = self.reader.read(r.uri, r.offset, r.length)
            pref = prompt_of.get(r.key)
            arrays = assemble(window, self._prompt(pref), length, where=f"sequence {r.key}")
            meta = json.loads(r.meta)
            meta["prompt"] = None if pref is None else {
                "episode_id": pref.episode_id, "mode": pref.mode, "first_step": pref.start,
                "last_step": pref.stop - 1, "self": pref.is_self}
            ex = {"__key__": r.key, **arrays.as_dict(),
                  "meta": json.dumps(meta, sort_keys=True, separators=(",", ":"))}
            if stats is not None:
                names = scheme_of(self.spec.tokenize).modality_names
                s = stats.setdefault(r.task, {"sequences": 0, "prompted_sequences": 0,
                                              "tokens": [0] * len(names)})
                s["sequences"] += 1
                s["prompted_sequences"] += pref is not None
                counts = np.bincount(arrays.modality, minlength=len(names))
                s["tokens"] = [a + int(b) for a, b in zip(s["tokens"], counts, strict=True)]
                self.seq_ctr.inc()
                self.prompt_ctr.inc(pref is not None)
            yield ex


def _shard_record(shard: Any) -> dict:
    if dataclasses.is_dataclass(shard):
        return dataclasses.asdict(shard)
    return dict(shard)
