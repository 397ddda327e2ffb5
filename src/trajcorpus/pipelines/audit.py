"""The audit record (SPEC section 7), assembled from the job's small results and checked (the
record itself, and the files' paths, are ``schemas.records``'s).

``OUT/audit/{config}.json`` is keyed by task; ``{config}.rejected.jsonl`` lists every quarantined
input; ``{config}.episodes.jsonl`` lists every read episode with its keep decision. The identity
read = rejected + filtered + kept is checked here, and the per-episode keep decisions are checked
against the filter's counts, before the job declares success.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from .. import fs
from ..errors import TrajcorpusError
from ..schemas.records import TaskAudit
from .atomic import atomic_open
from .filter import FilterResult, is_kept
from .stages import MODALITY_NAMES, UNATTRIBUTED

__all__ = ["build_audit", "check_audit", "stitch_episodes",
           "stitch_rejected", "write_json"]

def build_audit(filters: Mapping[str, FilterResult], episodes: Mapping[str, int],
                rejected: Mapping[str, int], stats: Mapping[str, dict],
                names: Sequence[str] = MODALITY_NAMES) -> dict[str, dict]:
    """task -> the SPEC section 7 record, for every task seen anywhere (sorted by task)."""
    tasks = sorted(set(filters) | set(episodes) | set(rejected) | set(stats))
    out = {}
    for task in tasks:
        f = filters.get(task)
        s = stats.get(task, {})
        tokens = s.get("tokens", [0] * len(names))
        n_ep = int(episodes.get(task, 0))
        n_rej = int(rejected.get(task, 0))
        out[task] = TaskAudit(
            task=task,
            read=n_ep + n_rej,
            rejected=n_rej,
            filtered=f.filtered if f else 0,
            kept=f.kept if f else 0,
            episodes_total=f.episodes_total if f else 0,
            window=f.window if f else None,
            best_window_start=f.best_window_start if f else None,
            expert_return=f.expert_return if f else None,
            threshold=f.threshold if f else None,
            sequences=int(s.get("sequences", 0)),
            prompted_sequences=int(s.get("prompted_sequences", 0)),
            tokens={name: int(n) for name, n in zip(names, tokens, strict=True)},
            **(f.audit_extra() if f else {}),
        ).to_dict()
    return out


def check_audit(config: str, audit: Mapping[str, dict], episodes: Mapping[str, int]) -> None:
    """Raise unless every task satisfies read = rejected + filtered + kept and the filter saw
    exactly the episodes that were read."""
    for task, a in audit.items():
        if a["read"] != a["rejected"] + a["filtered"] + a["kept"]:
            raise TrajcorpusError(f"audit {config} task {task!r}", (
                f"read {a['read']} != rejected {a['rejected']} + filtered {a['filtered']} + "
                f"kept {a['kept']}"))
        if a["episodes_total"] != int(episodes.get(task, 0)):
            raise TrajcorpusError(f"audit {config} task {task!r}", (
                f"the filter saw {a['episodes_total']} episodes but {episodes.get(task, 0)} "
                "were read"))
    if UNATTRIBUTED in audit and audit[UNATTRIBUTED]["read"] != audit[UNATTRIBUTED]["rejected"]:
        raise TrajcorpusError(f"audit {config}", "unattributed inputs must all be rejected")


def stitch_episodes(parts: Iterable[str], out_uri: str,
                    thresholds: Mapping[str, float | tuple[float, str] | None]) -> Counter:
    """Concatenate the per-unit episode lists in unit order, adding each keep decision.

    Returns kept counts per task, which the caller compares with the filter's own counts.
    """
    kept: Counter = Counter()
    with atomic_open(out_uri) as out:
        for uri in parts:
            with fs.open_uri(uri, "rb") as f:
                for line in f:
                    row = json.loads(line)
                    row["kept"] = is_kept(row["return"], thresholds.get(row["task"]),
                                          row["episode_id"])
                    kept[row["task"]] += row["kept"]
                    out.write((json.dumps(row, sort_keys=True) + "\n").encode("utf-8"))
    return kept


def stitch_rejected(parts: Iterable[str], out_uri: str) -> int:
    """Concatenate the per-unit rejected lists in unit order; returns the line count."""
    n = 0
    with atomic_open(out_uri) as out:
        for uri in parts:
            with fs.open_uri(uri, "rb") as f:
                for line in f:
                    out.write(line)
                    n += 1
    return n


def write_json(uri: str, data: object) -> None:
    with atomic_open(uri) as f:
        f.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
