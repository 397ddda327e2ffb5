"""The Beam job (SPEC section 1): read -> filter -> tokenize -> sequences -> shards -> manifest.

Graph (only small records cross a shuffle; see :mod:`.stages`)::

  units --Reshuffle--> ReadUnit ---- windows (refs to spilled tokens) ----------------+
     |                    |-- summaries --GroupByKey(task)--> filter --> thresholds ---|(side)
     |                    |-- summaries(kept) --CombinePerKey(bottom-k)--> candidates -|(side)
     |                    `-- rejected counts                                          |
     `--(text datasets) ExtractTexts --> distinct --> train SentencePiece --> (side) ReadUnit
  kept windows --> prompt requests --CoGroupByKey(prompt episode id)--> prompt refs
  kept windows + prompt refs --CoGroupByKey(shard = hash(key) % n)--> WriteShard

The driver then stitches the audit files, checks read = rejected + filtered + kept, writes the
manifest (last) and the dataset card.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    TestOptions,
)

from .. import __version__, fs
from ..errors import TrajcorpusError
from ..schemas.catalog import DatasetEntry, load_catalog
from ..schemas.episode import Rejected
from ..semantics import task_references
from ..shards.layout import MIN_SHARD_BYTES, MIN_SHARDS, plan_num_shards
from ..sources.base import Unit
from . import audit as audit_mod
from .filter import FilterResult, is_kept
from .inputs import TMP_DIR, check_output, lineage_root, reader_options
from .stages import (
    MODALITY_NAMES,
    BottomK,
    ExtractTexts,
    JobSpec,
    ReadUnit,
    WriteShard,
    filter_group,
    make_request,
    resolve_prompts,
    say,
    shard_of,
)
from .stats import CombineRawStats
from .trainer_info import trainer_info

__all__ = ["DEFAULT_SHARD_BYTES", "DEFAULT_MIN_SHARDS", "FORMATS", "JobResult",
           "TrajcorpusOptions", "run_job",
           "run_dataset", "build_pipeline", "finalize", "make_spec", "pipeline_options"]

DEFAULT_SHARD_BYTES = 256 * 1024 * 1024
DEFAULT_MIN_SHARDS = MIN_SHARDS
FORMATS = {"webdataset": ("webdataset",), "parquet": ("parquet",),
           "both": ("parquet", "webdataset")}
RESULT_FILE = "result.json"


class TrajcorpusOptions(PipelineOptions):
    """Job settings that are not catalog settings (pass them like Beam flags)."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument("--shard_bytes", type=int, default=DEFAULT_SHARD_BYTES,
                            help="target encoded bytes per shard (default 256 MiB)")
        parser.add_argument("--min_shards", type=int, default=DEFAULT_MIN_SHARDS,
                            help="at least this many shards per split while each keeps "
                            f"{MIN_SHARD_BYTES >> 20} MiB (default {DEFAULT_MIN_SHARDS}; 1 = by --shard_bytes only)")


@dataclasses.dataclass
class JobResult:
    """What the run produced (also printed as the final summary)."""

    config: str
    output: str
    audit: dict[str, dict]
    files: list[dict]
    text_model: dict | None
    seconds: float
    dry_run: bool = False
    graph: list[str] = dataclasses.field(default_factory=list)  # transform names (dry runs)

    def total(self, key: str) -> int:
        return sum(int(a[key]) for a in self.audit.values())

    def tokens(self) -> dict[str, int]:
        return {m: sum(a["tokens"][m] for a in self.audit.values()) for m in MODALITY_NAMES}

    def summary(self) -> str:
        if self.dry_run:
            return f"{self.config}: dry run, job graph built, nothing executed"
        size = sum(f["bytes"] for f in self.files)
        toks = ", ".join(f"{m} {n:,}" for m, n in self.tokens().items() if n)
        return "\n".join([
            f"{self.config}: done in {self.seconds:.1f}s -> {self.output}",
            f"  episodes: read {self.total('read'):,} (kept {self.total('kept'):,}, filtered "
            f"{self.total('filtered'):,}, rejected {self.total('rejected'):,}) in "
            f"{len(self.audit)} task(s)",
            f"  sequences: {self.total('sequences'):,} ({self.total('prompted_sequences'):,} "
            "with a prompt)",
            f"  tokens: {toks}",
            f"  output: {len(self.files)} shard file(s), {size / 1e6:.1f} MB; audit in "
            f"{fs.join(self.output, 'audit', self.config + '.json')}",
            f"  card: {fs.join(self.output, 'README.md')}",
        ])


