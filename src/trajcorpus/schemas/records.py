"""The records the job writes for the dataset card (and anyone else) to read: written and read by
this one module, so a field cannot be renamed on one side only.

* the audit files ``OUT/audit/{config}.json`` (one :class:`TaskAudit` per task, SPEC section 7),
  ``{config}.rejected.jsonl`` and ``{config}.episodes.jsonl`` (one :class:`EpisodeSummary` row
  per read episode, with its keep decision): their paths come from :func:`audit_paths`;
* the manifest (``manifest.json``) is owned by :mod:`trajcorpus.shards.manifest`, which writes
  and reads it; its per-config ``info`` is the typed :class:`trajcorpus.shards.configinfo.
  ConfigInfo`, checked on both sides (its blocks are built by their own modules:
  ``pipelines.trainer_info``, ``shards.index``, ``shards.statsfile``, the token scheme).

The version of these records is the manifest's (``shards.manifest.MANIFEST_VERSION``): a change
of any field here is a change of that version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import ShardError
from .episode import EpisodeSummary

__all__ = ["AUDIT_DIR", "AUDIT_INTS", "AUDIT_KEYS", "RULE_KEYS", "TaskAudit", "audit_paths", "audit_relpath",
           "EpisodeSummary", "episode_row", "summary_from_row"]

AUDIT_DIR = "audit"
AUDIT_INTS = ("read", "rejected", "filtered", "kept", "episodes_total", "sequences",
              "prompted_sequences")
AUDIT_KEYS = ("read", "rejected", "filtered", "kept", "episodes_total", "window",
              "best_window_start", "expert_return", "threshold", "sequences",
              "prompted_sequences", "tokens")
RULE_KEYS = ("rule", "top_fraction", "threshold_episode_id")  # only when the rule is not Gato's


def audit_relpath(config: str, part: str = "audit") -> str:
    """The path inside OUT of one audit file: ``audit``, ``rejected`` or ``episodes``; or
    ``build``: how many units the build took from the build cache (written only when any were,
    so a clean build's files are unchanged)."""
    suffix = {"audit": ".json", "rejected": ".rejected.jsonl", "episodes": ".episodes.jsonl",
              "build": ".build.json"}
    return f"{AUDIT_DIR}/{config}{suffix[part]}"


def audit_paths(output: str, config: str) -> dict[str, str]:
    """The URIs of a config's three audit files under ``output``."""
    from .. import fs

    return {part: fs.join(output, audit_relpath(config, part))
            for part in ("audit", "rejected", "episodes")}


@dataclasses.dataclass(frozen=True)
class TaskAudit:
    """One task's entry of ``OUT/audit/{config}.json`` (SPEC section 7)."""

    task: str
    read: int
    rejected: int
    filtered: int
    kept: int
    episodes_total: int
    window: int | None
    best_window_start: int | None
    expert_return: float | None
    threshold: float | None
    sequences: int
    prompted_sequences: int
    tokens: dict[str, int]
    # a rule other than Gato's adds its own keys (MGDT's expert set: rule "top_fraction", the
    # fraction, and the episode id that breaks ties at the cut); Gato's record is the SPEC's
    rule: str = "gato"
    top_fraction: float | None = None
    threshold_episode_id: str | None = None

    @property
    def filter_on(self) -> bool:
        return self.window is not None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (keyed by task in the file, so without ``task``)."""
        out = {k: getattr(self, k) for k in AUDIT_KEYS}
        if self.rule != "gato":
            out.update({k: getattr(self, k) for k in RULE_KEYS})
        return out

    @classmethod
    def from_dict(cls, task: str, raw: Any, where: str) -> TaskAudit:
        """The record back from its JSON form; a missing or mistyped field is one ShardError."""
        if not isinstance(raw, Mapping):
            raise ShardError(where, f"task {task!r}: expected an object, got {type(raw).__name__}")
        missing = [k for k in AUDIT_KEYS if k not in raw]
        if missing:
            raise ShardError(where, f"task {task!r}: missing {', '.join(missing)}")
        tokens = raw["tokens"]
        if not isinstance(tokens, Mapping):
            raise ShardError(where, f"task {task!r}: 'tokens' must be an object")
        try:
            return cls(task=task, **{k: int(raw[k]) for k in AUDIT_INTS},
                       window=_opt(int, raw["window"]),
                       best_window_start=_opt(int, raw["best_window_start"]),
                       expert_return=_opt(float, raw["expert_return"]),
                       threshold=_opt(float, raw["threshold"]),
                       tokens={str(k): int(v) for k, v in tokens.items()},
                       rule=str(raw.get("rule", "gato")),
                       top_fraction=_opt(float, raw.get("top_fraction")),
                       threshold_episode_id=_opt(str, raw.get("threshold_episode_id")))
        except (TypeError, ValueError) as e:
            raise ShardError(where, f"task {task!r}: {e}") from None


def _opt(kind: type, value: Any) -> Any:
    return None if value is None else kind(value)


def episode_row(s: EpisodeSummary) -> dict[str, Any]:
    """A read episode's line of ``{config}.episodes.jsonl`` (the job adds ``kept``)."""
    return {"task": s.task, "agent": s.agent, "episode_id": s.episode_id, "order": list(s.order),
            "return": s.return_, "length": s.length}


def summary_from_row(dataset: str, row: Mapping[str, Any], where: str) -> EpisodeSummary:
    """The summary back from its line (``kept`` is read by the caller)."""
    try:
        return EpisodeSummary(dataset, str(row["task"]), str(row["agent"]),
                              str(row["episode_id"]), tuple(int(o) for o in row["order"]),
                              float(row["return"]), int(row["length"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ShardError(where, f"bad episode row: {type(e).__name__} {e}") from None
