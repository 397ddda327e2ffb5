"""Hugging Face image Parquet reader on files built here with pyarrow in the layout ``datasets``
writes (``struct<bytes, path>`` image column, the ``huggingface`` schema metadata), PNGs encoded
by PIL from known arrays: which column is the image and which the caption, the names and ids of
records, and the exact text of every refusal.

Written for the mutation run of docs/mutation-testing.md; ground truth is the arrays fed in.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import hf_parquet, open_source

DATASET = "my-hf"
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(seed: int) -> tuple[bytes, np.ndarray]:
    arr = np.random.default_rng(seed).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue(), arr


def images(seeds: list[int], type_: pa.DataType = IMAGE) -> tuple[pa.Array, list[np.ndarray]]:
    blobs, arrays = zip(*(png(s) for s in seeds), strict=True)
    rows = [{"bytes": b, "path": f"/home/me/{s}.png"} for b, s in zip(blobs, seeds, strict=True)]
    rows = [{k: v for k, v in r.items() if type_.get_field_index(k) >= 0} for r in rows]
    return pa.array(rows, type=type_), list(arrays)


def write(path: Path, columns: dict[str, pa.Array], features: dict | None = None) -> None:
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()} \
        if features is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns).replace_schema_metadata(meta), path)


def read(uri, **kwargs) -> tuple[list[Episode], list[Rejected]]:
    items = list(open_source("hf-image-parquet", str(uri), dataset=DATASET, **kwargs).read())
    return ([x for x in items if isinstance(x, Episode)],
            [x for x in items if isinstance(x, Rejected)])


def unit_error(uri, **options) -> str:
    src = open_source("hf-image-parquet", str(uri), options=options)
    with pytest.raises(SourceError) as e:
        list(src.read_unit(src.units()[0]))
    return str(e.value)


def test_units_names_and_ids_follow_the_hub_layout(tmp_path):
    img, arrs = images([0, 1])
    for name in ("data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
                 "extra/notes.v2.parquet"):
        write(tmp_path / name, {"image": img, "caption": pa.array(["a cat", "a dog"])})
    src = open_source("hf-image-parquet", str(tmp_path), dataset=DATASET,
                      agent_template="{agent}|{split}|{file}|{task}")
    assert [(u.key, u.index, u.param("file_index"), u.param("name"), u.param("agent"))
            for u in src.units()] == [
        ("data/train-00000-of-00002.parquet", 0, 0, "data/train-00000-of-00002",
         f"train|train|train-00000-of-00002|{DATASET}"),
        ("data/train-00001-of-00002.parquet", 1, 1, "data/train-00001-of-00002",
         f"train|train|train-00001-of-00002|{DATASET}"),
        ("extra/notes.v2.parquet", 2, 2, "extra/notes.v2", f"notes.v2||notes.v2|{DATASET}")]
    eps, bad = read(tmp_path)
    assert not bad
    assert [(e.episode_id, e.order, e.text(), e.task, e.agent) for e in eps] == [
        ("data/train-00000-of-00002:0", (0, 0), "a cat", DATASET, "train"),
        ("data/train-00000-of-00002:1", (0, 1), "a dog", DATASET, "train"),
        ("data/train-00001-of-00002:0", (1, 0), "a cat", DATASET, "train"),
        ("data/train-00001-of-00002:1", (1, 1), "a dog", DATASET, "train"),
        ("extra/notes.v2:0", (2, 0), "a cat", DATASET, "notes.v2"),
        ("extra/notes.v2:1", (2, 1), "a dog", DATASET, "notes.v2")]
    for ep, arr in zip(eps, arrs * 3, strict=True):
        assert np.array_equal(ep.observations["image"][0], arr)
    one = tmp_path / "data/train-00001-of-00002.parquet"
    src = open_source("hf-image-parquet", str(one), dataset=DATASET)
    assert [(u.key, u.param("name")) for u in src.units()] == [
        ("train-00001-of-00002.parquet", "train-00001-of-00002")]
    eps, _ = read(one, options={"task": "T", "agent": "A"})
    assert [(e.episode_id, e.order, e.task, e.agent, e.source) for e in eps] == [
        ("train-00001-of-00002:0", (0, 0), "T", "A", {"uri": str(one), "row": 0,
                                                      "path": "/home/me/0.png"}),
        ("train-00001-of-00002:1", (0, 1), "T", "A", {"uri": str(one), "row": 1,
                                                      "path": "/home/me/1.png"})]


def test_the_metadata_names_the_columns_before_the_schema_order(tmp_path):
    thumbs, _ = images([5, 6])
    imgs, arrs = images([7, 8])
    columns = {"thumb": thumbs, "alt": pa.array(["alt 0", "alt 1"]),
               "grid": pa.array(["g", "h"]), "image": imgs,
               "caption": pa.array(["caption 0", "caption 1"])}
    features = {"alt_len": {"_type": "Value", "dtype": "int64"},
                "grid": {"_type": "Array2D", "dtype": "string", "shape": [1, 1]},
                "caption": {"_type": "Value", "dtype": "string"},
                "image": {"_type": "Image"}, "thumb": {"_type": "Value", "dtype": "binary"},
                "alt": {"_type": "Value", "dtype": "large_string"}, "odd": ["not", "a", "dict"]}
    write(tmp_path / "a.parquet", columns, features)
    eps, bad = read(tmp_path / "a.parquet")
    assert not bad and [e.text() for e in eps] == ["caption 0", "caption 1"]
    for ep, arr in zip(eps, arrs, strict=True):
        assert np.array_equal(ep.observations["image"][0], arr)
    # large_string Value features count as captions too; without metadata the schema order rules
    write(tmp_path / "b.parquet", columns, {"caption": {"_type": "Value",
                                                       "dtype": "large_string"},
                                           "image": {"_type": "Image"}})
    assert [e.text() for e in read(tmp_path / "b.parquet")[0]] == ["caption 0", "caption 1"]
    for meta in (None, {}):  # no features at all, or metadata without "info"
        path = tmp_path / f"c{meta is None}.parquet"
        write(path, columns)
        if meta is not None:
            pq.write_table(pq.read_table(path).replace_schema_metadata(
                {b"huggingface": json.dumps(meta).encode()}), path)
        eps, bad = read(path)
        assert not bad and [e.text() for e in eps] == ["alt 0", "alt 1"]
        assert np.array_equal(eps[0].observations["image"][0], png(5)[1])


def test_image_structs_without_a_path_or_with_the_path_first(tmp_path):
    no_path, arrs = images([1, 2], pa.struct([("bytes", pa.binary())]))
    write(tmp_path / "a.parquet", {"image": no_path, "caption": pa.array(["x", "y"])})
    eps, bad = read(tmp_path / "a.parquet")
    assert not bad and [e.source["path"] for e in eps] == [None, None]
    assert np.array_equal(eps[1].observations["image"][0], arrs[1])
    path_first, arrs = images([3], pa.struct([("path", pa.string()), ("bytes", pa.binary())]))
    write(tmp_path / "b.parquet", {"image": path_first, "caption": pa.array(["z"])})
    eps, bad = read(tmp_path / "b.parquet")
    assert not bad and eps[0].source["path"] == "/home/me/3.png"
    assert np.array_equal(eps[0].observations["image"][0], arrs[0])


def test_binary_and_all_null_caption_columns(tmp_path):
    img, arrs = images([4, 5])
    write(tmp_path / "a.parquet", {"image": img, "caption": pa.array([b"bytes \xc3\xa9", b"b"])},
          {"image": {"_type": "Image"}})
    eps, _ = read(tmp_path / "a.parquet", options={"caption_column": "caption"})
    assert [e.text() for e in eps] == ["bytes é", "b"]
    write(tmp_path / "b.parquet", {"image": img, "caption": pa.array([None, None])})
    eps, bad = read(tmp_path / "b.parquet", options={"caption_column": "caption"})
    assert not eps and [(r.dataset, r.location, r.reason, r.kind, r.task) for r in bad] == [
        (DATASET, f"{tmp_path}/b.parquet [row {i}]", "caption is missing", "episode", DATASET)
        for i in (0, 1)]


def test_an_image_over_the_size_limit_is_refused_and_one_at_it_is_read(tmp_path, monkeypatch):
    (blob, arr), (other, _) = png(6), png(7)
    other += b"\0" * 8  # PNG readers ignore bytes after IEND: only its size differs
    img = pa.array([{"bytes": blob, "path": None}, {"bytes": other, "path": None}], IMAGE)
    arrs, sizes = [arr], [len(blob), len(other)]
    write(tmp_path / "a.parquet", {"image": img, "caption": pa.array(["at", "over"])})
    monkeypatch.setattr(hf_parquet, "MAX_IMAGE_BYTES", sizes[0])
    assert sizes[1] > sizes[0]
    eps, bad = read(tmp_path / "a.parquet", options={"task": "T"})
    assert [e.text() for e in eps] == ["at"]
    assert np.array_equal(eps[0].observations["image"][0], arrs[0])
    assert [(r.dataset, r.location, r.reason, r.task) for r in bad] == [
        (DATASET, f"{tmp_path}/a.parquet [row 1]",
         f"image of {sizes[1]} bytes exceeds the limit of {sizes[0]}", "T")]


def test_column_errors_name_the_file_column_and_reason(tmp_path):
    img, _ = images([1])
    p = tmp_path / "x.parquet"
    write(p, {"picture": pa.array([1]), "caption": pa.array(["c"])})
    assert unit_error(p) == (f"{p} [image_column]: no image column '' (columns: ['picture', "
                             "'caption']; set option image_column)")
    write(p, {"image": img, "n": pa.array([1])})
    assert unit_error(p) == (f"{p} [caption_column]: no caption column '' (columns: ['image', "
                             "'n']; set option caption_column)")
    assert unit_error(p, caption_column="nope") == (
        f"{p} [caption_column]: no caption column 'nope' (columns: ['image', 'n']; set option "
        "caption_column)")
    assert unit_error(p, caption_column="n") == f"{p} [n]: caption column must hold text, got int64"
    write(p, {"image": img, "caption": pa.array(["c"])})
    assert unit_error(p, image_column="caption") == (
        f"{p} [caption]: expected struct<bytes, path>, got string")
    write(p, {"image": pa.array([{"bytes": b"x", "path": 3}],
                                pa.struct([("bytes", pa.binary()), ("path", pa.int64())])),
              "caption": pa.array(["c"])})
    assert unit_error(p) == f"{p} [image.path]: image field 'path' must be string, got int64"
    write(p, {"image": pa.array([{"bytes": "x"}], pa.struct([("bytes", pa.string())])),
              "caption": pa.array(["c"])})
    assert unit_error(p, image_column="image") == (
        f"{p} [image.bytes]: image field 'bytes' must be binary, got string")
    pq.write_table(pa.Table.from_arrays([img, pa.array(["c"]), pa.array(["d"])],
                                        names=["image", "caption", "caption"]), p)
    assert unit_error(p, caption_column="caption") == (
        f"{p} [caption]: column name appears more than once in the schema")


def test_unreadable_huggingface_metadata_is_named(tmp_path):
    img, _ = images([1])
    p = tmp_path / "x.parquet"
    pq.write_table(pa.table({"image": img, "caption": pa.array(["c"])}).replace_schema_metadata(
        {b"huggingface": b"{not json"}), p)
    assert unit_error(p) == (f"{p} [huggingface]: not a JSON 'huggingface' metadata: Expecting "
                             "property name enclosed in double quotes (line 1, column 2)")


def test_a_file_two_folders_deep_is_named_by_its_own_stem(tmp_path):
    img, _ = images([1])
    write(tmp_path / "hub/cfg/test/test-00003-of-00004.parquet",
          {"image": img, "caption": pa.array(["c"])})
    (unit,) = open_source("hf-image-parquet", str(tmp_path / "hub")).units()
    assert (unit.key, unit.param("name"), unit.param("agent")) == (
        "cfg/test/test-00003-of-00004.parquet", "cfg/test/test-00003-of-00004", "test")
    with pytest.raises(SourceError) as e:
        open_source("hf-image-parquet", str(tmp_path / "hub/cfg/none")).units()
    assert str(e.value) == f"{tmp_path}/hub/cfg/none: no .parquet files found"
