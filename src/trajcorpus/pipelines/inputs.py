"""What the job checks before it starts: the input (placeholder, existence, one dataset or a
root of several), the output folder (a file in the way, a finished output, unrelated files), and
the root that lineage paths are made relative to.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from .. import fs
from ..errors import TrajcorpusError
from ..schemas.catalog import DatasetEntry
from ..schemas.records import AUDIT_DIR
from ..sources.base import get_source
from .buildcache import CACHE_DIR

__all__ = ["TMP_DIR", "OUTPUT_NAMES", "check_output", "reader_options", "lineage_root"]

TMP_DIR = ".trajcorpus-tmp"


OUTPUT_NAMES = frozenset({"manifest.json", "README.md", "data", AUDIT_DIR, "tokenizer", "card",
                          TMP_DIR, CACHE_DIR})


def check_output(output: str, config: str, overwrite: bool) -> None:
    """Refuse to replace a finished output of ``config``, or to write into a folder that holds
    files a run did not make, unless ``overwrite``; a file in the way or a placeholder URI is
    always refused."""
    reason = fs.placeholder_reason(output)
    if reason:
        raise TrajcorpusError(output, reason)
    if fs.is_local(output):
        path = fs.local_path(output)
        if os.path.exists(path) and not os.path.isdir(path):
            raise TrajcorpusError(output, "exists and is a file; --output names a folder")
    if overwrite or not fs.exists(output):
        return
    manifest = fs.join(output, "manifest.json")
    if fs.exists(manifest):
        with fs.open_uri(manifest, "rb") as f:
            configs = json.load(f).get("configs", {})
        if config in configs:
            raise TrajcorpusError(output, f"already holds a finished {config} output; pass "
                                  "--overwrite to replace it (its shards, audit and card "
                                  "entry), or choose another --output")
        return
    others = sorted(u.rstrip("/").rsplit("/", 1)[-1] for u in fs.listdir(output))
    others = [n for n in others if n not in OUTPUT_NAMES]
    if others:
        raise TrajcorpusError(output, (
            f"holds {len(others)} file(s) or folder(s) that are not a trajcorpus output (e.g. "
            f"{others[0]!r}); choose an empty or new folder, or pass --overwrite to write into "
            "it anyway"))


def reader_options(entry: DatasetEntry, uri: str, from_input: bool,
                    overrides: Mapping[str, Any] | None) -> dict:
    """The catalog entry's reader options, without its sub-dataset selection when ``--input``
    names one dataset (said on stderr), then the ``--option`` overrides. Which options select
    sub-datasets, and whether ``uri`` is one dataset, the kind's Source class says."""
    options = dict(entry.options)
    source = get_source(entry.kind)
    picked = [k for k in source.selection_options if k in options]
    if from_input and picked and not any(k in (overrides or {}) for k in picked) \
            and source.is_single_dataset(uri):
        for k in picked:
            del options[k]
        shown = ", ".join(f"options.{k}" for k in picked)
        print(f"trajcorpus: note: {uri} is one {entry.kind} dataset: read as such; the catalog "
              f"entry's {shown} (which select datasets under its uri) not applied",
              file=sys.stderr, flush=True)
    options.update(overrides or {})
    return options


def lineage_root(uri: str) -> str:
    """What lineage paths are made relative to: the input folder, or the folder of an input
    file (so a file input's lineage keeps its own name)."""
    try:
        is_file = fs.filesystem(uri).isfile(fs.strip_scheme(uri))
    except Exception:  # a listing that fails here fails in the readers with a better message
        is_file = False
    root = uri.rstrip("/") if len(uri) > 1 else uri
    return root.rsplit("/", 1)[0] if is_file and "/" in root else ("" if is_file else root)
