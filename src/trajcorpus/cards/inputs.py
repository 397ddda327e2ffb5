"""Everything the dataset card shows, read from an output folder: the manifest and the audit files.

The card never recomputes a number the job already recorded; this module only reads and groups,
through the records' own readers (``shards.manifest.read_manifest``, ``schemas.records``). Rejected inputs are streamed and grouped by reason (a corpus can reject millions of
inputs), episode returns are kept as small per-task arrays for the plots.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .. import fs
from ..errors import ShardError
from ..schemas.records import TaskAudit, audit_paths, audit_relpath, summary_from_row
from ..shards.hub import public_info
from ..shards.manifest import read_manifest
from ..shards.writer import ShardFile as ShardEntry  # one file of the manifest
from ..tokenizers.scheme import MODALITY_NAMES

__all__ = [
    "MODALITY_NAMES",
    "ShardEntry",
    "ConfigInputs",
    "TaskAudit",
    "TaskEpisodes",
    "RejectGroup",
    "CardInputs",
    "load_inputs",
]

MAX_EXAMPLE_LOCATIONS = 3  # example locations listed per rejection reason
MAX_REJECT_GROUPS = 10_000  # distinct (task, kind, reason) kept; later ones are pooled
OTHER_REASONS = "(other reasons, pooled: see the JSONL file)"


@dataclasses.dataclass
class TaskEpisodes:
    """A task's read episodes in collection order (sorted by order, then episode_id): only what
    the plots and checks use, as arrays (a task can have millions of episodes)."""

    returns: np.ndarray  # float64 [N]
    kept: np.ndarray  # bool [N]


@dataclasses.dataclass
class RejectGroup:
    task: str
    kind: str
    reason: str
    count: int
    locations: list[str]  # the first few, in file order


@dataclasses.dataclass
class ConfigInputs:
    """One config (= one catalog dataset) of the output folder."""

    name: str
    info: dict[str, Any]
    files: list[ShardEntry]
    audit: dict[str, TaskAudit]  # task -> audit, sorted by task
    episodes: dict[str, TaskEpisodes]  # task -> episodes; empty if episodes.jsonl is missing
    rejects: list[RejectGroup]
    audit_path: str | None
    problems: list[str]  # what could not be read (shown in the card, never hidden)
    build: dict[str, int] | None = None  # units taken from the build cache (audit/{config}.build.json)

    @property
    def source(self) -> dict[str, Any]:
        """The kind's facts the job recorded (description, task categories, tags); empty for a
        manifest written before they were."""
        facts = self.info.get("source")
        return dict(facts) if isinstance(facts, Mapping) else {}

    @property
    def entry(self) -> dict[str, Any]:
        """The catalog entry recorded in the manifest info (empty if none), with the processing
        settings filled in from ``info["settings"]`` when the job records them beside it."""
        e = self.info.get("catalog_entry")
        e = dict(e) if isinstance(e, Mapping) else {}
        settings = self.info.get("settings")
        if isinstance(settings, Mapping):
            for k in ("filter", "tokenize", "sequence", "mixture_weight"):
                if k not in e and k in settings:
                    e[k] = settings[k]
        return e


@dataclasses.dataclass
class CardInputs:
    out: str
    manifest: dict[str, Any]
    configs: dict[str, ConfigInputs]  # sorted by name


def _read_json(uri: str) -> Any:
    with fs.open_uri(uri, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardError(uri, f"not valid JSON: {e}") from None


def _load_build(out: str, config: str) -> dict[str, int] | None:
    """The build-cache facts of the last build, when it reused any units."""
    uri = fs.join(out, audit_relpath(config, "build"))
    if not fs.exists(uri):
        return None
    facts = _read_json(uri)
    if not isinstance(facts, dict) or not all(
            isinstance(facts.get(k), int) for k in ("units", "reused_units")):
        raise ShardError(uri, "expected {\"units\": int, \"reused_units\": int}")
    return {"units": facts["units"], "reused_units": facts["reused_units"]}


def _iter_jsonl(uri: str) -> Iterator[tuple[int, dict[str, Any]]]:
    with fs.open_uri(uri, "rb") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ShardError(f"{uri}:{lineno}", f"not valid JSON: {e}") from None
            if not isinstance(row, dict):
                raise ShardError(f"{uri}:{lineno}", "expected a JSON object per line")
            yield lineno, row


# --- audit (the records are schemas.records's) ---------------------------------------------------

def _load_audit(out: str, config: str) -> tuple[dict[str, TaskAudit], str | None]:
    uri = audit_paths(out, config)["audit"]
    if not fs.exists(uri):
        return {}, None
    data = _read_json(uri)
    if not isinstance(data, Mapping):
        raise ShardError(uri, "expected a JSON object keyed by task")
    return {t: TaskAudit.from_dict(t, data[t], uri) for t in sorted(data)}, uri


def _load_episodes(out: str, config: str) -> dict[str, TaskEpisodes]:
    uri = audit_paths(out, config)["episodes"]
    if not fs.exists(uri):
        return {}
    rows: dict[str, list[tuple]] = {}
    for lineno, r in _iter_jsonl(uri):
        s = summary_from_row(config, r, f"{uri}:{lineno}")
        if not isinstance(r.get("kept"), bool):
            raise ShardError(f"{uri}:{lineno}", "bad episode row: 'kept' must be true or false")
        rows.setdefault(s.task, []).append((s.order, s.episode_id, s.return_, r["kept"]))
    out_: dict[str, TaskEpisodes] = {}
    for task in sorted(rows):
        rs = rows.pop(task)
        rs.sort(key=lambda r: (r[0], r[1]))  # the filter's collection order
        out_[task] = TaskEpisodes(returns=np.fromiter((r[2] for r in rs), np.float64, len(rs)),
                                  kept=np.fromiter((r[3] for r in rs), bool, len(rs)))
    return out_


def _load_rejects(out: str, config: str) -> list[RejectGroup]:
    uri = audit_paths(out, config)["rejected"]
    if not fs.exists(uri):
        return []
    groups: dict[tuple[str, str, str], RejectGroup] = {}
    for _, r in _iter_jsonl(uri):
        task = str(r.get("task") or "(unattributed)")
        kind = str(r.get("kind") or "")
        reason = str(r.get("reason") or "(no reason given)")
        if (task, kind, reason) not in groups and len(groups) >= MAX_REJECT_GROUPS:
            reason = OTHER_REASONS  # bounded memory when every reason is unique
        g = groups.get((task, kind, reason))
        if g is None:
            g = groups[(task, kind, reason)] = RejectGroup(task, kind, reason, 0, [])
        g.count += 1
        if len(g.locations) < MAX_EXAMPLE_LOCATIONS:
            g.locations.append(str(r.get("location", "")))
    return sorted(groups.values(), key=lambda g: (g.task, -g.count, g.kind, g.reason))


# --- everything ----------------------------------------------------------------------------------

def load_inputs(out: str) -> CardInputs:
    """Read the manifest and every config's audit files under ``out``."""
    manifest = read_manifest(out)
    files = sorted(manifest.files, key=lambda f: (f.config, f.split, f.format, f.path))
    infos = manifest.configs
    names = sorted(set(infos) | {f.config for f in files if f.config})
    configs: dict[str, ConfigInputs] = {}
    for name in names:
        audit, audit_path = _load_audit(out, name)
        problems = []
        if audit_path is None:
            problems.append(f"{audit_relpath(name)} is missing: no filter evidence for this "
                            "config")
        configs[name] = ConfigInputs(
            name=name, info=public_info(infos.get(name, {})), files=[f for f in files if f.config == name],
            audit=audit, episodes=_load_episodes(out, name), rejects=_load_rejects(out, name),
            audit_path=audit_path, problems=problems, build=_load_build(out, name),
        )
    return CardInputs(out=out, manifest=manifest.to_dict(), configs=configs)