# --- options and runners -----------------------------------------------------------------------

def _has_flag(args: Sequence[str], name: str) -> bool:
    return any(a == f"--{name}" or a.startswith(f"--{name}=") for a in args)


def pipeline_options(runner: str, beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options for ``runner``; the DirectRunner defaults to one process per core."""
    args = list(beam_args)
    if runner == "DirectRunner":
        if not _has_flag(args, "direct_running_mode"):
            args.append("--direct_running_mode=multi_processing")
        if not _has_flag(args, "direct_num_workers"):
            args.append(f"--direct_num_workers={os.cpu_count() or 1}")
    elif runner == "DataflowRunner":
        args.append("--runner=DataflowRunner")
    elif runner != "DaskRunner":
        raise TrajcorpusError("--runner", f"unknown runner {runner!r} "
                              "(DirectRunner, DataflowRunner or DaskRunner)")
    return PipelineOptions(args)


MALLOC_ARENAS = "2"


def limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas at 2 per process, for the driver and the local workers.

    Why: glibc gives each thread that allocates concurrently its own arena (up to 8 per core) and
    rarely returns their free pages; Beam's runner and workers are gRPC processes with dozens of
    threads, so their resident memory grew with the data that passed through them, not with
    what they held (measured on 1M Atari transitions, bench/pipeline.py: peak RSS growth 250k ->
    1M 1.38x without the cap, 1.27x with it, at the same speed). Workers inherit the setting
    through the environment; the driver, already running, sets it with ``mallopt``. A value the
    user exported is kept; elsewhere than glibc this does nothing.
    """
    os.environ.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENAS)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, int(os.environ["MALLOC_ARENA_MAX"]))  # -8 = M_ARENA_MAX
    except (OSError, AttributeError, ValueError):
        pass


def _runner(runner: str, spec: JobSpec | None = None) -> Any:
    """The DirectRunner is pinned to Beam's FnApiRunner: Beam 2.77's DirectRunner would first try
    the Prism runner, which downloads a Go binary (impossible offline). The DaskRunner is Beam's
    with the fixes of :mod:`.dask_runner`: one partition per unit, a spill folder every worker
    must see."""
    if runner == "DirectRunner":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        limit_malloc_arenas()  # before the runner starts its worker processes

        return FnApiRunner()
    if runner == "DaskRunner":
        from .dask_runner import JobDaskRunner

        return JobDaskRunner(spec.num_units if spec else None, spec.tmp if spec else None)
    return None  # taken from --runner


# --- planning ----------------------------------------------------------------------------------

def make_spec(entry: DatasetEntry, uri: str, output: str, seed: int, fmt: str, num_units: int,
              shard_bytes: int, progress: bool, min_shards: int = DEFAULT_MIN_SHARDS,
              options: Mapping[str, Any] | None = None, given: str | None = None) -> JobSpec:
    """The workers' settings. ``options``: the reader options (default: the entry's);
    ``given``: the input as the user wrote it, recorded once in the manifest."""
    if fmt not in FORMATS:
        raise TrajcorpusError("--format", f"expected one of {sorted(FORMATS)}, got {fmt!r}")
    if shard_bytes <= 0:
        raise TrajcorpusError("--shard_bytes", f"must be positive, got {shard_bytes}")
    if min_shards <= 0:
        raise TrajcorpusError("--min_shards", f"must be positive, got {min_shards}")
    return JobSpec(
        config=entry.id, kind=entry.kind, uri=uri,
        options=dict(entry.options if options is None else options),
        task_template=entry.task, agent_template=entry.agent, filter=entry.filter,
        tokenize=entry.tokenize, sequence=entry.sequence, seed=int(seed), formats=FORMATS[fmt],
        output=output, tmp=fs.join(output, TMP_DIR, entry.id), shard_bytes=int(shard_bytes),
        min_shards=int(min_shards), num_units=num_units, progress=progress,
        entry=entry.model_dump(mode="json"), input=given or uri)


