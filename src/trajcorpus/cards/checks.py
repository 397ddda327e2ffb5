"""Cross-checks between the output's records, printed in the card so an auditor sees them pass.

The card shows the job's numbers as recorded; these checks only compare records with each other
(audit vs episode list vs manifest vs the shards' own tokens) and with the catalog rules, and say
which agree. A failed check is reported, never corrected.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..shards.codecs import primary_of
from .inputs import MODALITY_NAMES, ConfigInputs
from .shardio import ShardScan

__all__ = ["Check", "config_checks", "primary_files", "sequence_length"]

_REL_TOL = 1e-9


@dataclasses.dataclass(frozen=True)
class Check:
    ok: bool
    what: str
    detail: str = ""


def primary_files(cfg: ConfigInputs) -> list:
    """The files of one format (Parquet when present): each example counted once."""
    primary = primary_of({f.format for f in cfg.files})
    return [f for f in cfg.files if f.format == primary]


def sequence_length(cfg: ConfigInputs) -> int | None:
    seq = cfg.entry.get("sequence") or {}
    # the job's recorded L first: a scheme may derive it (MGDT: timesteps x 39), not the entry
    value = cfg.info.get("sequence_length") or seq.get("length")
    return int(value) if value is not None else None


def _window_rule(cfg: ConfigInputs, n: int) -> int:
    flt = cfg.entry.get("filter") or {}
    frac = float(flt.get("window_fraction", 0.1))
    cap = int(flt.get("max_window", 1000))
    return max(1, min(cap, math.floor(frac * n)))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=1e-12)


def _task_checks(cfg: ConfigInputs) -> list[Check]:
    out: list[Check] = []
    bad_sum = [t for t, a in cfg.audit.items() if a.read != a.rejected + a.filtered + a.kept]
    out.append(Check(not bad_sum, "read = rejected + filtered + kept for every task",
                     f"fails for {', '.join(bad_sum)}" if bad_sum else ""))
    bad_n = [t for t, a in cfg.audit.items() if a.episodes_total != a.filtered + a.kept]
    out.append(Check(not bad_n, "N (episodes_total) = filtered + kept for every task",
                     f"fails for {', '.join(bad_n)}" if bad_n else ""))
    filtered_tasks = [a for a in cfg.audit.values() if a.filter_on]
    if filtered_tasks:
        bad_w = [a.task for a in filtered_tasks
                 if a.window != _window_rule(cfg, a.episodes_total)]
        out.append(Check(not bad_w, "W = max(1, min(max_window, floor(window_fraction x N))) "
                         "for every filtered task", f"fails for {', '.join(bad_w)}" if bad_w
                         else ""))
    if cfg.episodes:
        out.extend(_episode_checks(cfg))
    rej_counts: dict[str, int] = {}
    for g in cfg.rejects:
        rej_counts[g.task] = rej_counts.get(g.task, 0) + g.count
    tasks = set(rej_counts) | {t for t, a in cfg.audit.items() if a.rejected}
    bad_r = sorted(t for t in tasks
                   if rej_counts.get(t, 0) != (cfg.audit[t].rejected if t in cfg.audit else 0))
    out.append(Check(not bad_r, "rejected.jsonl lines per task = the audit's rejected count",
                     f"differs for {', '.join(bad_r)}" if bad_r else ""))
    return out


def _episode_checks(cfg: ConfigInputs) -> list[Check]:
    miss_n, miss_k, miss_thr, miss_win = [], [], [], []
    for t, a in cfg.audit.items():
        e = cfg.episodes.get(t)
        n = 0 if e is None else len(e.returns)
        if n != a.episodes_total:
            miss_n.append(f"{t} ({n} listed, N = {a.episodes_total})")
            continue
        if e is None:
            continue
        if int(e.kept.sum()) != a.kept:
            miss_k.append(t)
        if a.threshold is not None:
            wrong = (e.returns >= a.threshold) != e.kept
            if (cfg.entry.get("filter") or {}).get("rule") == "top_fraction":
                # ties at the cut are split by episode id: only strict sides are determined
                wrong = ((e.returns > a.threshold) & ~e.kept) | ((e.returns < a.threshold)
                                                                 & e.kept)
            if wrong.any():
                miss_thr.append(f"{t} ({int(wrong.sum())} episodes)")
        if a.filter_on and a.window and a.best_window_start is not None and \
                a.expert_return is not None:
            j, w = a.best_window_start, a.window
            seg = e.returns[j:j + w]
            best = _best_window_mean(e.returns, w)
            if len(seg) != w or not _close(float(seg.mean()), a.expert_return) or \
                    not _close(best, a.expert_return):
                miss_win.append(t)
    out = [
        Check(not miss_n, "episodes.jsonl lists N episodes for every task",
              "; ".join(miss_n)),
        Check(not miss_k, "episodes marked kept in episodes.jsonl = the audit's kept count",
              ", ".join(miss_k)),
    ]
    if any(a.filter_on for a in cfg.audit.values()):
        out.append(Check(not miss_thr, "kept exactly the episodes whose return >= threshold",
                         "; ".join(miss_thr)))
        out.append(Check(not miss_win, "the best window's mean return (episodes.jsonl, collection "
                         "order) = the recorded expert return, and no window is better",
                         ", ".join(miss_win)))
    return out


def _best_window_mean(returns: np.ndarray, w: int) -> float:
    if len(returns) < w or w <= 0:
        return float("nan")
    c = np.concatenate([[0.0], np.cumsum(returns, dtype=np.float64)])
    return float(((c[w:] - c[:-w]) / w).max())


def config_checks(cfg: ConfigInputs, scan: ShardScan | None) -> list[Check]:
    """Every cross-check the card prints for one config."""
    out = list(_task_checks(cfg)) if cfg.audit else []
    prim = primary_files(cfg)
    sequences = sum(a.sequences for a in cfg.audit.values())
    if cfg.audit:
        got = sum(f.examples for f in prim)
        out.append(Check(got == sequences, "examples in the manifest = sequences in the audit",
                         f"{got} vs {sequences}" if got != sequences else ""))
    by_fmt: dict[str, int] = {}
    for f in cfg.files:
        by_fmt[f.format] = by_fmt.get(f.format, 0) + f.examples
    if len(by_fmt) > 1:
        out.append(Check(len(set(by_fmt.values())) == 1, "every format holds the same examples",
                         ", ".join(f"{k}: {v}" for k, v in sorted(by_fmt.items()))))
    length = sequence_length(cfg)
    if cfg.audit and length and all("pad" in a.tokens for a in cfg.audit.values()):
        stored = sum(sum(a.tokens.values()) for a in cfg.audit.values())
        out.append(Check(stored == sequences * length,
                         f"tokens in the audit = sequences x L (L = {length})",
                         f"{stored} vs {sequences * length}" if stored != sequences * length
                         else ""))
    if scan is not None and scan.complete and cfg.audit:
        audit_tokens = {m: sum(a.tokens.get(m, 0) for a in cfg.audit.values())
                        for m in MODALITY_NAMES}
        diff = [m for m in MODALITY_NAMES if audit_tokens[m] != scan.by_modality.get(m, 0)]
        out.append(Check(not diff, "tokens by modality counted in the shards = the audit's",
                         ", ".join(f"{m}: {scan.by_modality.get(m, 0)} vs {audit_tokens[m]}"
                                   for m in diff)))
    return out
