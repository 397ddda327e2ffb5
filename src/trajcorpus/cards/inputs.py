"""Everything the dataset card shows, read from an output folder: the manifest and the audit files.

The card never recomputes a number the job already recorded; this module only reads, normalises
and groups. Rejected inputs are streamed and grouped by reason (a corpus can reject millions of
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
from ..shards.hub import public_info
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
    "lookup",
]

_AUDIT_INTS = ("read", "rejected", "filtered", "kept", "episodes_total", "sequences",
               "prompted_sequences")
MAX_EXAMPLE_LOCATIONS = 3  # example locations listed per rejection reason
MAX_REJECT_GROUPS = 10_000  # distinct (task, kind, reason) kept; later ones are pooled
OTHER_REASONS = "(other reasons, pooled: see the JSONL file)"


@dataclasses.dataclass
class TaskAudit:
    """One task's entry of ``OUT/audit/{config}.json`` (SPEC section 7), verbatim."""

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

    @property
    def filter_on(self) -> bool:
        return self.window is not None


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

    @property
    def entry(self) -> dict[str, Any]:
        """The catalog entry recorded in the manifest info (empty if none), with the processing
        settings filled in from ``info["settings"]`` when the job records them beside it."""
        e = lookup(self.info, "catalog_entry", "entry", "catalog", "dataset")
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


def lookup(mapping: Mapping[str, Any] | None, *names: str, default: Any = None) -> Any:
    """The first of ``names`` present (and not None) in ``mapping``.

    The manifest info is assembled by the job; reading it through a list of accepted names keeps
    the card working across small renames instead of silently printing blanks.
    """
    if not isinstance(mapping, Mapping):
        return default
    for n in names:
        if mapping.get(n) is not None:
            return mapping[n]
    return default


