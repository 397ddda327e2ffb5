"""The card's YAML front matter: the keys the Hugging Face hub and ``datasets`` understand.

``configs`` comes from the shards module (it decides the on-disk layout); ``dataset_info`` is built
here from the manifest so ``num_examples`` matches what ``datasets`` verifies on a full load, and
Parquet features are read from the shards' own schema so the hub never casts to something else.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from .. import fs
from .inputs import CardInputs, ConfigInputs, ShardEntry

__all__ = [
    "TASK_CATEGORIES",
    "license_id",
    "size_category",
    "glob_regex",
    "files_for",
    "hub_config_entries",
    "card_metadata",
    "dump_yaml",
]

# catalog kind -> hub task categories (https://huggingface.co/tasks)
TASK_CATEGORIES: dict[str, tuple[str, ...]] = {
    "dqn-replay": ("reinforcement-learning",),
    "rlu-atari": ("reinforcement-learning",),
    "minari": ("reinforcement-learning",),
    "d4rl": ("reinforcement-learning",),
    "rlds": ("robotics", "reinforcement-learning"),
    "coco-captions": ("image-to-text",),
    "img2dataset": ("image-to-text",),
    "hf-image-parquet": ("image-to-text",),
    "vpt": ("reinforcement-learning",),
}
_KIND_TAGS: dict[str, tuple[str, ...]] = {
    "dqn-replay": ("atari", "offline-rl"),
    "rlu-atari": ("atari", "offline-rl"),
    "minari": ("mujoco", "offline-rl"),
    "d4rl": ("mujoco", "offline-rl"),
    "rlds": ("robotics", "rlds", "offline-rl"),
    "coco-captions": ("image-captioning",),
    "img2dataset": ("image-captioning",),
    "hf-image-parquet": ("image-captioning",),
    "vpt": ("minecraft", "vpt", "gameplay-video", "behavior-cloning"),
}
# hub licence ids (https://huggingface.co/docs/hub/repositories-licenses) a catalog may name
_HUB_LICENSES = frozenset({
    "apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "cc-by-2.0", "cc-by-2.5",
    "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0",
    "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "cc-by-nd-4.0", "odc-by", "odbl",
    "pddl", "gpl-3.0", "lgpl-3.0", "agpl-3.0", "mpl-2.0", "unlicense", "openrail", "c-uda",
    "cdla-permissive-2.0", "other", "unknown",
})
_SIZE_BOUNDS = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
                (1_000_000_000, "100M<n<1B"), (10_000_000_000, "1B<n<10B"),
                (100_000_000_000, "10B<n<100B"), (1_000_000_000_000, "100B<n<1T"))


def license_id(text: str) -> str:
    """The hub licence id a free-text catalog licence starts with, else ``other``."""
    first = re.split(r"[\s(,;]+", text.strip(), maxsplit=1)[0].lower() if text.strip() else ""
    if not first:
        return "unknown"
    return first if first in _HUB_LICENSES else "other"


def size_category(n: int) -> str:
    for bound, label in _SIZE_BOUNDS:
        if n < bound:
            return label
    return "n>1T"


@functools.lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A ``data_files`` glob as a regex: ``**`` crosses folders, ``*`` and ``?`` do not."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _data_file_patterns(entry: Mapping[str, Any]) -> dict[str, list[str]]:
    """split -> patterns of one hub ``configs`` entry (all the shapes ``datasets`` accepts)."""
    data_files = entry.get("data_files")
    if isinstance(data_files, str):
        return {"train": [data_files]}
    out: dict[str, list[str]] = {}
    if isinstance(data_files, Mapping):
        for split, pats in data_files.items():
            out[str(split)] = [pats] if isinstance(pats, str) else [str(p) for p in pats]
    elif isinstance(data_files, Sequence):
        for item in data_files:
            if isinstance(item, str):
                out.setdefault("train", []).append(item)
            elif isinstance(item, Mapping):
                pats = item.get("path")
                out.setdefault(str(item.get("split", "train")), []).extend(
                    [pats] if isinstance(pats, str) else [str(p) for p in pats or ()])
    return out


def files_for(entry: Mapping[str, Any], files: Sequence[ShardEntry]) -> dict[str, list[ShardEntry]]:
    """split -> manifest files matched by one hub config entry's ``data_files``."""
    out: dict[str, list[ShardEntry]] = {}
    for split, patterns in _data_file_patterns(entry).items():
        regexes = [glob_regex(p.lstrip("./")) for p in patterns]
        out[split] = [f for f in files if any(r.match(f.path) for r in regexes)]
    return out


def hub_config_entries(inputs: CardInputs) -> list[dict[str, Any]]:
    """The ``configs:`` entries: the shards module's when it is importable, else one per format."""
    try:
        from ..shards import hub_configs, read_manifest
    except ImportError:
        try:
            from ..shards.hub import hub_configs
            from ..shards.manifest import read_manifest
        except ImportError:
            return _fallback_configs(inputs)
    return [dict(c) for c in hub_configs(read_manifest(inputs.out))]


