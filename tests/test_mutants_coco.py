"""COCO captions reader: the annotation file's size limit and the exact text of every error that
stops planning, and a bad caption in the middle of an image's captions, on annotation files and
PNG images written here (the ground truth is what was written).

Written for the recheck of sources/coco.py's mutation survivors (docs/mutation-testing.md)."""

from __future__ import annotations

import numpy as np
import pytest

from test_source_coco_plan import make, pixels, split
from trajcorpus.errors import SourceError
from trajcorpus.sources import coco, open_source


def _units_error(uri) -> str:
    with pytest.raises(SourceError) as e:
        open_source("coco-captions", str(uri)).units()
    return str(e.value)


def test_an_annotation_file_exactly_at_the_size_limit_is_read_and_one_byte_over_is_not(
        tmp_path, monkeypatch):
    ann = make(tmp_path, doc={"images": [{"id": 1, "file_name": "a.png"}],
                              "annotations": [{"id": 2, "image_id": 1, "caption": "a"}]})
    size = ann.stat().st_size
    monkeypatch.setattr(coco, "MAX_ANNOTATION_BYTES", size)
    eps, bad = split(open_source("coco-captions", str(tmp_path)).read())
    assert not bad and [(e.episode_id, e.text()) for e in eps] == [("1:2", "a")]
    monkeypatch.setattr(coco, "MAX_ANNOTATION_BYTES", size - 1)
    assert _units_error(tmp_path) == f"{ann}: annotation file larger than {size - 1} bytes"


@pytest.mark.parametrize(("text", "reason"), [
    ('[1, 2]', "expected a JSON object with images and annotations"),
    ('{"annotations": []}', "[images]: missing or not a list"),
    ('{"images": [], "annotations": {}}', "[annotations]: missing or not a list"),
])
def test_an_annotation_file_of_the_wrong_shape_names_the_file_and_field(tmp_path, text, reason):
    ann = make(tmp_path)
    ann.write_text(text)
    sep = " " if reason.startswith("[") else ": "
    assert _units_error(tmp_path) == f"{ann}{sep}{reason}"


def test_a_missing_annotation_file_and_a_folder_without_annotations(tmp_path):
    missing = tmp_path / "annotations/captions_val.json"
    (tmp_path / "val").mkdir(parents=True)
    assert _units_error(missing) == f"{missing}: annotation file not found"
    assert _units_error(tmp_path) == (
        f"{tmp_path}: no annotations/captions_*.json found (expected a COCO folder with "
        "annotations/ and image folders)")


def test_a_bad_caption_rejects_only_itself_and_the_image_s_later_captions_are_read(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "missing.png"}],
           "annotations": [{"id": 5, "image_id": 1, "caption": ""},
                           {"id": 6, "image_id": 1, "caption": "after the empty one"},
                           {"id": 7, "image_id": 2, "caption": "no picture"}]}
    ann = make(tmp_path, doc=doc)
    eps, bad = split(open_source("coco-captions", str(tmp_path), dataset="cc").read())
    assert [(e.episode_id, e.text(), e.dataset) for e in eps] == [
        ("1:6", "after the empty one", "cc")]
    assert np.array_equal(eps[0].observations["image"][0], pixels("a"))
    assert [(r.dataset, r.location, r.reason, r.kind, r.task) for r in bad] == [
        ("cc", f"{ann} [annotation 5]", "empty caption (image_id 1)", "episode", "coco"),
        ("cc", f"{tmp_path}/train/missing.png", "image file not found (annotation 7)",
         "episode", "coco")]


def test_an_image_that_fails_to_decode_rejects_each_of_its_captions_in_its_dataset(tmp_path):
    doc = {"images": [{"id": 3, "file_name": "bad.png"}],
           "annotations": [{"id": 8, "image_id": 3, "caption": "x"},
                           {"id": 9, "image_id": 3, "caption": "y"}]}
    make(tmp_path, doc=doc)
    (tmp_path / "train/bad.png").write_bytes(b"not a png")
    eps, bad = split(open_source("coco-captions", str(tmp_path), dataset="cc").read())
    assert not eps
    assert [(r.dataset, r.location, r.task) for r in bad] == [
        ("cc", f"{tmp_path}/train/bad.png [image_id 3]", "coco")] * 2
    assert [r.reason.rsplit(" (", 1)[-1] for r in bad] == ["annotation 8)", "annotation 9)"]


def test_a_bare_annotation_file_name_in_the_working_folder(tmp_path, monkeypatch):
    ann = make(tmp_path, split="val", doc={
        "images": [{"id": 4, "file_name": "b.png"}],
        "annotations": [{"id": 1, "image_id": 4, "caption": "bee"}]})
    monkeypatch.chdir(ann.parent)
    src = open_source("coco-captions", "captions_val.json",
                      options={"image_dir": str(tmp_path / "val")})
    (unit,) = src.units()
    assert (unit.key, unit.uri, unit.param("agent")) == (
        "captions_val/images from 4", "captions_val.json", "captions_val")
    eps, bad = split(src.read())
    assert not bad and [(e.episode_id, e.text(), e.source["annotations"]) for e in eps] == [
        ("4:1", "bee", "captions_val.json")]
    assert np.array_equal(eps[0].observations["image"][0], pixels("b"))


def test_units_name_their_annotation_file(tmp_path):
    ann = make(tmp_path)
    units = open_source("coco-captions", str(tmp_path), options={"images_per_unit": 2}).units()
    assert [(u.uri, u.key) for u in units] == [
        (str(ann), "captions_train/images from 0"), (str(ann), "captions_train/images from 5")]
