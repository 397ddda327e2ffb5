"""COCO captions reader on annotation files written here in the cocodataset.org layout, with
PNG images encoded by PIL from known arrays: which caption goes with which image, the order of
records and units, the image folder, and the exact text of every ambiguity it refuses.

Written for the mutation run of docs/mutation-testing.md; ground truth is what was written.
"""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source

DOC = {
    "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"},
               {"id": 2, "file_name": "c.png"}, {"id": 3, "file_name": "a.png"},
               {"id": "x", "file_name": "d.png"}, {"id": 4, "file_name": "d.png"},
               {"id": 5, "file_name": "e.png"}, {"id": 0, "file_name": "sub/f.png"}],
    "annotations": [
        {"id": 10, "image_id": 1, "caption": "one"}, {"id": 11, "image_id": 2, "caption": "two"},
        {"id": 12, "image_id": 3, "caption": "three"}, {"id": 13, "image_id": 4, "caption": "x"},
        {"id": 13, "image_id": 4, "caption": "y"}, {"id": "q", "image_id": 4},
        {"id": 14, "image_id": 99, "caption": "z"}, {"id": 9, "image_id": 4, "caption": "four"},
        {"id": 21, "image_id": 5, "caption": "five b"},
        {"id": 20, "image_id": 5, "caption": "five a"},
        {"id": 30, "image_id": 0, "caption": "zero"}],
}


def pixels(name: str) -> np.ndarray:
    return np.random.default_rng(sum(map(ord, name))).integers(0, 256, (2, 3, 3), np.uint8)


def make(root: Path, split: str = "train", folder: str | None = None, doc=DOC) -> Path:
    (root / "annotations").mkdir(parents=True)
    for name in "abcde":
        (root / (folder or split)).mkdir(exist_ok=True)
        Image.fromarray(pixels(name)).save(root / (folder or split) / f"{name}.png")
    (root / (folder or split) / "sub").mkdir()
    Image.fromarray(pixels("f")).save(root / (folder or split) / "sub/f.png")
    ann = root / f"annotations/captions_{split}.json"
    ann.write_text(json.dumps(doc))
    return ann


def split(items) -> tuple[list[Episode], list[Rejected]]:
    items = list(items)
    return ([x for x in items if isinstance(x, Episode)],
            [x for x in items if isinstance(x, Rejected)])


def test_each_caption_is_paired_only_with_an_unambiguous_image(tmp_path):
    ann = str(make(tmp_path))
    src = open_source("coco-captions", str(tmp_path), dataset="c",
                      options={"images_per_unit": 2, "task": "T"},
                      agent_template="{agent}/{split}/{task}")
    units = src.units()
    assert [u.key for u in units] == ["captions_train/images from 0",
                                      "captions_train/images from 5"]
    assert [u.index for u in units] == [0, 1]
    assert units[1].param("problems") is None
    eps, bad = split(src.read())
    assert [(e.episode_id, e.order, e.text(), e.task, e.agent) for e in eps] == [
        ("0:30", (0, 30), "zero", "T", "captions_train/train/T"),
        ("4:9", (4, 9), "four", "T", "captions_train/train/T"),
        ("5:20", (5, 20), "five a", "T", "captions_train/train/T"),
        ("5:21", (5, 21), "five b", "T", "captions_train/train/T")]
    for ep, name in zip(eps, ("sub/f", "d", "e", "e"), strict=True):
        assert np.array_equal(ep.observations["image"][0], pixels(name[-1]))
        image_id, ann_id = ep.order
        assert ep.source == {"uri": f"{tmp_path}/train/{name}.png", "annotations": ann,
                             "image_id": image_id, "annotation_id": ann_id}
    assert [(r.dataset, r.location, r.reason, r.kind, r.task) for r in bad] == [
        ("c", f"{ann} [{where}]", reason, "episode", "T") for where, reason in [
            ("images[4].id", "image entry needs an integer id and a file_name string: "
             "Input should be a valid integer (got str)"),
            ("annotations[5].id", "annotation needs integer id and image_id: Input should be a "
             "valid integer (got str)"),
            ("annotation 10", "image_id 1's file_name 'a.png' is also the file of image id(s) "
             "[3]: which picture the caption belongs to is ambiguous"),
            ("annotation 11", "image_id 2 is listed 2 times (images[1], images[2]): which image "
             "the caption belongs to is ambiguous"),
            ("annotation 12", "image_id 3's file_name 'a.png' is also the file of image id(s) "
             "[1]: which picture the caption belongs to is ambiguous"),
            ("annotation 13", "annotation id 13 is used 2 times: ids must be unique"),
            ("annotation 13", "annotation id 13 is used 2 times: ids must be unique"),
            ("annotation 14", "references image_id 99, which images[] lacks")]]