TEXTLESS_KINDS = frozenset({"dqn-replay", "rlu-atari", "d4rl", "vpt"})  # formats with no text fields


def _probe_has_text(spec: JobSpec, units: Sequence[Unit], limit: int = 3) -> bool:
    """Whether the corpus has text to tokenize: looks at the first episode found in the first
    few units (image-caption and instruction datasets have text in every record). Formats that
    cannot hold text are not read here at all."""
    if spec.kind in TEXTLESS_KINDS:
        return False
    source = spec.open_source()
    for unit in units[:limit]:
        for item in source.read_unit_safely(unit):
            if isinstance(item, Rejected):
                continue
            names = [n for n, k in item.observation_kinds.items() if k == "text"]
            if spec.tokenize.text_fields is not None:
                names = [n for n in names if n in spec.tokenize.text_fields]
            return bool(names)
    return False


def _text_model_uri(spec: JobSpec) -> str:
    return fs.join(spec.output, "tokenizer", f"{spec.config}.model")


def _install_text_model(spec: JobSpec, src: str) -> dict:
    """Copy a catalog-given SentencePiece model into OUT (so the output decodes on its own)."""
    from ..tokenizers import TextTokenizer

    tok = TextTokenizer.load(src)
    dst = _text_model_uri(spec)
    fs.makedirs(fs.join(spec.output, "tokenizer"))
    tok.save(dst)
    return {"uri": dst, "path": f"tokenizer/{spec.config}.model", "sha256": tok.sha256,
            "vocab_size": tok.vocab_size, "trained": False, "source": src}