def _fallback_configs(inputs: CardInputs) -> list[dict[str, Any]]:
    out = []
    for cfg in inputs.configs.values():
        by_fmt: dict[str, dict[str, set[str]]] = {}
        for f in cfg.files:
            folder = f.path.rsplit("/", 1)[0] + "/" if "/" in f.path else ""
            ext = f.path.rsplit(".", 1)[-1]
            by_fmt.setdefault(f.format, {}).setdefault(f.split, set()).add(
                f"{folder}{f.split}-*.{ext}")
        for i, fmt in enumerate(sorted(by_fmt, key=lambda x: (x != "parquet", x))):
            name = cfg.name if i == 0 else f"{cfg.name}-{fmt}"
            out.append({"config_name": name, "data_files": [
                {"split": s, "path": sorted(p)} for s, p in sorted(by_fmt[fmt].items())]})
    return out


def _parquet_features(out: str, first: ShardEntry) -> list[dict[str, Any]] | None:
    """The features ``datasets`` would infer from a Parquet shard, read from its schema only."""
    import datasets
    import pyarrow.parquet as pq

    with fs.open_uri(fs.join(out, first.path), "rb") as f:
        schema = pq.read_schema(f)
    return datasets.Features.from_arrow_schema(schema)._to_yaml_list()


def _dataset_info(inputs: CardInputs, entry: Mapping[str, Any],
                  cfg: ConfigInputs | None) -> dict[str, Any]:
    splits = files_for(entry, cfg.files if cfg else [])
    info: dict[str, Any] = {"config_name": entry["config_name"]}
    matched = [f for fs_ in splits.values() for f in fs_]
    if matched and all(f.format == "parquet" for f in matched):
        features = _parquet_features(inputs.out, matched[0])
        if features:
            info["features"] = features
    info["splits"] = [{"name": s, "num_bytes": sum(f.bytes for f in fl),
                       "num_examples": sum(f.examples for f in fl)}
                      for s, fl in sorted(splits.items())]
    total = sum(f.bytes for f in matched)
    info["download_size"] = total
    info["dataset_size"] = total
    return info


def config_of(entry: Mapping[str, Any], inputs: CardInputs) -> ConfigInputs | None:
    """The manifest config a hub config entry serves (``x`` or ``x-webdataset`` -> ``x``)."""
    name = str(entry.get("config_name", ""))
    if name in inputs.configs:
        return inputs.configs[name]
    matches = [c for c in inputs.configs.values() if name.startswith(c.name)]
    return max(matches, key=lambda c: len(c.name)) if matches else None


def card_metadata(inputs: CardInputs, primary_examples: int,
                  hub: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The YAML front matter as an ordered dict (key order is part of the card's bytes)."""
    entries = [c.entry for c in inputs.configs.values()]
    kinds = sorted({str(e.get("kind")) for e in entries if e.get("kind")})
    licenses = sorted({license_id(str(e.get("license", ""))) for e in entries}) or ["unknown"]
    categories = sorted({c for k in kinds for c in TASK_CATEGORIES.get(k, ())})
    tags = ["trajcorpus", "gato", "tokenized"] + sorted({t for k in kinds
                                                         for t in _KIND_TAGS.get(k, ())})
    hub = hub_config_entries(inputs) if hub is None else hub
    meta: dict[str, Any] = {
        "license": licenses[0] if len(licenses) == 1 else licenses,
    }
    if "other" in licenses:
        meta["license_name"] = "per-config"
        meta["license_details"] = "; ".join(
            f"{c.name}: {c.entry.get('license', 'not recorded')}" for c in inputs.configs.values())
    sources = sorted({_public_source(e) for e in entries} - {""})
    meta.update({
        "pretty_name": _pretty_name(inputs),
        "task_categories": categories or ["other"],
        "size_categories": [size_category(primary_examples)],
        "tags": tags,
        **({"source_datasets": sources} if sources else {}),
        "configs": hub,
        "dataset_info": [_dataset_info(inputs, h, config_of(h, inputs)) for h in hub],
    })
    return meta


def _public_source(entry: dict[str, Any]) -> str:
    """The source's homepage, else its URI when it is a public address (never a local path)."""
    if entry.get("homepage"):
        return str(entry["homepage"])
    uri = str(entry.get("uri") or "")
    return uri if "://" in uri else ""


def _pretty_name(inputs: CardInputs) -> str:
    names = list(inputs.configs)
    if len(names) <= 3:
        return "trajcorpus: " + ", ".join(names) if names else "trajcorpus (empty)"
    return f"trajcorpus: {len(names)} datasets"


class _Dumper(yaml.SafeDumper):
    """Block style, no aliases: a card is read by people."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(meta: Mapping[str, Any]) -> str:
    return yaml.dump(dict(meta), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100)