def test_problems_without_any_caption_still_make_one_unit(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.png"}],
           "annotations": [{"id": 2, "image_id": 7, "caption": "orphan"}]}
    ann = make(tmp_path, doc=doc)
    src = open_source("coco-captions", str(tmp_path))
    (unit,) = src.units()
    assert unit.key == "captions_train/images from -" and unit.param("images") == ()
    assert [(r.location, r.reason, r.task) for r in src.read()] == [
        (f"{ann} [annotation 2]", "references image_id 7, which images[] lacks", "coco")]
    (tmp_path / "annotations/captions_train.json").write_text('{"images": [], "annotations": []}')
    with pytest.raises(SourceError) as e:
        src.units()
    assert str(e.value) == f"{tmp_path}: no captions found"


@pytest.mark.parametrize("image_dir", ["pictures", "absolute"])
def test_the_image_folder_option_relative_to_the_root_or_absolute(tmp_path, image_dir):
    make(tmp_path, split="val", folder="pictures")
    option = str(tmp_path / "pictures") if image_dir == "absolute" else "pictures"
    for uri in (tmp_path, tmp_path / "annotations/captions_val.json"):
        eps, _ = split(open_source("coco-captions", str(uri),
                                   options={"image_dir": option}).read())
        assert [e.source["uri"] for e in eps] == [
            f"{tmp_path}/pictures/{n}.png" for n in ("sub/f", "d", "e", "e")]
        assert {e.agent for e in eps} == {"captions_val"}
    with pytest.raises(SourceError) as e:
        open_source("coco-captions", str(tmp_path)).units()
    assert str(e.value) == (
        f"{tmp_path}/annotations/captions_val.json: image folder {tmp_path}/val not found (COCO "
        "keeps the images of captions_val.json in val/; set option image_dir otherwise)")


def test_an_annotation_file_given_directly_finds_the_split_folder_beside_annotations(tmp_path):
    make(tmp_path, split="val2017")
    eps, bad = split(open_source("coco-captions",
                                 str(tmp_path / "annotations/captions_val2017.json")).read())
    assert len(bad) == 8 and [e.source["uri"] for e in eps] == [
        f"{tmp_path}/val2017/{n}.png" for n in ("sub/f", "d", "e", "e")]


def test_a_relative_annotation_path_and_an_image_folder_given_as_a_uri(tmp_path, monkeypatch):
    make(tmp_path, split="val")
    monkeypatch.chdir(tmp_path)
    eps, _ = split(open_source("coco-captions", "annotations/captions_val.json").read())
    assert [e.source["uri"] for e in eps] == [f"./val/{n}.png" for n in ("sub/f", "d", "e", "e")]
    memory = fsspec.filesystem("memory")
    for name in ("d", "e", "sub/f"):
        memory.pipe(f"/coco-test-pics/{name}.png", (tmp_path / "val" / f"{name}.png").read_bytes())
    try:
        eps, _ = split(open_source("coco-captions", "annotations/captions_val.json",
                                   options={"image_dir": "memory://coco-test-pics"}).read())
    finally:
        memory.rm("/coco-test-pics", recursive=True)
    assert [e.source["uri"] for e in eps] == [
        f"memory://coco-test-pics/{n}.png" for n in ("sub/f", "d", "e", "e")]
    assert np.array_equal(eps[1].observations["image"][0], pixels("d"))