def _train_text_model(spec: JobSpec, texts: list[str]) -> dict | None:
    """Train the corpus's SentencePiece model from its distinct texts, sorted (deterministic).

    The vocabulary is the catalog's size, or the largest the corpus supports when smaller.
    """
    from ..tokenizers import train_text_model

    texts = sorted(set(texts))
    if not texts:
        return None
    dst = _text_model_uri(spec)
    fs.makedirs(fs.join(spec.output, "tokenizer"))
    settings = spec.tokenize.text_model
    tok = train_text_model(texts, dst, vocab_size=settings.vocab_size,
                           model_type=settings.model_type, fit_vocab=True)
    say(spec, f"trained the text model ({tok.vocab_size} pieces) on {len(texts)} distinct "
        f"texts -> {dst}")
    return {"uri": dst, "path": f"tokenizer/{spec.config}.model", "sha256": tok.sha256,
            "vocab_size": tok.vocab_size, "trained": True, "texts": len(texts)}


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
            | "TrainTextModel" >> beam.Map(lambda texts: _train_text_model(spec, texts)))

    read = units_pc | "ReadTokenizeSpill" >> beam.ParDo(ReadUnit(spec), text_side).with_outputs(
        "summary", "rejected", "rawstats", main="windows")
    windows, summaries, rejected = read.windows, read.summary, read.rejected

    filters = (summaries
               | "ByTask" >> beam.Map(lambda r: (r.task, r))
               | "GroupByTask" >> beam.GroupByKey()
               | "Filter" >> beam.MapTuple(lambda task, rows: filter_group(spec, task, rows)))
    thresholds = beam.pvalue.AsDict(
        filters | "Thresholds" >> beam.MapTuple(lambda task, f: (task, f.threshold)))

    def kept(r, thr) -> bool:
        return r.vl or is_kept(r.return_, thr.get(r.task))

    candidates = beam.pvalue.AsDict(
        summaries
        | "KeptControl" >> beam.Filter(lambda r, thr: not r.vl and kept(r, thr), thresholds)
        | "ByAgent" >> beam.Map(lambda r: ((r.task, r.agent), r.episode_id))
        | "PromptCandidates" >> beam.CombinePerKey(BottomK(spec.seed)))

    kept_windows = windows | "KeepWindows" >> beam.Filter(kept, thresholds)

    requests = (kept_windows
                | "Prompted" >> beam.Filter(lambda r: r.wants_prompt)
                | "ChoosePrompt" >> beam.Map(lambda r, c: make_request(spec, r, c), candidates))

    def is_candidate(r, cands) -> bool:
        return not r.vl and r.episode_id in cands.get((r.task, r.agent), ())

    cand_windows = (kept_windows
                    | "CandidateWindows" >> beam.Filter(is_candidate, candidates)
                    | "WindowsById" >> beam.Map(lambda r: (r.episode_id, (
                        r.first_step, r.last_step, r.max_step_tokens, r.uri, r.offset,
                        r.length))))
    prompt_refs = ({"requests": requests, "windows": cand_windows}
                   | "JoinPrompts" >> beam.CoGroupByKey()
                   | "ResolvePrompts" >> beam.FlatMap(lambda e: resolve_prompts(spec, e)))

    n_pc = (kept_windows
            | "EstBytes" >> beam.Map(lambda r: r.est_bytes)
            | "TotalBytes" >> beam.CombineGlobally(sum)
            | "NumShards" >> beam.Map(
                lambda b: plan_num_shards(b, spec.shard_bytes, spec.min_shards)))
    n_side = beam.pvalue.AsSingleton(n_pc)
    by_shard = {
        "seq": kept_windows | "SeqByShard" >> beam.Map(lambda r, n: (shard_of(r.key, n), r),
                                                       n_side),
        "prompt": prompt_refs | "PromptByShard" >> beam.Map(
            lambda kv, n: (shard_of(kv[0], n), kv), n_side),
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
        out["tokens"] = [a + b for a, b in zip(out["tokens"], s["tokens"], strict=True)]
    return out


def _raw(s: Any) -> dict:
    return {"statistics": s.summary(), "schema": s.schema_json()}


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
    options_ = pipeline_options(runner, beam_args)
    job_options = options_.view_as(TrajcorpusOptions)
    dry_run = bool(options_.view_as(TestOptions).dry_run)
    output = output.rstrip("/") if len(output) > 1 else output
    if runner == "DataflowRunner" and fs.is_local(output) and not dry_run:
        raise TrajcorpusError("--output", "DataflowRunner workers cannot write to a local "
                              f"path ({output}); use a gs:// folder")
    _quiet_beam_logs()
    source_spec = make_spec(entry, uri, output, seed, fmt, 0, job_options.shard_bytes, progress,
                            job_options.min_shards, options=read_options, given=given)
    if not dry_run:  # after the settings are known to be valid
        check_output(output, entry.id, overwrite)
    try:
        units = source_spec.open_source().units()
    except TrajcorpusError:
        raise
    except Exception as e:
        reason = fs.network_error(e)
        if reason is None:
            raise
        raise TrajcorpusError(uri, reason) from e
    if not units:
        raise TrajcorpusError(uri, "the source has no units of work")
    spec = dataclasses.replace(source_spec, num_units=len(units),
                               references=task_references(source_spec.entry, entry.kind, units),
                               lineage_root=lineage_root(uri))
    say(spec, f"{len(units)} unit(s) of work from {uri}")

    text_model: dict | None = None
    train_text = False
    if entry.tokenize.text_model.path:
        src = _resolve(cat, entry.tokenize.text_model.path)
        text_model = {"uri": src} if dry_run else _install_text_model(spec, src)
    elif _probe_has_text(spec, units):
        train_text = True
    if not dry_run:
        fs.remove(spec.tmp)
        fs.makedirs(fs.join(spec.tmp, "units"))

    p = beam.Pipeline(runner=_runner(runner, None if dry_run else spec), options=options_)
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
        raise TrajcorpusError(f"job {spec.config}", f"pipeline failed: {_root_cause(e)}") from e
    if dry_run:
        return JobResult(spec.config, output, {}, [], text_model, time.time() - t0, dry_run=True,
                         graph=_graph_names(result))
    job = finalize(spec, units, time.time() - t0, card=card)
    if progress:
        print(job.summary(), file=sys.stderr, flush=True)
    return job


def _root_cause(e: BaseException) -> str:
    """The most useful line of a runner's error: our own error's message when there is one."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    ours = [ln for ln in lines if "trajcorpus.errors." in ln]
    if ours:
        return ours[-1].split("trajcorpus.errors.", 1)[1]
    return lines[-1] if lines else type(e).__name__


def _graph_names(result: Any) -> list[str]:
    """Transform names of the job a dry run built (the Dataflow job's pipeline proto)."""
    proto = getattr(getattr(result, "job", None), "proto_pipeline", None)
    if proto is None:
        return []
    return sorted(t.unique_name for t in proto.components.transforms.values())


def _resolve(cat, path: str) -> str:
    if "://" in path or os.path.isabs(path) or cat.path is None:
        return path
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(cat.path)), path))


