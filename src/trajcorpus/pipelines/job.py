"""The Beam job (SPEC section 1): read -> filter -> tokenize -> sequences -> shards -> manifest.

Graph (only small records cross a shuffle; see :mod:`.stages`)::

  units --Reshuffle--> ReadUnit ---- one bundle of windows (refs to spilled tokens) per unit --+
     |                    |-- summaries --GroupByKey(task)--> filter --> thresholds ---|(side)
     |                    |-- summaries(kept) --CombinePerKey(bottom-k)--> candidates -|(side)
     |                    `-- rejected counts                                          |
     `--(text datasets) ExtractTexts --> distinct --> train SentencePiece --> (side) ReadUnit
  kept episodes' windows --> prompt requests --CoGroupByKey(prompt episode id)--> prompt refs
  kept episodes' windows + prompt refs --CoGroupByKey(shard = hash(key) % n)--> WriteShard

Windows travel as bundles (one per unit, split per shard before the last shuffle; see
:mod:`.bundles`): Beam's cost is per element, and a corpus has tens of thousands of windows.

The driver then stitches the audit files, checks read = rejected + filtered + kept, writes the
manifest (last) and the dataset card.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, TestOptions

from .. import fs
from ..errors import TrajcorpusError
from ..schemas.catalog import DatasetEntry, load_catalog
from ..semantics import task_references
from ..shards.codecs import format_choices, formats_for
from ..shards.layout import plan_num_shards
from ..sources.base import Unit
from ..tokenizers.schemes import scheme_of
from . import audit as audit_mod
from .buildcache import cache_root, plan_cache
from .bundles import (
    candidate_windows,
    est_bytes,
    group_by_shard,
    keep_episodes,
    kept,
    prompt_requests,
    split_by_shard,
)
from .finalize import RESULT_FILE, JobResult, finalize
from .inputs import TMP_DIR, check_output, lineage_root, reader_options
from .runners import (
    DEFAULT_MIN_SHARDS,
    DEFAULT_SHARD_BYTES,
    TrajcorpusOptions,
    graph_names,
    limit_malloc_arenas,
    make_runner,
    pipeline_options,
    quiet_beam_logs,
    root_cause,
)
from .stages import (
    MODALITY_NAMES,
    BottomK,
    ExtractTexts,
    JobSpec,
    ReadUnit,
    WriteShard,
    filter_group,
    resolve_prompts,
    say,
)
from .stats import CombineRawStats
from .textmodel import install_text_model, probe_has_text, train_text_model

__all__ = ["DEFAULT_SHARD_BYTES", "DEFAULT_MIN_SHARDS", "JobResult", "TrajcorpusOptions",
           "run_job", "run_dataset", "build_pipeline", "finalize", "make_spec",
           "pipeline_options", "limit_malloc_arenas", "root_cause"]


# --- planning ----------------------------------------------------------------------------------

def make_spec(entry: DatasetEntry, uri: str, output: str, seed: int, fmt: str, num_units: int,
              shard_bytes: int, progress: bool, min_shards: int = DEFAULT_MIN_SHARDS,
              options: Mapping[str, Any] | None = None, given: str | None = None) -> JobSpec:
    """The workers' settings. ``options``: the reader options (default: the entry's);
    ``given``: the input as the user wrote it, recorded once in the manifest."""
    if fmt not in format_choices():
        raise TrajcorpusError("--format", f"expected one of {format_choices()}, got {fmt!r}")
    if shard_bytes <= 0:
        raise TrajcorpusError("--shard_bytes", f"must be positive, got {shard_bytes}")
    if min_shards <= 0:
        raise TrajcorpusError("--min_shards", f"must be positive, got {min_shards}")
    return JobSpec(
        config=entry.id, kind=entry.kind, uri=uri,
        options=dict(entry.options if options is None else options),
        task_template=entry.task, agent_template=entry.agent, filter=entry.filter,
        tokenize=entry.tokenize, sequence=scheme_of(entry.tokenize).sequence_settings(
            entry.sequence), seed=int(seed), formats=formats_for(fmt),
        output=output, tmp=fs.join(output, TMP_DIR, entry.id), shard_bytes=int(shard_bytes),
        min_shards=int(min_shards), num_units=num_units, progress=progress,
        entry=entry.model_dump(mode="json"), input=given or uri)


# --- the graph ---------------------------------------------------------------------------------

def build_pipeline(p: beam.Pipeline, spec: JobSpec, units: Sequence[Unit],
                   text_model: dict | None, train_text: bool) -> None:
    """Add the whole job to ``p``; the last step writes the small results file for the driver."""
    units_pc = p | "Units" >> beam.Create(list(units)) | "SpreadUnits" >> beam.Reshuffle()

    text_side: Any = text_model
    if train_text:
        text_side = beam.pvalue.AsSingleton(
            units_pc
            | "ExtractTexts" >> beam.ParDo(ExtractTexts(spec))
            | "DistinctTexts" >> beam.Distinct()
            | "AllTexts" >> beam.combiners.ToList()
            | "TrainTextModel" >> beam.Map(lambda texts: train_text_model(spec, texts)))

    read = units_pc | "ReadTokenizeSpill" >> beam.ParDo(ReadUnit(spec), text_side).with_outputs(
        "summary", "rejected", "rawstats", main="windows")
    windows, summaries, rejected = read.windows, read.summary, read.rejected

    filters = (summaries
               | "ByTask" >> beam.Map(lambda r: (r.task, r))
               | "GroupByTask" >> beam.GroupByKey()
               | "Filter" >> beam.MapTuple(lambda task, rows: filter_group(spec, task, rows)))
    thresholds = beam.pvalue.AsDict(
        filters | "Thresholds" >> beam.MapTuple(lambda task, f: (task, f.cut)))

    candidates = beam.pvalue.AsDict(
        summaries
        | "KeptControl" >> beam.Filter(lambda r, thr: not r.vl and kept(r, thr), thresholds)
        | "ByAgent" >> beam.Map(lambda r: ((r.task, r.agent), r.episode_id))
        | "PromptCandidates" >> beam.CombinePerKey(BottomK(spec.seed)))

    # one bundle per unit from here on (pipelines/bundles.py): whole episodes are kept or not
    kept_windows = windows | "KeepWindows" >> beam.Map(keep_episodes, thresholds)

    requests = kept_windows | "ChoosePrompt" >> beam.FlatMap(
        lambda b, c: prompt_requests(spec, b, c), candidates)
    cand_windows = kept_windows | "CandidateWindows" >> beam.FlatMap(candidate_windows,
                                                                     candidates)

    n_pc = (kept_windows
            | "EstBytes" >> beam.Map(est_bytes)
            | "TotalBytes" >> beam.CombineGlobally(sum)
            | "NumShards" >> beam.Map(
                lambda b: plan_num_shards(b, spec.shard_bytes, spec.min_shards)))
    n_side = beam.pvalue.AsSingleton(n_pc)
    prompt_refs = ({"requests": requests, "windows": cand_windows}
                   | "JoinPrompts" >> beam.CoGroupByKey()
                   | "ResolvePrompts" >> beam.FlatMap(
                       lambda e, n: group_by_shard(resolve_prompts(spec, e), n), n_side))
    by_shard = {
        "seq": kept_windows | "SeqByShard" >> beam.FlatMap(split_by_shard, n_side),
        "prompt": prompt_refs,
        "slot": n_pc | "ShardSlots" >> beam.FlatMap(lambda n: [(i, None) for i in range(n)]),
    }
    written = (by_shard
               | "GroupByShard" >> beam.CoGroupByKey()
               | "WriteShards" >> beam.ParDo(WriteShard(spec), n_side).with_outputs(
                   "stats", main="files"))

    stats = (written.stats
             | "StatsByTask" >> beam.CombinePerKey(_merge_stats))
    raw_stats = (read.rawstats  # raw-value statistics of the kept episodes, per task and config
                 | "KeptRawStats" >> beam.Filter(kept, thresholds)
                 | "RawStatsKey" >> beam.Map(lambda r: (r.task, r.stats))
                 | "RawStatsByTask" >> beam.CombinePerKey(CombineRawStats(spec.config)))
    raw_config = (raw_stats | "RawStatsValues" >> beam.Values()
                  | "RawStatsConfig" >> beam.CombineGlobally(CombineRawStats(spec.config)))
    pieces = [
        filters | "FilterPiece" >> beam.MapTuple(lambda t, f: ("filter", t, f.to_json())),
        summaries | "EpisodeOnes" >> beam.Map(lambda r: (r.task, 1))
        | "EpisodeCount" >> beam.CombinePerKey(sum)
        | "EpisodesPiece" >> beam.MapTuple(lambda t, n: ("episodes", t, n)),
        rejected | "RejectedCount" >> beam.CombinePerKey(sum)
        | "RejectedPiece" >> beam.MapTuple(lambda t, n: ("rejected", t, n)),
        stats | "StatsPiece" >> beam.MapTuple(lambda t, s: ("stats", t, s)),
        written.files | "FilePiece" >> beam.Map(lambda f: ("file", f["path"], f)),
        n_pc | "ShardsPiece" >> beam.Map(lambda n: ("num_shards", "", n)),
        raw_stats | "RawStatsPiece" >> beam.MapTuple(lambda t, s: ("raw_stats", t, _raw(s))),
        raw_config | "RawConfigPiece" >> beam.Map(lambda s: ("raw_stats_config", "", _raw(s))),
    ]
    if train_text:
        pieces.append(p | "TextModelSeed" >> beam.Create([None])
                      | "TextModelPiece" >> beam.Map(lambda _, m: ("text_model", "", m),
                                                     text_side))
    (pieces
     | "AllPieces" >> beam.Flatten()
     | "CollectPieces" >> beam.combiners.ToList()
     | "WriteResults" >> beam.Map(lambda items: _write_results(spec, items)))


def _merge_stats(items) -> dict:
    out = {"sequences": 0, "prompted_sequences": 0, "tokens": [0] * len(MODALITY_NAMES)}
    for s in items:
        out["sequences"] += s["sequences"]
        out["prompted_sequences"] += s["prompted_sequences"]
        out["tokens"] = [a + b for a, b in itertools.zip_longest(  # MGDT counts 9 modalities
            out["tokens"], s["tokens"], fillvalue=0)]
    return out


def _raw(s: Any) -> dict:
    return {"statistics": s.summary(), "schema": s.schema_json(), "state": s.to_state()}


def _write_results(spec: JobSpec, items: list) -> None:
    data: dict[str, Any] = {"filter": {}, "episodes": {}, "rejected": {}, "stats": {},
                            "files": [], "num_shards": None, "text_model": None,
                            "raw_stats": {}, "raw_stats_config": None}
    for kind, name, value in items:
        if kind in ("num_shards", "text_model", "raw_stats_config"):
            data[kind] = value
        elif kind == "file":
            data["files"].append(value)
        else:
            data[kind][name] = value
    data["files"].sort(key=lambda f: f["path"])
    audit_mod.write_json(fs.join(spec.tmp, RESULT_FILE), data)


# --- driver ------------------------------------------------------------------------------------

def run_job(*, catalog: str, dataset: str, output: str, input_uri: str | None = None,
            options: Mapping[str, Any] | None = None, seed: int = 0, fmt: str = "both",
            runner: str = "DirectRunner", beam_args: Sequence[str] = (), progress: bool = True,
            overwrite: bool = True) -> JobResult:
    """Run the job for one catalog dataset into ``output`` and return its summary.

    ``options`` override the catalog entry's reader options. With ``overwrite`` (the library
    default) a rerun replaces this config's files only; ``trajcorpus run`` passes
    ``overwrite=False`` unless ``--overwrite`` is given (see :func:`check_output`).
    """
    return run_dataset(catalog=catalog, dataset=dataset, output=output, input_uri=input_uri,
                       options=options, seed=seed, fmt=fmt, runner=runner, beam_args=beam_args,
                       progress=progress, overwrite=overwrite)


def run_dataset(*, catalog: str, dataset: str, output: str, input_uri: str | None = None,
                options: Mapping[str, Any] | None = None, seed: int = 0, fmt: str = "both",
                runner: str = "DirectRunner", beam_args: Sequence[str] = (),
                progress: bool = True, card: bool = True, overwrite: bool = True) -> JobResult:
    """:func:`run_job` with ``card=False`` to skip the dataset card (the demo writes it once)."""
    t0 = time.time()
    cat = load_catalog(catalog)
    entry = cat.get(dataset)
    given = input_uri or entry.uri  # the input as the user wrote it (for the manifest)
    uri = input_uri or cat.uri_of(entry)
    if input_uri is None and fs.placeholder_reason(uri):
        raise TrajcorpusError(uri, f"{fs.placeholder_reason(uri)}: catalog entry {entry.id!r} "
                              "names a copy you make yourself (its description says how); "
                              "pass --input URI")
    fs.check_input(uri)
    read_options = reader_options(entry, uri, input_uri is not None, options)
    options_ = pipeline_options(runner, beam_args)  # the flags, checked before any input is read
    job_options = options_.view_as(TrajcorpusOptions)
    dry_run = bool(options_.view_as(TestOptions).dry_run)
    output = output.rstrip("/") if len(output) > 1 else output
    if runner == "DataflowRunner" and fs.is_local(output) and not dry_run:
        raise TrajcorpusError("--output", "DataflowRunner workers cannot write to a local "
                              f"path ({output}); use a gs:// folder")
    quiet_beam_logs()
    source_spec = make_spec(entry, uri, output, seed, fmt, 0, job_options.shard_bytes, progress,
                            job_options.min_shards, options=read_options, given=given)
    if not dry_run:  # after the settings are known to be valid
        check_output(output, entry.id, overwrite)
    try:
        source = source_spec.open_source()
        units = source.planned_units()
        rewardless = source.rewardless()
    except TrajcorpusError:
        raise
    except Exception as e:
        reason = fs.network_error(e)
        if reason is None:
            raise
        raise TrajcorpusError(uri, reason) from e
    if not units:
        raise TrajcorpusError(uri, "the source has no units of work")
    if rewardless and entry.filter.enabled:  # a reader that knows its episodes have no rewards
        raise TrajcorpusError(entry.id, f"{rewardless}: the best-return filter cannot rank its "
                              "episodes; set filter: {enabled: false} in its catalog entry")
    options_ = pipeline_options(runner, beam_args, len(units))  # worker count by the units
    spec = dataclasses.replace(source_spec, num_units=len(units),
                               references=task_references(source_spec.entry, entry.kind, units),
                               lineage_root=lineage_root(uri))
    if not dry_run:  # the build cache's keys (pipelines/buildcache.py)
        spec = dataclasses.replace(spec, cache=plan_cache(
            spec, source, units, cache_root(output, job_options.cache_dir)))
    say(spec, f"{len(units)} unit(s) of work from {uri}")

    text_model: dict | None = None
    train_text = False
    if entry.tokenize.text_model.path:
        src = cat.resolve(entry.tokenize.text_model.path)
        text_model = {"uri": src} if dry_run else install_text_model(spec, src)
    elif probe_has_text(spec, units):
        train_text = True
    if not dry_run:
        fs.remove(spec.tmp)
        fs.makedirs(fs.join(spec.tmp, "units"))

    p = beam.Pipeline(runner=make_runner(runner, None if dry_run else spec), options=options_)
    build_pipeline(p, spec, units, text_model, train_text)
    mode = options_.view_as(DirectOptions)
    say(spec, f"running on {runner}" + (
        f" ({mode.direct_num_workers} worker(s), {mode.direct_running_mode})"
        if runner == "DirectRunner" else ""))
    try:
        result = p.run()
        result.wait_until_finish()
    except TrajcorpusError:
        raise
    except Exception as e:  # a worker's error arrives wrapped in the runner's own
        raise TrajcorpusError(f"job {spec.config}", f"pipeline failed: {root_cause(e)}") from e
    if dry_run:
        return JobResult(spec.config, output, {}, [], text_model, time.time() - t0, dry_run=True,
                         graph=graph_names(result))
    job = finalize(spec, units, time.time() - t0, card=card)
    if progress:
        print(job.summary(), file=sys.stderr, flush=True)
    return job


