"""The build cache: each unit's read + tokenize results, content-addressed, so a killed build
resumes and a grown corpus rebuilds only its new units (docs/build-cache.md).

An entry is a folder ``CACHE/kk/KEY/`` holding the unit's spill file (``spill``, the tokenized
windows, written there directly by the reading stage) and ``records.json.zst``: every record the
stage emitted for the unit (window references, episode summaries, rejections, statistics, in
order, with their Beam tags) and the per-unit audit files. KEY is the sha256 of

* the unit's identity (its key, uri and parameters; not its position, which a grown corpus shifts),
* the size and modification time (or object generation) of every file under the paths the kind
  says define the unit (``Source.unit_inputs``: the whole input unless the kind knows better),
* every job setting a unit's records depend on (all of ``JobSpec`` but the output location, the
  shard sizes and the filter, which later stages apply),
* the text model's sha256 (if any), and
* the code version: a hash of the installed trajcorpus sources, Python's version and the
  versions of trajcorpus' runtime dependencies (any code change starts a fresh cache).

``records.json.zst`` is written last and whole (``atomic_open``); an entry without it is unused,
so a worker killed at any point leaves nothing a rerun trusts. Records are stored as JSON through a
small typed encoder (never pickle: docs/security.md), which decodes only trajcorpus classes.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import importlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from .. import fs
from ..errors import TrajcorpusError
from .atomic import atomic_open
from .spec import say

__all__ = ["CACHE_DIR", "NO_CACHE", "CACHE_DIR_HELP", "REUSED", "BuildCache", "cache_root", "plan_cache",
           "code_version", "cached", "encode", "decode", "cache_summary", "clear_cache",
           "reused_units"]

CACHE_DIR = ".trajcorpus-cache"  # under OUT by default (outside the run's staging folder)
NO_CACHE = "none"  # --cache_dir none: no cache
CACHE_DIR_HELP = ("build cache folder (local or gs://): each unit's read and tokenized records, "
                  "so a killed or grown build redoes only new work (default: "
                  f"OUTPUT/{CACHE_DIR}; {NO_CACHE} = no cache)")
REUSED = "reused"  # suffix of the marker a cache hit leaves in the run's units folder
RECORDS = "records.json.zst"
SPILL = "spill"
FORMAT = 2  # 2: the read stage emits one bundle of EpisodeWindows per unit
_IGNORED_SETTINGS = frozenset({"output", "tmp", "num_units", "progress", "shard_bytes",
                               "min_shards", "entry", "input", "filter", "cache"})


@dataclasses.dataclass(frozen=True)
class BuildCache:
    """Where the entries live and each unit's key part known before the job (unit key -> hex)."""

    root: str
    digests: dict[str, str]

    def entry(self, unit_key: str, stage: str, extra: str = "") -> str:
        key = hashlib.sha256(f"{self.digests[unit_key]}|{stage}|{extra}".encode()).hexdigest()
        return fs.join(self.root, key[:2], key)


def cache_root(output: str, cache_dir: str | None) -> str | None:
    """The cache folder for ``--cache_dir`` (None/"" = OUT/.trajcorpus-cache, "none" = off)."""
    if cache_dir and cache_dir.strip().lower() == NO_CACHE:
        return None
    if cache_dir:
        reason = fs.placeholder_reason(cache_dir)
        if reason:
            raise TrajcorpusError("--cache_dir", f"{cache_dir}: {reason}")
        return cache_dir.rstrip("/") if len(cache_dir) > 1 else cache_dir
    return fs.join(output, CACHE_DIR)


