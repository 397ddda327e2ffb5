"""The Hugging Face side of OUT: the README ``configs:`` entries and the upload.

SPEC: one config per catalog dataset. ``datasets`` (checked on 5.2) picks ONE builder for a whole
folder or repo, from the file extensions of the first config's ``data_files``; a Parquet config
and a WebDataset config cannot both load from the same folder by name. So every config points
at the folder's primary format: Parquet when every config has Parquet shards (the default:
``datasets`` streams it typed and far faster than tar), else WebDataset when every config has
tar shards. The tar shards of a config written in both formats load with the generic builder:
``load_dataset("webdataset", data_files=webdataset_data_files(manifest, config), ...)``.
"""

from __future__ import annotations

from typing import Any

from .. import fs
from ..errors import ShardError
from .codecs import get_codec, registered_codecs
from .example import FIELD_DTYPES, SEQUENCE_FIELDS
from .layout import config_dir
from .manifest import MANIFEST, Manifest, read_manifest, verify_output
from .tarcodec import MEMBER_NAMES

__all__ = ["hub_configs", "primary_format", "webdataset_data_files", "webdataset_features",
           "publish", "upload_files", "public_manifest", "public_info", "README"]

README = "README.md"


def _data_files(config: str, fmt: str, splits: list[str]) -> list[dict]:
    ext = get_codec(fmt).extension
    return [{"split": s, "path": f"{config_dir(config)}/{s}-*.{ext}"} for s in splits]


def primary_format(manifest: Manifest) -> str:
    """The format every hub config of this folder loads (see the module docstring)."""
    with_files = {c: set(manifest.formats(c)) for c in manifest.configs if manifest.formats(c)}
    for fmt in (c.name for c in registered_codecs()):  # preferred first
        if with_files and all(fmt in f for f in with_files.values()):
            return fmt
    if not with_files:  # every input rejected or filtered: nothing to load, no config entry
        return registered_codecs()[0].name
    only = {c: sorted(f)[0] for c, f in with_files.items() if len(f) == 1}
    raise ShardError(manifest.uri or "manifest", "configs with no format in common cannot "
                     f"share a folder ({only}): datasets loads one format per folder; rerun "
                     "one of them with --format both or into another folder")


def hub_configs(manifest: Manifest) -> list[dict]:
    """The README YAML ``configs:`` list that makes ``load_dataset(OUT, CONFIG, split=...)``
    find each config's shards, locally and on the hub."""
    fmt = primary_format(manifest)
    entries = []
    for config in sorted(manifest.configs):
        splits = sorted({f.split for f in manifest.files_of(config, fmt=fmt)})
        if splits:
            entries.append({"config_name": config,
                            "data_files": _data_files(config, fmt, splits)})
    return entries


def webdataset_data_files(manifest: Manifest, config: str) -> dict[str, str]:
    """split -> glob (relative to OUT) of a config's tar shards, for
    ``load_dataset("webdataset", data_files=...)``; prefix OUT or ``hf://datasets/REPO/``."""
    return {e["split"]: e["path"] for e in _data_files(
        config, "webdataset", manifest.splits(config)) if manifest.files_of(
            config, e["split"], "webdataset")}


def webdataset_features() -> Any:
    """The ``datasets.Features`` of our tar shards, for ``load_dataset("webdataset", ...,
    features=webdataset_features())``.

    Without it ``datasets`` infers types from the first five samples; if those have no image
    patches it types ``patches`` as a list of nulls and a full (non-streaming) load then fails.
    """
    import datasets

    def ints(dtype: str, depth: int = 1) -> Any:
        f: Any = datasets.Value(dtype)
        for _ in range(depth):
            f = datasets.List(f)
        return f

    feats = {"__key__": datasets.Value("string"), "__url__": datasets.Value("string"),
             MEMBER_NAMES["meta"]: datasets.Value("string")}
    for field in SEQUENCE_FIELDS:
        feats[MEMBER_NAMES[field]] = ints(str(FIELD_DTYPES[field]))
    feats[MEMBER_NAMES["patches"]] = ints("uint8", 4)
    feats[MEMBER_NAMES["patch_position"]] = ints("int16", 2)
    return datasets.Features(feats)


def publish(out: str, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload a finished, verified local OUT folder as the dataset repo ``repo_id``; returns
    the repo URL.

    Refuses unfinished or damaged folders (verify_output must pass) and folders without the
    dataset card, whose ``configs:`` is what makes the hub copy loadable.
    """
    from huggingface_hub import HfApi

    if not fs.is_local(out):
        raise ShardError(out, "publish uploads a local folder; copy the output locally first "
                         "(e.g. gcloud storage cp -r)")
    report = verify_output(out)
    if not report.ok:
        raise ShardError(out, "refusing to publish: " + "; ".join(report.problems[:3]))
    readme = fs.join(out, README)
    if not fs.exists(readme):
        raise ShardError(readme, "missing: write the dataset card first (trajcorpus card OUT)")
    from huggingface_hub import CommitOperationAdd

    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=data)
           for rel, data in upload_files(out)]
    api.create_commit(repo_id=repo_id, repo_type="dataset", operations=ops,
                      commit_message=f"trajcorpus: {', '.join(sorted(read_manifest(out).configs))}")
    return str(url)


_SKIP = (".trajcorpus-tmp/", ".trajcorpus-cache/", ".cache/")  # temporaries, build cache


def upload_files(out: str) -> list[tuple[str, Any]]:
    """(path in the repo, local file or bytes) of what :func:`publish` uploads: every file of
    OUT except temporary ones, with the manifest's local input paths reduced to a marker
    (``fs.public_location``) so the upload does not carry the builder's folders."""
    import os

    root = fs.local_path(out)
    files: list[tuple[str, Any]] = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if rel.startswith(_SKIP) or "/.cache/" in rel or ".tmp-" in name:
                continue
            files.append((rel, public_manifest(out) if rel == MANIFEST else path))
    return files


def public_info(info: dict) -> dict:
    """A config's manifest info with its local input location (the ``--input`` as given, the
    catalog entry's uri, the rebuild command) reduced to a marker by ``fs.public_location``."""
    import copy
    import shlex

    info = copy.deepcopy(info)
    given = info.get("input")
    entry = info.get("catalog_entry") or {}
    for raw in {given, entry.get("uri")} - {None}:
        public = fs.public_location(str(raw))
        if public == raw:
            continue
        if isinstance(info.get("command"), str):
            info["command"] = info["command"].replace(shlex.quote(raw), shlex.quote(public))
        if given == raw:
            info["input"] = public
        if entry.get("uri") == raw:
            entry["uri"] = public
    return info


def public_manifest(out: str) -> bytes:
    """OUT/manifest.json with every config's local input location reduced to a marker."""
    import json

    with fs.open_uri(fs.join(out, MANIFEST), "rb") as f:
        data = json.load(f)
    for cfg in data.get("configs", {}).values():
        if "info" in cfg:
            cfg["info"] = public_info(cfg["info"])
    return (json.dumps(data, indent=1) + "\n").encode("utf-8")
