"""``manifest.json`` written and read: the exact file, the merge of configs, the record checks and
every read error (found by mutation testing: docs/mutation-testing.md). The records are built by
hand here and the expected JSON is spelt out from them, never read back from our own output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trajcorpus import __version__
from trajcorpus.errors import ShardError
from trajcorpus.shards import ShardFile, read_manifest, write_manifest
from trajcorpus.shards.manifest import Manifest


def rec(config: str, split: str, fmt: str, index: int, count: int, size: int,
        examples: int) -> ShardFile:
    ext = {"parquet": "parquet", "webdataset": "tar.gz"}[fmt]
    return ShardFile(path=f"data/{config}/{split}-{index:05d}-of-{count:05d}.{ext}",
                     bytes=size, sha256=f"{index:x}" * 64, examples=examples, config=config,
                     split=split, format=fmt)


def as_json(f: ShardFile) -> dict:
    return {"path": f.path, "bytes": f.bytes, "sha256": f.sha256, "examples": f.examples,
            "config": f.config, "split": f.split, "format": f.format}


BETA = [rec("beta", "train", "parquet", 1, 2, 30, 3), rec("beta", "train", "parquet", 0, 2, 20, 2)]
ALPHA = [rec("alpha", "train", "webdataset", 0, 1, 100, 5),
         rec("alpha", "train", "parquet", 1, 2, 7, 1),
         rec("alpha", "test", "parquet", 0, 1, 11, 4),
         rec("alpha", "train", "parquet", 0, 2, 13, 2)]


def test_the_manifest_file_is_exactly_the_records_given(tmp_path):
    write_manifest(str(tmp_path), BETA, "beta", {"seed": 2})
    uri = write_manifest(str(tmp_path), ALPHA, "alpha",
                         {"seed": 1, "settings": {"formats": ("parquet", "webdataset")}})
    assert uri == f"{tmp_path}/manifest.json"
    want = {
        "version": 1,
        "created_by": f"trajcorpus {__version__}",
        "configs": {
            "alpha": {"info": {"seed": 1, "settings": {"formats": ["parquet", "webdataset"]}},
                      # in the order of the sorted paths: test-*.parquet, train-*.tar.gz, ...
                      "totals": {"parquet": {"test": {"files": 1, "bytes": 11, "examples": 4},
                                             "train": {"files": 2, "bytes": 20,
                                                       "examples": 3}},
                                 "webdataset": {"train": {"files": 1, "bytes": 100,
                                                          "examples": 5}}}},
            "beta": {"info": {"seed": 2},
                     "totals": {"parquet": {"train": {"files": 2, "bytes": 50,
                                                      "examples": 5}}}},
        },
        "files": [as_json(f) for f in (ALPHA[2], ALPHA[0], ALPHA[3], ALPHA[1], BETA[1],
                                       BETA[0])],
    }
    text = (tmp_path / "manifest.json").read_text(encoding="utf-8")
    assert text == json.dumps(want, indent=1) + "\n"


def test_a_manifest_read_back_has_its_files_configs_and_totals(tmp_path):
    write_manifest(str(tmp_path), BETA, "beta", {"seed": 2})
    write_manifest(str(tmp_path), ALPHA, "alpha", {"seed": 1})
    m = read_manifest(str(tmp_path))
    assert m.uri == f"{tmp_path}/manifest.json" and m.version == 1
    assert m.created_by == f"trajcorpus {__version__}" and m.extra == {}
    assert m.configs == {"beta": {"seed": 2}, "alpha": {"seed": 1}}
    assert [f.path for f in m.files] == sorted(f.path for f in ALPHA + BETA)
    assert m.files_of("alpha") == [ALPHA[2], ALPHA[0], ALPHA[3], ALPHA[1]]
    assert m.files_of("alpha", split="train") == [ALPHA[0], ALPHA[3], ALPHA[1]]
    assert m.files_of("alpha", fmt="parquet") == [ALPHA[2], ALPHA[3], ALPHA[1]]
    assert m.files_of("alpha", "train", "parquet") == [ALPHA[3], ALPHA[1]]
    assert m.files_of("gamma") == []
    assert m.splits("alpha") == ["test", "train"] and m.splits("beta") == ["train"]
    assert m.formats("alpha") == ["parquet", "webdataset"] and m.formats("beta") == ["parquet"]
    assert m.totals("beta") == {"parquet": {"train": {"files": 2, "bytes": 50, "examples": 5}}}


def test_rewriting_a_config_replaces_only_its_entry(tmp_path):
    write_manifest(str(tmp_path), ALPHA, "alpha", {"seed": 1})
    write_manifest(str(tmp_path), BETA, "beta", {"seed": 2})
    one = [rec("alpha", "train", "parquet", 0, 1, 9, 9)]
    write_manifest(str(tmp_path), one, "alpha", {"seed": 3})
    m = read_manifest(str(tmp_path))
    assert m.configs == {"beta": {"seed": 2}, "alpha": {"seed": 3}}
    assert m.files == [one[0], BETA[1], BETA[0]]


def test_unknown_top_level_keys_survive_a_rewrite(tmp_path):
    """A key a newer writer added (e.g. a publisher's note) is kept, after the known ones."""
    write_manifest(str(tmp_path), BETA, "beta", {})
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["note"] = {"by": "hand"}
    del raw["created_by"]
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    m = read_manifest(str(tmp_path))
    assert m.extra == {"note": {"by": "hand"}} and m.created_by == ""
    assert m.to_dict() == {"version": 1, "created_by": "",
                           "configs": {"beta": {"info": {}, "totals": m.totals("beta")}},
                           "files": [as_json(BETA[1]), as_json(BETA[0])],
                           "note": {"by": "hand"}}


@pytest.mark.parametrize("files, config, message", [
    ([BETA[1].path], "beta", "manifest: expected ShardFile records, got str"),
    ([ShardFile(**dict(as_json(BETA[1]), split="test")), BETA[0]], "beta",
     "data/beta/train-00000-of-00002.parquet: record disagrees with its path"),
    ([ShardFile(**dict(as_json(BETA[1]), config="alpha")), BETA[0]], "beta",
     "data/beta/train-00000-of-00002.parquet: record disagrees with its path"),
    ([ShardFile(**dict(as_json(BETA[1]), format="webdataset")), BETA[0]], "beta",
     "data/beta/train-00000-of-00002.parquet: record disagrees with its path"),
    (BETA, "alpha", "data/beta/train-00001-of-00002.parquet: belongs to config 'beta', "
     "not 'alpha'"),
    ([*BETA, BETA[0]], "beta", "data/beta/train-00001-of-00002.parquet: listed twice"),
    ([BETA[1]], "beta", "config 'beta' parquet split 'train': shard names are not a complete "
     "00000..n-1 of n series"),
    ([BETA[0]], "beta", "config 'beta' parquet split 'train': shard names are not a complete "
     "00000..n-1 of n series"),
    ([*BETA, rec("beta", "train", "parquet", 2, 3, 1, 1)], "beta",
     "config 'beta' parquet split 'train': shard names are not a complete 00000..n-1 of n "
     "series"),
    ([rec("beta", "train", "parquet", 0, 3, 1, 1), rec("beta", "train", "parquet", 1, 3, 1, 1),
      rec("beta", "train", "parquet", 1, 2, 1, 1)], "beta",
     "config 'beta' parquet split 'train': shard names are not a complete 00000..n-1 of n "
     "series"),
])
def test_bad_records_are_refused_with_their_reason(tmp_path, files, config, message):
    with pytest.raises(ShardError) as err:
        write_manifest(str(tmp_path), files, config, {})
    assert str(err.value) == message
    assert not (tmp_path / "manifest.json").exists()


def test_each_format_and_split_is_its_own_series(tmp_path):
    """A complete series per (format, split): 1 + 2 + 3 shards under different counts."""
    files = [rec("c", "train", "webdataset", 0, 1, 1, 1),
             rec("c", "test", "parquet", 0, 2, 1, 1), rec("c", "test", "parquet", 1, 2, 1, 1),
             *(rec("c", "train", "parquet", i, 3, 1, 1) for i in range(3))]
    write_manifest(str(tmp_path), files, "c", {})
    assert len(read_manifest(str(tmp_path)).files) == 6


def test_info_that_is_not_json_is_refused(tmp_path):
    with pytest.raises(ShardError) as err:
        write_manifest(str(tmp_path), BETA, "beta", {"catalog_entry": {"x": {1, 2}}})
    assert str(err.value).startswith("manifest info of 'beta': not JSON-serialisable: "
                                     "Object of type set")
    assert not (tmp_path / "manifest.json").exists()


def write_raw(out: Path, data: bytes) -> str:
    (out / "manifest.json").write_bytes(data)
    return f"{out}/manifest.json"


@pytest.mark.parametrize("data, reason", [
    (b"{", "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
     "(char 1)"),
    (b"\xff{}", "not valid JSON: 'utf-8' codec can't decode byte 0xff in position 0: invalid "
     "start byte"),
    (b"[1]", "not a JSON object"),
    (b'{"version": 2}', "unsupported manifest version 2"),
    (b'{"files": []}', "unsupported manifest version None"),
    (b'{"version": 1, "configs": {}}', "malformed manifest: missing 'files'"),
    (b'{"version": 1, "files": []}', "malformed manifest: missing 'configs'"),
    (b'{"version": 1, "files": [{"path": "p"}], "configs": {}}',
     "malformed manifest: missing 'bytes'"),
    (b'{"version": 1, "files": [], "configs": {"c": {}}}', "malformed manifest: missing 'info'"),
    (b'{"version": 1, "files": [], "configs": []}',
     "malformed manifest: 'list' object has no attribute 'items'"),
    (b'{"version": 1, "files": ["p"], "configs": {}}',
     "malformed manifest: string indices must be integers, not 'str'"),
])
def test_a_bad_manifest_file_is_one_error_naming_it(tmp_path, data, reason):
    uri = write_raw(tmp_path, data)
    with pytest.raises(ShardError) as err:
        read_manifest(str(tmp_path))
    assert str(err.value) == f"{uri}: {reason}"


def test_a_folder_without_a_manifest(tmp_path):
    with pytest.raises(ShardError) as err:
        read_manifest(str(tmp_path))
    assert str(err.value) == (f"{tmp_path}/manifest.json: no manifest: the folder is not a "
                              "finished trajcorpus output (the manifest is written last)")


def test_a_new_manifest_defaults():
    m = Manifest(files=[], configs={})
    assert (m.version, m.created_by, m.uri, m.extra) == (1, f"trajcorpus {__version__}", "", {})


def test_a_bad_config_record_read_back_names_the_manifest(tmp_path):
    write_manifest(str(tmp_path), BETA, "beta", {"seed": 2})
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["configs"]["beta"]["info"]["seed"] = "2"
    uri = write_raw(tmp_path, json.dumps(raw).encode())
    with pytest.raises(ShardError) as err:
        read_manifest(str(tmp_path))
    assert str(err.value) == f"{uri} config 'beta' field 'info.seed': Input should be a valid integer"


def test_a_bad_config_record_being_written_is_named(tmp_path):
    with pytest.raises(ShardError) as err:
        write_manifest(str(tmp_path), BETA, "beta", {"seed": "2"})
    assert str(err.value) == ("manifest being written config 'beta' field 'info.seed': Input "
                              "should be a valid integer")
