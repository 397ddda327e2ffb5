"""``OUT/manifest.json``: every shard with its size, sha256 and example count, per config the job's
record (catalog entry, settings, seed, code version, tokenizer hash). Written last and atomically:
a folder without it is an unfinished run.

One OUT folder holds several configs (one per catalog dataset); each job run rewrites its own
config's entry and keeps the others.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from .. import __version__, fs
from ..errors import ShardError
from .configinfo import check_info
from .layout import DATA_DIR, parse_relpath
from .writer import ShardFile, atomic_open

__all__ = ["MANIFEST", "MANIFEST_VERSION", "Manifest", "write_manifest", "read_manifest",
           "VerifyReport", "verify_output", "sha256_of", "SIDECARS"]

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# files beside the shards that a config's info lists as {path, bytes, sha256}, verified like them:
# the episode index (shards.index) and the statistics state (shards.statsfile)
SIDECARS: tuple[str, ...] = ("index", "statistics_state")
_CHUNK = 8 << 20


@dataclass
class Manifest:
    """The parsed manifest: ``files`` sorted by path, ``configs`` name -> the job's info."""

    files: list[ShardFile]
    configs: dict[str, dict]
    version: int = MANIFEST_VERSION
    created_by: str = f"trajcorpus {__version__}"
    uri: str = ""
    extra: dict = field(default_factory=dict)

    def files_of(self, config: str, split: str | None = None,
                 fmt: str | None = None) -> list[ShardFile]:
        return [f for f in self.files if f.config == config
                and (split is None or f.split == split) and (fmt is None or f.format == fmt)]

    def splits(self, config: str) -> list[str]:
        return sorted({f.split for f in self.files_of(config)})

    def formats(self, config: str) -> list[str]:
        return sorted({f.format for f in self.files_of(config)})

    def totals(self, config: str) -> dict:
        """{format: {split: {"files", "bytes", "examples"}}} for the card and the docs."""
        out: dict = {}
        for f in self.files_of(config):
            t = out.setdefault(f.format, {}).setdefault(f.split, {"files": 0, "bytes": 0,
                                                                  "examples": 0})
            t["files"] += 1
            t["bytes"] += f.bytes
            t["examples"] += f.examples
        return out

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "created_by": self.created_by,
            "configs": {name: {"info": self.configs[name], "totals": self.totals(name)}
                        for name in sorted(self.configs)},
            "files": [f.to_dict() for f in self.files],
            **self.extra,
        }


def _check_files(files: Iterable[ShardFile], config: str) -> list[ShardFile]:
    out = []
    for f in files:
        if not isinstance(f, ShardFile):
            raise ShardError("manifest", f"expected ShardFile records, got {type(f).__name__}")
        name = parse_relpath(f.path)
        if (name.config, name.split, name.format) != (f.config, f.split, f.format):
            raise ShardError(f.path, "record disagrees with its path")
        if f.config != config:
            raise ShardError(f.path, f"belongs to config {f.config!r}, not {config!r}")
        out.append(f)
    seen = set()
    for f in out:
        if f.path in seen:
            raise ShardError(f.path, "listed twice")
        seen.add(f.path)
    for fmt_split in {(f.format, f.split) for f in out}:
        group = [f for f in out if (f.format, f.split) == fmt_split]
        counts = {parse_relpath(f.path).count for f in group}
        indices = sorted(parse_relpath(f.path).index for f in group)
        if len(counts) != 1 or indices != list(range(counts.pop())):
            raise ShardError(f"config {config!r} {fmt_split[0]} split {fmt_split[1]!r}",
                             "shard names are not a complete 00000..n-1 of n series")
    return out


def write_manifest(out: str, files: list[ShardFile], config: str, info: dict) -> str:
    """Write ``OUT/manifest.json`` listing ``files`` for ``config`` (replacing that config's
    previous entry, keeping the others) and return its URI.

    Call it after every shard is in place: its presence marks the run finished. It is written
    whole-or-nothing (:func:`.writer.atomic_open`), so readers never see half a manifest.
    """
    files = _check_files(files, config)
    try:
        info = json.loads(json.dumps(info))  # what a reader will see (tuples become lists)
    except (TypeError, ValueError) as e:
        raise ShardError(f"manifest info of {config!r}", f"not JSON-serialisable: {e}") from None
    check_info(config, info, "manifest being written")
    uri = fs.join(out, MANIFEST)
    old = read_manifest(out) if fs.exists(uri) else Manifest(files=[], configs={})
    kept = [f for f in old.files if f.config != config]
    configs = {k: v for k, v in old.configs.items() if k != config}
    configs[config] = info
    merged = Manifest(files=sorted(kept + files, key=lambda f: f.path), configs=configs)
    text = json.dumps(merged.to_dict(), indent=1, sort_keys=False) + "\n"
    with atomic_open(uri) as f:
        f.write(text.encode("utf-8"))
    return uri