# --- keys ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 of every source file of the installed package, Python's version and the versions
    of the runtime dependencies: anything that could change a unit's tokens."""
    import importlib.metadata as md

    h = hashlib.sha256(sys.version.encode())
    pkg = Path(__file__).resolve().parents[1]
    for path in sorted(pkg.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".json", ".yaml", ".txt"):
            h.update(path.relative_to(pkg).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        reqs = md.requires("trajcorpus") or []
    except md.PackageNotFoundError:
        reqs = []
    for req in sorted(r for r in reqs if "extra ==" not in r):
        name = req.split(";")[0].split("[")[0]
        for op in "<>=!~ ":
            name = name.split(op)[0]
        try:
            h.update(f"{name}={md.version(name)}".encode())
        except md.PackageNotFoundError:
            h.update(f"{name}=?".encode())
    return h.hexdigest()


def _settings(spec: Any) -> str:
    out = {}
    for f in dataclasses.fields(spec):
        if f.name in _IGNORED_SETTINGS:
            continue
        value = getattr(spec, f.name)
        out[f.name] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    return json.dumps(out, sort_keys=True, default=repr)


def _stamp(info: dict) -> Any:
    for k in ("mtime_ns", "generation", "md5Hash", "mtime", "updated", "LastModified", "ETag"):
        if info.get(k) is not None:
            return str(info[k])
    return None


def _fingerprint(path: str) -> list:
    """(path, size, modification stamp) of ``path`` or of every file under it."""
    fsys = fs.filesystem(path)
    bare = fs.strip_scheme(path)
    if fs.is_local(path):
        p = Path(fs.local_path(path))
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        return [[str(q), (st := q.stat()).st_size, st.st_mtime_ns] for q in files]
    if fsys.isdir(bare):
        found = fsys.find(bare, detail=True)
        return [[k, int(v.get("size") or 0), _stamp(v)] for k, v in sorted(found.items())]
    info = fsys.info(bare)
    return [[bare, int(info.get("size") or 0), _stamp(info)]]


def plan_cache(spec: Any, source: Any, units: Sequence[Any], root: str | None
               ) -> BuildCache | None:
    """Each unit's key part: identity, input fingerprint, settings and code version."""
    if root is None:
        return None
    base = hashlib.sha256(f"{FORMAT}|{code_version()}|{_settings(spec)}".encode()).hexdigest()
    prints: dict[str, str] = {}
    digests = {}
    for u in units:
        parts = []
        for path in source.unit_inputs(u):
            if path not in prints:
                prints[path] = hashlib.sha256(json.dumps(_fingerprint(path)).encode()).hexdigest()
            parts.append(prints[path])
        ident = json.dumps([u.key, u.uri, repr(u.params), parts])
        digests[u.key] = hashlib.sha256(f"{base}|{ident}".encode()).hexdigest()
    return BuildCache(root, digests)


# --- the hook -----------------------------------------------------------------------------------

def cached(spec: Any, unit: Any, stage: str, extra: str,
           compute: Callable[[str], Iterable[Any]], files: Sequence[str] = ()
           ) -> Iterator[Any]:
    """The records of ``compute(spill_uri)`` for ``unit``, from the cache when an entry exists.

    ``files``: the suffixes of per-unit files ``compute`` writes (``spec.unit_file``); they are
    stored with the records and written back on a hit. A hit leaves a ``reused`` marker beside
    them for the run's summary and card.
    """
    cache = spec.cache
    if cache is None:
        yield from compute(spec.unit_file(unit, SPILL))
        return
    entry = cache.entry(unit.key, stage, extra)
    spill = fs.join(entry, SPILL)
    hit = _load(entry, spill)
    if hit is not None:
        for suffix in files:
            with atomic_open(spec.unit_file(unit, suffix)) as f:
                f.write(hit["files"][suffix].encode("utf-8"))
        if stage == "read":
            with atomic_open(spec.unit_file(unit, REUSED)) as f:
                f.write(entry.encode())
            say(spec, f"read unit {unit.index + 1}/{spec.num_units} {unit.key}: from the build "
                "cache")
        yield from hit["outputs"]
        return
    fs.makedirs(entry)
    outputs = []
    for item in compute(spill):
        outputs.append(item)
        yield item
    stored = {}
    for suffix in files:
        with fs.open_uri(spec.unit_file(unit, suffix), "rb") as f:
            stored[suffix] = f.read().decode("utf-8")
    spill_size = fs.size(spill) if fs.exists(spill) else None
    doc = {"format": FORMAT, "unit": unit.key, "spill_bytes": spill_size, "files": stored,
           "outputs": [encode(o, spill) for o in outputs]}
    data = zstandard.ZstdCompressor(level=3).compress(
        json.dumps(doc, separators=(",", ":"), allow_nan=True).encode())
    with atomic_open(fs.join(entry, RECORDS)) as f:  # last: the entry exists from here on
        f.write(data)


def _load(entry: str, spill: str) -> dict | None:
    uri = fs.join(entry, RECORDS)
    try:
        with fs.open_uri(uri, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(zstandard.ZstdDecompressor().decompressobj().decompress(raw))
        if doc.get("format") != FORMAT:
            return None
        if doc["spill_bytes"] is not None and (
                not fs.exists(spill) or fs.size(spill) != doc["spill_bytes"]):
            return None  # its spill file was removed or replaced: recompute
        doc["outputs"] = [decode(o, spill) for o in doc["outputs"]]
    except (ValueError, KeyError, TypeError, zstandard.ZstdError) as e:
        raise TrajcorpusError(uri, f"unreadable build cache entry ({e}); remove it or the "
                              "whole cache folder (trajcorpus cache OUT --clear)") from None
    return doc


# --- records as JSON ----------------------------------------------------------------------------

def _name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def encode(obj: Any, spill: str = "") -> Any:
    """A JSON-ready form of a record that :func:`decode` turns back into an equal object: numbers
    and arrays bit for bit, tuples, sets and dict keys kept, classes by name."""
    if obj is None or isinstance(obj, (bool, str)):
        return {"S": 1} if spill and obj == spill else obj
    if isinstance(obj, (int, float)) and type(obj) in (int, float):
        return obj
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        return {"A": [a.dtype.str, list(a.shape), base64.b64encode(a.tobytes()).decode()]}
    if isinstance(obj, np.generic):
        return {"N": [obj.dtype.str, base64.b64encode(obj.tobytes()).decode()]}
    if isinstance(obj, bytes):
        return {"B": base64.b64encode(obj).decode()}
    if isinstance(obj, list):
        return [encode(v, spill) for v in obj]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return {"T": _name(obj), "v": [encode(v, spill) for v in obj]}
    if isinstance(obj, tuple):
        return {"t": [encode(v, spill) for v in obj]}
    if isinstance(obj, (set, frozenset)):
        return {"s": sorted((encode(v, spill) for v in obj), key=repr)}
    if isinstance(obj, dict):
        return {"d": [[encode(k, spill), encode(v, spill)] for k, v in obj.items()]}
    tagged = getattr(obj, "tag", None)
    if type(obj).__name__ == "TaggedOutput" and isinstance(tagged, str):
        return {"G": tagged, "v": encode(obj.value, spill)}
    if not type(obj).__module__.startswith("trajcorpus."):
        raise TypeError(f"build cache: cannot store a {_name(obj)}")
    getstate = getattr(type(obj), "__getstate__", None)
    state = obj.__getstate__() if getstate not in (None, object.__getstate__) else vars(obj)
    return {"O": _name(obj), "v": encode(state, spill)}


def _class(name: str) -> type:
    module, _, qual = name.partition(":")
    if not module.startswith("trajcorpus."):  # only our own classes are ever built
        raise ValueError(f"class {name!r} is not a trajcorpus class")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def decode(doc: Any, spill: str = "") -> Any:
    """The inverse of :func:`encode` (the spill marker becomes ``spill``)."""
    if isinstance(doc, list):
        return [decode(v, spill) for v in doc]
    if not isinstance(doc, dict):
        return doc
    (tag, value), *rest = doc.items()
    if tag == "S":
        return spill
    if tag == "A":
        dtype, shape, data = value
        return np.frombuffer(base64.b64decode(data), dtype=np.dtype(dtype)).reshape(shape).copy()
    if tag == "N":
        return np.frombuffer(base64.b64decode(value[1]), dtype=np.dtype(value[0]))[0]
    if tag == "B":
        return base64.b64decode(value)
    if tag == "t":
        return tuple(decode(v, spill) for v in value)
    if tag == "s":
        return {decode(v, spill) for v in value}
    if tag == "d":
        return {decode(k, spill): decode(v, spill) for k, v in value}
    inner = decode(rest[0][1], spill)
    if tag == "T":
        return _class(value)(*inner)
    if tag == "G":
        import apache_beam as beam

        return beam.pvalue.TaggedOutput(value, inner)
    if tag == "O":
        cls = _class(value)
        obj = cls.__new__(cls)
        if hasattr(cls, "__setstate__"):  # the class's own (object has none)
            obj.__setstate__(inner)
        else:
            obj.__dict__.update(inner)
        return obj
    raise ValueError(f"unknown record tag {tag!r}")


# --- the cache folder ---------------------------------------------------------------------------

def cache_summary(root: str) -> tuple[int, int]:
    """(complete entries, bytes) under ``root``."""
    if not fs.exists(root):
        return 0, 0
    entries = total = 0
    for uri in fs.walk_files(root):
        total += fs.size(uri)
        entries += uri.endswith("/" + RECORDS)
    return entries, total


def clear_cache(root: str) -> None:
    fs.remove(root)


def reused_units(tmp_units: str) -> int:
    """How many units of the run came from the cache (their markers in the run's units folder)."""
    try:
        return sum(1 for u in fs.listdir(tmp_units) if u.endswith("." + REUSED))
    except FileNotFoundError:
        return 0