def _quiet_beam_logs() -> None:
    """Keep the terminal for progress lines: Beam's info chatter and the local workers'
    start-up warnings are hidden; errors still show."""
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


def finalize(spec: JobSpec, units: Sequence[Unit], seconds: float, card: bool = True
             ) -> JobResult:
    """After the pipeline: audit files, checks, stale-file removal, manifest (last), card."""
    from ..shards.index import merge_index
    from ..shards.layout import parse_relpath
    from ..shards.manifest import write_manifest

    res_uri = fs.join(spec.tmp, RESULT_FILE)
    if not fs.exists(res_uri):
        raise TrajcorpusError(res_uri, "the pipeline finished without writing its results")
    with fs.open_uri(res_uri, "rb") as f:
        res = json.load(f)
    filters = {t: FilterResult(**v) for t, v in res["filter"].items()}
    audit = audit_mod.build_audit(filters, res["episodes"], res["rejected"], res["stats"])
    audit_mod.check_audit(spec.config, audit, res["episodes"])

    paths = audit_mod.audit_paths(spec.output, spec.config)
    fs.makedirs(fs.join(spec.output, "audit"))
    thresholds = {t: f.threshold for t, f in filters.items()}
    kept = audit_mod.stitch_episodes(
        [spec.unit_file(u, "episodes.jsonl") for u in units], paths["episodes"], thresholds)
    for task, f in filters.items():
        if kept.get(task, 0) != f.kept:
            raise TrajcorpusError(f"audit {spec.config} task {task!r}", (
                f"per-episode keep decisions give {kept.get(task, 0)} kept, the filter "
                f"{f.kept}"))
    n_rej = audit_mod.stitch_rejected(
        [spec.unit_file(u, "rejected.jsonl") for u in units], paths["rejected"])
    if n_rej != sum(a["rejected"] for a in audit.values()):
        raise TrajcorpusError(f"audit {spec.config}", "rejected list and counts disagree")
    _check_files(spec, audit, res["files"], res["num_shards"])
    audit_mod.write_json(paths["audit"], audit)

    moves = renumber_shards(spec, res["files"])
    files = [record for _, record in moves]
    _remove_stale_shards(spec, {f["path"] for f in files})
    for staged, f in moves:  # every check passed: move the staged shards into place, manifest last
        fs.makedirs(fs.join(spec.output, f["path"]).rsplit("/", 1)[0])
        fs.rename(fs.join(spec.staging, staged), fs.join(spec.output, f["path"]))
    text_model = res.get("text_model") if res.get("text_model") is not None else None
    num_shards = len(files) // len(spec.formats)
    info = {**_manifest_info(spec, text_model, num_shards), **trainer_info(spec, res, audit)}
    written = [parse_relpath(staged).index for staged, f in moves
               if f["format"] == spec.formats[0]]  # planned numbers, in final order
    info["index"] = merge_index(spec.staging, spec.output, spec.config, spec.split,
                                written)  # episode -> shard and row (shards.index)
    write_manifest(spec.output, [_shard_file(f) for f in files], spec.config, info)
    fs.remove(spec.tmp)
    _remove_if_empty(fs.join(spec.output, TMP_DIR))
    if card:
        say(spec, f"dataset card: {_write_card(spec)}")
    return JobResult(spec.config, spec.output, audit, files, text_model, seconds)