def read_manifest(out: str) -> Manifest:
    uri = fs.join(out, MANIFEST)
    if not fs.exists(uri):
        raise ShardError(uri, "no manifest: the folder is not a finished trajcorpus output "
                         "(the manifest is written last)")
    try:
        with fs.open_uri(uri, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ShardError(uri, f"not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        raise ShardError(uri, f"unsupported manifest version {data.get('version')!r}"
                         if isinstance(data, dict) else "not a JSON object")
    try:
        files = [ShardFile.from_dict(d) for d in data["files"]]
        configs = {name: entry["info"] for name, entry in data["configs"].items()}
    except KeyError as e:
        raise ShardError(uri, f"malformed manifest: missing {e}") from None
    except (TypeError, AttributeError) as e:  # e.g. "configs" a list, a file record a string
        raise ShardError(uri, f"malformed manifest: {e}") from None
    for name, info in configs.items():
        check_info(name, info, uri)
    known = {"version", "created_by", "configs", "files"}
    return Manifest(files=files, configs=configs, version=data["version"],
                    created_by=data.get("created_by", ""), uri=uri,
                    extra={k: v for k, v in data.items() if k not in known})


def sha256_of(uri: str) -> tuple[str, int]:
    """(hex sha256, bytes) of a file, streamed."""
    h = hashlib.sha256()
    n = 0
    with fs.open_uri(uri, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _files_under(out: str, sub: str) -> list[str]:
    """Paths relative to ``out`` of every file under ``out/sub``."""
    root = fs.join(out, sub)
    if not fs.exists(root):
        return []
    base = (fs.local_path(out) if fs.is_local(out) else out).rstrip("/") + "/"
    rels = []
    for uri in fs.walk_files(root):
        path = fs.local_path(uri) if fs.is_local(uri) else uri
        if not path.startswith(base):
            raise ShardError(uri, f"listed outside {out}")
        rels.append(path[len(base):])
    return rels


@dataclass
class VerifyReport:
    """What :func:`verify_output` found; ``ok`` only when nothing is missing, extra or changed."""

    out: str
    checked: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        if self.ok:
            return (f"{self.out}: OK, {self.checked} files, {self.bytes} bytes match "
                    f"{MANIFEST}")
        lines = [f"{self.out}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def verify_output(out: str) -> VerifyReport:
    """Re-hash every shard listed in the manifest; report missing, changed and unlisted files.

    Unlisted means any file under ``OUT/data/`` the manifest does not name (a leftover temporary
    file, a shard of an older run); files outside ``data/`` (card, audit) are not shards.
    """
    report = VerifyReport(out=out)
    try:
        manifest = read_manifest(out)
    except ShardError as e:
        report.problems.append(str(e))
        return report
    listed = {f.path: f for f in manifest.files}
    indexes = {info[k]["path"]: info[k] for info in manifest.configs.values()
               for k in SIDECARS if isinstance(info.get(k), dict)}
    present = set(_files_under(out, DATA_DIR))
    for path in sorted(present - set(listed)):
        report.extra.append(path)
        report.problems.append(f"extra: {path}: not listed in {MANIFEST}")
    for path, rec in sorted(listed.items()):
        if path not in present:
            report.missing.append(path)
            report.problems.append(f"missing: {path}: listed in {MANIFEST}, not on disk")
            continue
        digest, size = sha256_of(fs.join(out, path))
        report.checked += 1
        report.bytes += size
        if size != rec.bytes or digest != rec.sha256:
            report.mismatched.append(path)
            report.problems.append(
                f"changed: {path}: {size} bytes sha256 {digest[:16]}..., manifest says "
                f"{rec.bytes} bytes sha256 {rec.sha256[:16]}...")
    for path, rec in sorted(indexes.items()):
        uri = fs.join(out, path)
        if not fs.exists(uri):
            report.missing.append(path)
            report.problems.append(f"missing: {path}: listed in {MANIFEST}, not on disk")
            continue
        digest, size = sha256_of(uri)
        report.checked += 1
        report.bytes += size
        if size != rec["bytes"] or digest != rec["sha256"]:
            report.mismatched.append(path)
            report.problems.append(f"changed: {path}: {size} bytes sha256 {digest[:16]}..., "
                                   f"manifest says {rec['bytes']} bytes")
    return report
