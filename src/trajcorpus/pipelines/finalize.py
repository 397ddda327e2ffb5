"""After the pipeline: the audit files (stitched and checked), the shard-folder commit
(``shards.commit``), the manifest (written last) and the card, and the run's summary."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from .. import __version__, fs
from ..errors import TrajcorpusError
from ..schemas.records import audit_paths, audit_relpath
from ..shards.codecs import ALL
from ..sources.base import Unit, kind_facts
from ..tokenizers.schemes import scheme_of
from . import audit as audit_mod
from .filter import FilterResult
from .inputs import TMP_DIR
from .stages import MODALITY_NAMES, JobSpec, say
from .trainer_info import trainer_info

__all__ = ["RESULT_FILE", "JobResult", "finalize"]

RESULT_FILE = "result.json"


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
        names = dict.fromkeys(m for a in self.audit.values() for m in a["tokens"])
        return {m: sum(a["tokens"].get(m, 0) for a in self.audit.values())
                for m in names or MODALITY_NAMES}

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
            f"{audit_paths(self.output, self.config)['audit']}",
            f"  card: {fs.join(self.output, 'README.md')}",
        ])


def finalize(spec: JobSpec, units: Sequence[Unit], seconds: float, card: bool = True
             ) -> JobResult:
    """After the pipeline: audit files, checks, stale-file removal, manifest (last), card."""
    from ..schemas.stats import RawStats
    from ..shards.commit import check_staged, commit_shards, plan_commit
    from ..shards.index import merge_index
    from ..shards.manifest import write_manifest
    from ..shards.statsfile import write_stats_state
    from ..shards.writer import ShardFile

    res_uri = fs.join(spec.tmp, RESULT_FILE)
    if not fs.exists(res_uri):
        raise TrajcorpusError(res_uri, "the pipeline finished without writing its results")
    with fs.open_uri(res_uri, "rb") as f:
        res = json.load(f)
    filters = {t: FilterResult(**v) for t, v in res["filter"].items()}
    audit = audit_mod.build_audit(filters, res["episodes"], res["rejected"], res["stats"],
                                  scheme_of(spec.tokenize).modality_names)
    audit_mod.check_audit(spec.config, audit, res["episodes"])

    paths = audit_paths(spec.output, spec.config)
    fs.makedirs(paths["audit"].rsplit("/", 1)[0])
    thresholds = {t: f.cut for t, f in filters.items()}
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
    check_staged(spec.config, spec.formats, res["files"],
                 sum(a["sequences"] for a in audit.values()), res["num_shards"])
    audit_mod.write_json(paths["audit"], audit)

    commit = plan_commit(spec.config, spec.formats, res["files"])
    files = commit.files
    commit_shards(spec.output, spec.staging, spec.config, commit)  # every check passed
    text_model = res.get("text_model") if res.get("text_model") is not None else None
    num_shards = len(files) // len(spec.formats)
    info = {**_manifest_info(spec, text_model, num_shards), **trainer_info(spec, res, audit),
            **scheme_of(spec.tokenize).manifest_record(spec.tokenize, spec.sequence, audit)}
    info["index"] = merge_index(spec.staging, spec.output, spec.config, spec.split,
                                commit.planned)  # episode -> shard and row (shards.index)
    info["statistics_state"] = write_stats_state(  # what a Mixture merges (shards.statsfile)
        spec.output, spec.config, (res.get("raw_stats_config") or {}).get("state")
        or RawStats().to_state(), {t: v["state"] for t, v in res["raw_stats"].items()})
    write_manifest(spec.output, [ShardFile.from_dict(f) for f in files], spec.config, info)
    _write_build_facts(spec, len(units))
    fs.remove(spec.tmp)
    _remove_if_empty(fs.join(spec.output, TMP_DIR))
    if card:
        say(spec, f"dataset card: {_write_card(spec)}")
    return JobResult(spec.config, spec.output, audit, files, text_model, seconds)


def _write_build_facts(spec: JobSpec, num_units: int) -> None:
    """``audit/{config}.build.json`` when units came from the build cache (the card's line);
    removed otherwise, so a clean build's files are exactly those of a build without a cache."""
    from .buildcache import reused_units

    uri = fs.join(spec.output, audit_relpath(spec.config, "build"))
    reused = reused_units(fs.join(spec.tmp, "units")) if spec.cache is not None else 0
    if reused:
        audit_mod.write_json(uri, {"units": num_units, "reused_units": reused})
    elif fs.exists(uri):
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

    fmt = ALL if len(spec.formats) > 1 else spec.formats[0]
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
        "audit": audit_relpath(spec.config),
        "source": kind_facts(spec.kind),  # the card's description, tags and task categories
    }


def _candidates_k() -> int:
    from .prompts import CANDIDATES_PER_AGENT

    return CANDIDATES_PER_AGENT


def _write_card(spec: JobSpec) -> str | None:
    from ..cards import write_card

    write_card(spec.output)
    return fs.join(spec.output, "README.md")