def renumber_shards(spec: JobSpec, files: list[dict]) -> list[tuple[str, dict]]:
    """(staged path, final record) of every written shard, numbered 0..M-1 of M.

    A shard that no sequence hashed to is not written (WriteShard), so M may be below the
    planned count (a tiny corpus under a small --shard_bytes); the names then close the gaps.
    Renaming changes no byte: neither format stores its own file name.
    """
    from ..shards.layout import parse_relpath, shard_relpath

    out: list[tuple[str, dict]] = []
    for fmt in spec.formats:
        mine = sorted((f for f in files if f["format"] == fmt),
                      key=lambda f: parse_relpath(f["path"]).index)
        for i, f in enumerate(mine):
            name = parse_relpath(f["path"])
            path = shard_relpath(spec.config, name.split, fmt, i, len(mine))
            out.append((f["path"], {**f, "path": path}))
    return out


def _check_files(spec: JobSpec, audit: dict, files: list[dict], num_shards: int) -> None:
    sequences = sum(a["sequences"] for a in audit.values())
    counts = {fmt: sorted(f["path"].rsplit("/", 1)[-1].split(".")[0] for f in files
                          if f["format"] == fmt) for fmt in spec.formats}
    if len({tuple(c) for c in counts.values()}) > 1:
        raise TrajcorpusError(f"output {spec.config}", "the formats' shard sets differ: "
                              + ", ".join(f"{fmt} {len(c)}" for fmt, c in counts.items()))
    for fmt in spec.formats:
        mine = [f for f in files if f["format"] == fmt]
        if len(mine) > num_shards or (sequences and not mine):
            raise TrajcorpusError(f"output {spec.config}",
                                  f"{len(mine)} {fmt} shards written, {num_shards} planned")
        if sum(f["examples"] for f in mine) != sequences:
            raise TrajcorpusError(f"output {spec.config}", (
                f"{fmt} shards hold {sum(f['examples'] for f in mine)} examples but "
                f"{sequences} sequences were built"))


def _shard_file(record: dict) -> Any:
    from ..shards.writer import ShardFile

    return ShardFile.from_dict(record)


def _remove_stale_shards(spec: JobSpec, keep: set[str]) -> None:
    """Shards of this config left by an earlier run with another shard count or format."""
    from ..shards.layout import config_dir

    folder = fs.join(spec.output, config_dir(spec.config))
    if not fs.exists(folder):
        return
    for uri in fs.listdir(folder):
        rel = f"{config_dir(spec.config)}/{uri.rstrip('/').rsplit('/', 1)[-1]}"
        if rel not in keep:
            fs.remove(uri)


def _remove_if_empty(uri: str) -> None:
    try:
        if fs.exists(uri) and not fs.listdir(uri):
            fs.remove(uri)
    except (OSError, FileNotFoundError):
        pass


def _rebuild_command(spec: JobSpec) -> str:
    """The command that rebuilds this config byte for byte (with the same code version)."""
    import shlex

    fmt = "both" if len(spec.formats) == 2 else spec.formats[0]
    return shlex.join(["trajcorpus", "run", "--catalog", "catalog.yaml", "--dataset", spec.config,
                       "--input", spec.input, "--output", "OUT",
                       "--seed", str(spec.seed), "--format", fmt,
                       f"--shard_bytes={spec.shard_bytes}", f"--min_shards={spec.min_shards}"])


def _manifest_info(spec: JobSpec, text_model: dict | None, num_shards: int) -> dict:
    return {
        "command": _rebuild_command(spec),
        "catalog_entry": spec.entry,
        "input": spec.input,
        "settings": {"filter": spec.filter.model_dump(mode="json"),
                     "tokenize": spec.tokenize.model_dump(mode="json"),
                     "sequence": spec.sequence.model_dump(mode="json"),
                     "shard_bytes": spec.shard_bytes, "min_shards": spec.min_shards,
                     "formats": list(spec.formats),
                     "prompt_candidates_per_agent": _candidates_k()},
        "sequence_length": spec.sequence.length,
        "seed": spec.seed,
        "code_version": __version__,
        "num_shards": num_shards,
        "text_model": None if text_model is None else {
            k: v for k, v in text_model.items() if k != "uri"},
        "tokenizer_sha256": None if text_model is None else text_model["sha256"],
        "audit": f"audit/{spec.config}.json",
    }


def _candidates_k() -> int:
    from .prompts import CANDIDATES_PER_AGENT

    return CANDIDATES_PER_AGENT


def _write_card(spec: JobSpec) -> str | None:
    from ..cards import write_card

    write_card(spec.output)
    return fs.join(spec.output, "README.md")
