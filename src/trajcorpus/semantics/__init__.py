"""What the data means: per-dimension names and units of every field, and reference scores.

Names come, in order, from the catalog entry's ``semantics`` block, from the source's own
description (RLDS ``features.json`` descriptions), and from the environment's definition (the
Arcade Learning Environment's action set per game, the Gymnasium MuJoCo joints); a field none of
them describes gets index names, with that said in its ``source``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .. import fs
from .atari import atari_action_meanings
from .mujoco import mujoco_semantics
from .reference import normalized_score, task_references

__all__ = ["describe_task", "rlds_descriptions", "task_references", "normalized_score",
           "atari_action_meanings", "mujoco_semantics"]

_ALE = "Arcade Learning Environment minimal action set of the game (ALE common/Constants.h)"
_SOURCE_NAMES = "the dataset's own per-dimension names (LeRobot meta/info.json features.names)"
_GYM = "Gymnasium MuJoCo environment definition (joint order of the model; qpos[1:] then qvel)"


def _dims(shape: Any) -> int | None:
    return None if shape is None else int(math.prod(shape))


def describe_task(kind: str, task: str, schema: Mapping[str, Mapping[str, Any]],
                  entry_semantics: Mapping[str, Any] | None = None,
                  descriptions: Mapping[str, str] | None = None,
                  source_names: Mapping[str, list[str]] | None = None) -> dict[str, dict]:
    """Field -> {"kind", "shape", "names", "units", "description", "representation", "source"}
    for one task, ``schema`` being field -> {"kind", "shape"} as the job saw it;
    ``source_names``: per-dimension names the source's own metadata gives (LeRobot)."""
    catalog = (entry_semantics or {}).get("fields") or {}
    cat_source = (entry_semantics or {}).get("source") or "catalog.yaml semantics"
    from ..sources.base import get_source  # the kind says which environment names its fields

    environment = get_source(kind).environment
    env = mujoco_semantics(task) if environment == "mujoco" else None
    out: dict[str, dict] = {}
    for field in sorted(schema):
        fkind, shape = schema[field]["kind"], schema[field]["shape"]
        d: dict[str, Any] = {"kind": fkind, "shape": shape, "names": None, "units": None,
                             "description": (descriptions or {}).get(field, ""),
                             "representation": None, "source": None}
        n = _dims(shape)
        given = catalog.get(field)
        if given:
            d.update(names=list(given.get("names") or []) or None,
                     units=list(given.get("units") or []) or None,
                     representation=given.get("representation"), source=cat_source)
            d["description"] = given.get("description") or d["description"]
        elif (source_names or {}).get(field) and n == len(source_names[field]):
            d.update(names=list(source_names[field]), source=_SOURCE_NAMES)
        elif field == "actions" and fkind == "discrete" and environment == "atari":
            meanings = atari_action_meanings(task)
            if meanings:
                d.update(names=meanings, source=_ALE, representation="absolute",
                         description="action index -> joystick action")
        elif env is not None and field in ("actions", "observation") and \
                n == len(env[field]["names"]):
            d.update(names=env[field]["names"], units=env[field]["units"], source=_GYM)
            if field == "actions":
                d["representation"] = "absolute"
        if d["names"] is None and fkind == "continuous" and n:
            d.update(names=[f"{field}[{i}]" for i in range(n)],
                     source=d["source"] or "index (no name in the source, the catalog or the "
                     "environment definition)")
        elif d["source"] is None and d["description"]:
            d["source"] = "source feature description"
        out[field] = d
    return out


def rlds_descriptions(uri: str) -> dict[str, str]:
    """Observation name -> description from an RLDS dataset's ``features.json`` (TFDS)."""
    path = fs.join(uri, "features.json")
    try:
        with fs.open_uri(path, "rb") as f:
            root = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    out: dict[str, str] = {}

    def walk(node: Any, names: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            desc = node.get("description")
            if isinstance(desc, str) and desc and names:
                key = "/".join(names[1:]) if names[0] == "observation" else "/".join(names)
                out.setdefault(key or names[0], desc)
            for k, v in node.items():
                if k == "features" and isinstance(v, dict):
                    for name, child in v.items():
                        walk(child, names + (name,) if name != "steps" else ())
                elif isinstance(v, (dict, list)):
                    walk(v, names)
        elif isinstance(node, list):
            for v in node:
                walk(v, names)

    walk(root, ())
    return out
