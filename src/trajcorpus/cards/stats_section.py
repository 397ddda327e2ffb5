"""The card's "Statistics, reference scores and semantics" section: per config, the reference
returns of each task with their source, and per task a table of every continuous dimension
(name, unit, mean, std, min, q01, q50, q99, max) and the meanings of discrete actions.

Read from the manifest's ``statistics``, ``reference`` and ``semantics`` blocks (written by the
job, see docs/statistics-and-semantics.md); a config without them says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render_trainer_section", "MAX_DIM_ROWS", "INFO_KEYS"]

MAX_DIM_ROWS = 64  # dimensions listed per task; the rest are in manifest.json
INFO_KEYS = frozenset({"statistics", "reference", "semantics"})  # shown here, not under Settings
_COLS = ("mean", "std", "min", "q01", "q50", "q99", "max")


def _g(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.4g}"


def _reference(ref: Mapping[str, dict], table) -> list[str]:
    rows = [[f"`{t}`", _g(r.get("expert_return")), _g(r.get("threshold")), _g(r.get("random")),
             _g(r.get("expert")), r.get("expert_kind") or "", r.get("source") or "none"]
            for t, r in sorted(ref.items())]
    return [table(["task", "corpus expert return", "threshold", "random", "expert / human",
                   "kind", "source of random/expert"], rows)]


def _task(task: str, stats: Mapping[str, dict], sem: Mapping[str, dict], table) -> list[str]:
    out = [f"#### `{task}`", ""]
    rows = []
    for field in sorted(stats):
        s, d = stats[field], sem.get(field) or {}
        if s.get("count") is None:
            continue
        names, units = d.get("names") or [], d.get("units") or []
        for i in range(len(s["mean"])):
            rows.append([f"`{field}`", i, names[i] if i < len(names) else "",
                         units[i] if i < len(units) else "", *[_g(s[c][i]) for c in _COLS]])
    if rows:
        out.append(table(["field", "dim", "name", "unit", *_COLS], rows[:MAX_DIM_ROWS]))
        if len(rows) > MAX_DIM_ROWS:
            out += ["", f"{len(rows) - MAX_DIM_ROWS} more dimensions in `manifest.json`."]
    else:
        out.append("No continuous fields.")
    for field, d in sorted(sem.items()):
        if d.get("kind") == "discrete" and d.get("names"):
            listed = ", ".join(f"{i} {n}" for i, n in enumerate(d["names"]))
            out += ["", f"`{field}` (discrete): {listed}."]
    sources = sorted({d["source"] for d in sem.values() if d.get("source")})
    if sources:
        out += ["", "Names from: " + "; ".join(sources) + "."]
    return out + [""]


def render_trainer_section(configs: list[tuple[str, Mapping[str, Any]]]) -> str:
    """``configs``: (name, manifest info) pairs in card order."""
    from .markdown import _table

    parts = ["## Statistics, reference scores and semantics", "",
             "What a trainer needs besides the tokens: per-dimension statistics of the raw "
             "continuous values of the kept episodes (before mu-law and binning), reference "
             "returns, and what each dimension means. Values are rounded here; `manifest.json` "
             "holds them exactly and `ShardDataset(OUT, CONFIG).stats` loads them "
             "(docs/statistics-and-semantics.md)."]
    for name, info in configs:
        parts += ["", f"### `{name}`", ""]
        stats = info.get("statistics")
        if not isinstance(stats, Mapping):
            parts.append("No statistics recorded (an output written before they existed).")
            continue
        method = stats.get("method") or {}
        parts += [f"Quantiles are exact up to {method.get('exact_limit')} steps per task, then a "
                  f"KLL sketch (k={method.get('kll_k')}, rank error "
                  f"{_g(method.get('kll_rank_error'))} at 99% confidence); each task says which.",
                  ""]
        if info.get("reference"):
            parts += _reference(info["reference"], _table) + [""]
        tasks = stats.get("tasks") or {}
        if not tasks:
            parts.append("No continuous fields or actions recorded (image-caption data, or no "
                         "kept episodes).")
        for task in sorted(tasks):
            parts += _task(task, tasks[task], (info.get("semantics") or {}).get(task) or {},
                           _table)
    return "\n".join(parts)
