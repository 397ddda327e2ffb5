"""The manifest's trainer-facing blocks of one config: raw-value statistics, reference scores
and per-dimension semantics (docs/statistics-and-semantics.md).

Built by the driver after the pipeline from the job's results (per-task and per-config
statistics, each task's field schema) and the audit (the corpus's own expert return and
threshold), plus the reference returns the driver found before the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import TrajcorpusError
from ..schemas.stats import EXACT_LIMIT, KLL_K, QUANTILE_NAMES, QUANTILES, kll_rank_error
from ..semantics import describe_task, rlds_descriptions

__all__ = ["trainer_info", "statistics_method", "source_names"]


def statistics_method() -> dict:
    """How the statistics were computed (the card and the docs quote it)."""
    return {"values": "raw, before mu-law and binning; kept episodes only",
            "moments": "count, mean, population std (Chan et al. parallel update, float64), "
                       "min, max",
            "quantiles": dict(zip(QUANTILE_NAMES, QUANTILES, strict=True)),
            "quantile_definition": "smallest value whose inclusive rank is >= q",
            "exact_limit": EXACT_LIMIT, "kll_k": KLL_K, "kll_rank_error": kll_rank_error()}


def source_names(spec: Any) -> dict[str, list[str]]:
    """Field -> per-dimension names from a reader that knows them (``field_names()``, LeRobot)."""
    try:
        return spec.open_source().field_names()
    except TrajcorpusError:
        return {}


def trainer_info(spec: Any, res: Mapping[str, Any], audit: Mapping[str, dict]) -> dict:
    """{"statistics", "reference", "semantics"} for the manifest's config info."""
    raw = res.get("raw_stats") or {}
    config = res.get("raw_stats_config") or {"statistics": {}, "schema": {}}
    reference = {}
    for task in sorted(audit):
        a = audit[task]
        ref = dict(spec.references.get(task) or {})
        reference[task] = {"expert_return": a.get("expert_return"),
                           "threshold": a.get("threshold"),
                           "random": ref.get("random"), "expert": ref.get("expert"),
                           "expert_kind": ref.get("expert_kind"), "source": ref.get("source")}
    descriptions = rlds_descriptions(spec.uri) if spec.kind == "rlds" else {}
    names = source_names(spec)
    semantics = {task: describe_task(spec.kind, task, raw[task]["schema"],
                                     spec.entry.get("semantics"), descriptions, names)
                 for task in sorted(raw)}
    return {"statistics": {"method": statistics_method(), "config": config["statistics"],
                           "tasks": {t: raw[t]["statistics"] for t in sorted(raw)}},
            "reference": reference, "semantics": semantics}