def _read_json(uri: str) -> Any:
    with fs.open_uri(uri, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardError(uri, f"not valid JSON: {e}") from None


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


# --- manifest ------------------------------------------------------------------------------------

def _manifest_dict(out: str) -> dict[str, Any]:
    """The manifest as a plain dict: through the shards module's reader when it has one."""
    uri = fs.join(out, "manifest.json")
    if not fs.exists(uri):
        raise ShardError(uri, "missing: the output folder is unfinished (the manifest is written "
                         "last) or this is not a trajcorpus output")
    data = _read_json(uri)
    if not isinstance(data, dict):
        raise ShardError(uri, "expected a JSON object")
    return data


def _file_entry(raw: Mapping[str, Any], config: str | None, where: str) -> ShardEntry:
    try:
        return ShardEntry(
            path=str(raw["path"]), bytes=int(raw["bytes"]), sha256=str(raw["sha256"]),
            examples=int(lookup(raw, "examples", "num_examples", default=0)),
            config=str(lookup(raw, "config", default=config or "")),
            split=str(lookup(raw, "split", default="train")),
            format=str(lookup(raw, "format", default=_format_of(str(raw["path"])))),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ShardError(where, f"file entry {dict(raw)!r} lacks or mistypes {e}") from None


def _format_of(path: str) -> str:
    if path.endswith(".parquet"):
        return "parquet"
    return "webdataset" if path.endswith((".tar.gz", ".tar")) else ""


def manifest_files(manifest: Mapping[str, Any], where: str = "manifest.json") -> list[ShardEntry]:
    """Every shard file the manifest lists, wherever in the document it lists them."""
    files: list[ShardEntry] = []
    for raw in manifest.get("files") or []:
        files.append(_file_entry(raw, None, where))
    configs = manifest.get("configs") or {}
    if isinstance(configs, Mapping):
        for name, c in configs.items():
            if isinstance(c, Mapping):
                for raw in c.get("files") or []:
                    files.append(_file_entry(raw, name, where))
    seen: dict[str, ShardEntry] = {}
    for f in files:
        seen.setdefault(f.path, f)
    return sorted(seen.values(), key=lambda f: (f.config, f.split, f.format, f.path))


def manifest_infos(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """config -> info dict (catalog entry, settings, seed, code version, tokenizer hash...)."""
    configs = manifest.get("configs") or {}
    out: dict[str, dict[str, Any]] = {}
    if isinstance(configs, Mapping):
        for name, c in configs.items():
            if isinstance(c, Mapping):
                info = c.get("info")
                out[str(name)] = dict(info) if isinstance(info, Mapping) else {
                    k: v for k, v in c.items() if k != "files"}
    elif isinstance(configs, list):
        for c in configs:
            if isinstance(c, Mapping) and lookup(c, "config", "name"):
                info = c.get("info")
                out[str(lookup(c, "config", "name"))] = dict(info) if isinstance(info, Mapping) \
                    else dict(c)
    return out


# --- audit ---------------------------------------------------------------------------------------

def _task_audit(task: str, raw: Any, where: str) -> TaskAudit:
    if not isinstance(raw, Mapping):
        raise ShardError(where, f"task {task!r}: expected an object, got {type(raw).__name__}")
    missing = [k for k in _AUDIT_INTS if k not in raw]
    if missing:
        raise ShardError(where, f"task {task!r}: missing {', '.join(missing)}")
    tokens = raw.get("tokens") or {}
    if not isinstance(tokens, Mapping):
        raise ShardError(where, f"task {task!r}: 'tokens' must be an object")

    def opt_int(k: str) -> int | None:
        return None if raw.get(k) is None else int(raw[k])

    def opt_float(k: str) -> float | None:
        return None if raw.get(k) is None else float(raw[k])

    return TaskAudit(
        task=task, **{k: int(raw[k]) for k in _AUDIT_INTS},
        window=opt_int("window"), best_window_start=opt_int("best_window_start"),
        expert_return=opt_float("expert_return"), threshold=opt_float("threshold"),
        tokens={str(k): int(v) for k, v in tokens.items()},
    )


def _load_audit(out: str, config: str) -> tuple[dict[str, TaskAudit], str | None]:
    uri = fs.join(out, "audit", f"{config}.json")
    if not fs.exists(uri):
        return {}, None
    data = _read_json(uri)
    if not isinstance(data, Mapping):
        raise ShardError(uri, "expected a JSON object keyed by task")
    return {t: _task_audit(t, data[t], uri) for t in sorted(data)}, uri


def _load_episodes(out: str, config: str) -> dict[str, TaskEpisodes]:
    uri = fs.join(out, "audit", f"{config}.episodes.jsonl")
    if not fs.exists(uri):
        return {}
    rows: dict[str, list[tuple]] = {}
    for lineno, r in _iter_jsonl(uri):
        try:
            order = tuple(int(o) for o in (r.get("order") or ()))
            rows.setdefault(str(r["task"]), []).append(
                (order, str(r["episode_id"]), float(r["return"]), bool(r["kept"])))
        except (KeyError, TypeError, ValueError) as e:
            raise ShardError(f"{uri}:{lineno}", f"bad episode row: {e}") from None
    out_: dict[str, TaskEpisodes] = {}
    for task in sorted(rows):
        rs = rows.pop(task)
        rs.sort(key=lambda r: (r[0], r[1]))  # the filter's collection order
        out_[task] = TaskEpisodes(returns=np.fromiter((r[2] for r in rs), np.float64, len(rs)),
                                  kept=np.fromiter((r[3] for r in rs), bool, len(rs)))
    return out_


def _load_rejects(out: str, config: str) -> list[RejectGroup]:
    uri = fs.join(out, "audit", f"{config}.rejected.jsonl")
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
    manifest = _manifest_dict(out)
    files = manifest_files(manifest, fs.join(out, "manifest.json"))
    infos = manifest_infos(manifest)
    names = sorted(set(infos) | {f.config for f in files if f.config})
    configs: dict[str, ConfigInputs] = {}
    for name in names:
        audit, audit_path = _load_audit(out, name)
        problems = []
        if audit_path is None:
            problems.append(f"audit/{name}.json is missing: no filter evidence for this config")
        configs[name] = ConfigInputs(
            name=name, info=public_info(infos.get(name, {})), files=[f for f in files if f.config == name],
            audit=audit, episodes=_load_episodes(out, name), rejects=_load_rejects(out, name),
            audit_path=audit_path, problems=problems,
        )
    return CardInputs(out=out, manifest=manifest, configs=configs)
