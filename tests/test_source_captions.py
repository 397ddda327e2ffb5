"""Image-caption readers (coco-captions, img2dataset, hf-image-parquet) against ground_truth.json."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ground_truth
from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source

COCO = "image_caption/coco"
I2D = "image_caption/img2dataset"
HF = "image_caption/hf_parquet"


def _read(kind: str, uri, **options) -> list[Episode | Rejected]:
    return list(open_source(kind, str(uri), options=options).read())


def _split(items) -> tuple[list[Episode], list[Rejected]]:
    return ([x for x in items if isinstance(x, Episode)],
            [x for x in items if isinstance(x, Rejected)])


def check_record(ep: Episode, caption: str, width: int, height: int) -> None:
    assert ep.text() == caption and ep.observations["caption"].tolist() == [caption]
    assert ep.observations["image"].shape == (1, height, width, 3)
    assert ep.observations["image"].dtype == np.uint8
    assert ep.observation_kinds == {"image": "image", "caption": "text"}
    assert ep.action_kind == "none" and ep.actions.shape == (1, 0)
    assert ep.actions.dtype == np.float32
    assert ep.rewards.tolist() == [0.0] and ep.rewards.dtype == np.float32 and ep.return_ == 0.0
    assert ep.length == 1


# -- COCO ----------------------------------------------------------------------------------------
def _annotation_ids(ann_path: Path) -> dict[tuple[int, str], int]:
    """(image_id, caption) -> annotation id, from the source annotation file itself."""
    doc = json.loads(ann_path.read_text())
    return {(a["image_id"], a["caption"]): a["id"] for a in doc["annotations"]}


def check_coco(items, fixtures: Path) -> None:
    eps, bad = _split(items)
    assert not bad
    gt = ground_truth(fixtures / COCO / "ground_truth.json")
    ids = _annotation_ids(fixtures / COCO / "annotations/captions_train2017.json")
    assert len(eps) == sum(len(g["captions"]) for g in gt) == 26
    by_image: dict[int, list[Episode]] = {}
    for ep in eps:
        by_image.setdefault(ep.order[0], []).append(ep)
    assert sorted(by_image) == sorted(g["image_id"] for g in gt)
    for g in gt:
        records = by_image[g["image_id"]]
        assert sorted(r.text() for r in records) == sorted(g["captions"])
        for r in records:
            check_record(r, r.text(), g["width"], g["height"])
            ann_id = ids[(g["image_id"], r.text())]
            assert r.episode_id == f"{g['image_id']}:{ann_id}"
            assert r.order == (g["image_id"], ann_id)
            assert r.source["uri"].endswith(f"train2017/{g['file_name']}")
    assert [e.order for e in eps] == sorted(e.order for e in eps)  # grouped, in id order
    assert {(e.task, e.agent) for e in eps} == {("coco", "captions_train2017")}


def test_coco_matches_ground_truth(fixtures):
    check_coco(_read("coco-captions", fixtures / COCO), fixtures)


def test_coco_small_units_and_annotation_file_input(fixtures):
    src = open_source("coco-captions", str(fixtures / COCO), options={"images_per_unit": 3})
    assert len(src.units()) == 7  # 20 images
    check_coco(list(src.read()), fixtures)
    direct = fixtures / COCO / "annotations/captions_train2017.json"
    check_coco(_read("coco-captions", direct), fixtures)


def test_coco_gcs(gcs, fixtures):
    uri = gcs.upload(fixtures / COCO, "test_source_captions/coco")
    items = _read("coco-captions", uri)
    check_coco(items, fixtures)
    assert items[0].source["uri"].startswith(f"{uri}/train2017/")


def test_coco_same_pixels_as_the_hf_copy_of_the_same_jpegs(fixtures):
    """PROVENANCE: the HF parquet embeds the exact COCO file bytes, so the pixels must agree."""
    coco = {e.source["uri"].rsplit("/", 1)[-1]: e for e in _read("coco-captions", fixtures / COCO)}
    for ep in _read("hf-image-parquet", fixtures / HF / "data"):
        assert np.array_equal(ep.observations["image"], coco[ep.source["path"]].observations["image"])


@pytest.fixture
def broken_coco(fixtures, tmp_path) -> tuple[Path, dict]:
    """A copy of the COCO fixture with one defect per image (or per caption)."""
    root = tmp_path / "coco"
    shutil.copytree(fixtures / COCO, root)
    ann = root / "annotations/captions_train2017.json"
    doc = json.loads(ann.read_text())
    gt = ground_truth(fixtures / COCO / "ground_truth.json")
    two = [g for g in gt if len(g["captions"]) == 2]
    one = [g for g in gt if len(g["captions"]) == 1]
    plan = {"missing": two[0], "corrupt": two[1], "unsafe": one[0], "bad_utf8": one[1],
            "empty": one[2]}
    (root / "train2017" / plan["missing"]["file_name"]).unlink()
    corrupt = root / "train2017" / plan["corrupt"]["file_name"]
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # a JPEG cut after its headers
    for img in doc["images"]:
        if img["id"] == plan["unsafe"]["image_id"]:
            img["file_name"] = "../../outside.jpg"
    for a in doc["annotations"]:
        if a["image_id"] == plan["bad_utf8"]["image_id"]:
            a["caption"] = "@@BAD@@ caption"
        if a["image_id"] == plan["empty"]["image_id"]:
            a["caption"] = "  "
    doc["annotations"].append({"id": 999001, "image_id": 4242, "caption": "orphan"})
    ann.write_bytes(json.dumps(doc).encode().replace(b"@@BAD@@", b"\xff\xfeoops"))
    ids = {a["image_id"]: [] for a in doc["annotations"]}
    for a in doc["annotations"]:
        ids[a["image_id"]].append(a["id"])
    return root, {k: (g, sorted(ids[g["image_id"]])) for k, g in plan.items()}


def test_coco_bad_inputs_are_rejected_with_location_and_reason(broken_coco):
    root, plan = broken_coco
    ann = str(root / "annotations/captions_train2017.json")
    eps, bad = _split(_read("coco-captions", root))
    got = {r.location: r.reason for r in bad}
    expected = {f"{ann} [annotation 999001]": "references image_id 4242, which images[] lacks"}
    g, (a1, a2) = plan["missing"]
    img = root / "train2017" / g["file_name"]
    for a in (a1, a2):
        expected[str(img)] = f"image file not found (annotation {a})"
    g, (a1, a2) = plan["corrupt"]
    img = root / "train2017" / g["file_name"]
    loc = f"{img} [image_id {g['image_id']}]"
    assert got[loc].startswith("cannot decode image: ") and got[loc].endswith(f"(annotation {a2})")
    expected[loc] = got[loc]  # both captions of the image name the same decode failure
    g, (a1,) = plan["unsafe"]
    expected[f"{ann} [image {g['image_id']}]"] = ("unsafe file_name '../../outside.jpg' refused "
                                                  f"(annotation {a1})")
    g, (a1,) = plan["bad_utf8"]
    expected[f"{ann} [annotation {a1}]"] = ("caption is not valid UTF-8 (byte 0xff at character 0)"
                                            f" (image_id {g['image_id']})")
    g, (a2,) = plan["empty"]
    expected[f"{ann} [annotation {a2}]"] = f"empty caption (image_id {g['image_id']})"
    assert got == expected
    assert len(bad) == 1 + 2 + 2 + 1 + 1 + 1 and len(eps) == 26 - 7
    assert all(r.task == "coco" for r in bad)
    with pytest.raises(SourceError):
        list(open_source("coco-captions", str(root)).episodes())


def test_coco_layout_errors(fixtures, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(fixtures / COCO / "annotations", root / "annotations")
    with pytest.raises(SourceError, match=r"image folder .*train2017 not found"):
        open_source("coco-captions", str(root)).units()
    (root / "annotations/captions_train2017.json").write_text('{"images": [], "annotations": [')
    (root / "x").mkdir()
    with pytest.raises(SourceError, match=r"captions_train2017\.json @ offset \d+: not valid JSON"):
        open_source("coco-captions", str(root), options={"image_dir": "x"}).units()
    with pytest.raises(SourceError, match="no annotations/captions_"):
        open_source("coco-captions", str(tmp_path)).units()


# -- img2dataset ------------------------------------------------------------------------------------
def check_img2dataset(items, fixtures: Path, out: str) -> None:
    eps, bad = _split(items)
    gt = ground_truth(fixtures / I2D / "ground_truth.json")
    ok = [g for g in gt if g["status"] == "success"]
    failed = [g for g in gt if g["status"] != "success"]
    assert [e.episode_id for e in eps] == [g["key"] for g in ok]
    assert [e.order for e in eps] == [(int(g["shard"][:5]), int(g["key"])) for g in ok]
    for ep, g in zip(eps, ok, strict=True):
        check_record(ep, g["caption"], g["width"], g["height"])
        assert ep.source["url"] == g["url"] and ep.source["uri"] == f"{out}/{g['shard']}"
    assert [(r.location, r.reason) for r in bad] == [
        (f"{out}/{g['shard'][:5]}.parquet [{g['key']}]",
         f"img2dataset could not fetch this sample: {g['status']}: {g['error_message']}")
        for g in failed]
    assert failed[0]["key"] == "0000005" and "HTTP Error 404: File not found" in bad[0].reason


def test_img2dataset_matches_ground_truth(fixtures):
    out = str(fixtures / I2D / "output")
    src = open_source("img2dataset", out)
    assert [u.key for u in src.units()] == ["00000", "00001"]
    check_img2dataset(list(src.read()), fixtures, out)


def test_img2dataset_gcs(gcs, fixtures):
    uri = gcs.upload(fixtures / I2D / "output", "test_source_captions/i2d")
    check_img2dataset(_read("img2dataset", uri), fixtures, uri)


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if data else None)


@pytest.fixture
def broken_shard(fixtures, tmp_path) -> Path:
    """Shard 00001 rewritten: hostile members added, three samples damaged, one removed."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(fixtures / I2D / "output/00001.parquet", out)
    with tarfile.open(fixtures / I2D / "output/00001.tar") as src, \
            tarfile.open(out / "00001.tar", "w", format=tarfile.GNU_FORMAT) as dst:
        _member(dst, "../evil.jpg", b"x")
        _member(dst, "0000999.jpg", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _member(dst, "/abs/0000998.txt", b"absolute")
        _member(dst, "somedir", type=tarfile.DIRTYPE)
        _member(dst, "0000997.pipe", type=tarfile.FIFOTYPE)
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name.startswith("0000104."):
                continue
            if m.name == "0000101.jpg":
                data = b"\xff\xd8\xff\xe0 this is not a JPEG body"
            elif m.name == "0000102.txt":
                data = b"\xff\xfe caption"
            elif m.name == "0000103.txt":
                data = b""
            _member(dst, m.name, data)
    return out


def test_img2dataset_hostile_and_damaged_members(broken_shard):
    tar_path = broken_shard / "00001.tar"
    with tarfile.open(tar_path) as t:
        offsets = {m.name: m.offset for m in t.getmembers()}
    eps, bad = _split(_read("img2dataset", broken_shard))
    got = {r.location: r.reason for r in bad}

    def at(name: str) -> str:
        return f"{tar_path} @ offset {offsets[name]} [{name}]"

    decode = got.pop(at("0000101.jpg"))
    assert decode.startswith("cannot decode image: ")
    assert got == {
        at("../evil.jpg"): "unsafe member name refused (absolute or '..')",
        at("/abs/0000998.txt"): "unsafe member name refused (absolute or '..')",
        at("0000999.jpg"): "link member refused (points to '/etc/passwd')",
        at("0000102.txt"): "caption is not valid UTF-8 (byte 0xff at byte 0: invalid start byte)",
        at("0000103.txt"): "empty caption",
        f"{broken_shard}/00001.parquet [0000104]":
            f"listed as a success in the parquet but absent from the tar {tar_path}",
    }
    assert [e.episode_id for e in eps] == ["0000100", "0000105", "0000106", "0000107", "0000108",
                                           "0000109"]
    assert not (broken_shard.parent / "evil.jpg").exists()  # nothing was ever extracted


def test_img2dataset_truncated_tar_is_a_rejected_unit(fixtures, tmp_path):
    data = (fixtures / I2D / "output/00000.tar").read_bytes()
    (tmp_path / "00000.tar").write_bytes(data[:100_000])
    items = _read("img2dataset", tmp_path)
    eps, bad = _split(items)
    assert eps and len(eps) < 10  # the samples before the cut still count
    assert bad[-1].kind == "unit"
    assert bad[-1].message.startswith(f"{tmp_path}/00000.tar: corrupt or truncated tar")


# -- Hugging Face parquet ---------------------------------------------------------------------------
def check_hf(items, fixtures: Path) -> None:
    eps, bad = _split(items)
    assert not bad
    gt = ground_truth(fixtures / HF / "ground_truth.json")
    assert [e.source["row"] for e in eps] == [g["row"] for g in gt]
    for ep, g in zip(eps, gt, strict=True):
        check_record(ep, g["caption"], g["width"], g["height"])
        assert ep.source["path"] == g["path"]
        assert ep.episode_id == f"train-00000-of-00001:{g['row']}" and ep.order == (0, g["row"])
        assert (ep.task, ep.agent) == ("hf-image-parquet", "train")


def test_hf_parquet_matches_ground_truth(fixtures):
    check_hf(_read("hf-image-parquet", fixtures / HF / "data"), fixtures)
    check_hf(_read("hf-image-parquet", fixtures / HF / "data/train-00000-of-00001.parquet"),
             fixtures)


def test_hf_parquet_gcs(gcs, fixtures):
    uri = gcs.upload(fixtures / HF / "data", "test_source_captions/hf")
    check_hf(_read("hf-image-parquet", uri), fixtures)


@pytest.fixture(scope="module")
def hf_table(fixtures) -> pa.Table:
    return pq.read_table(fixtures / HF / "data/train-00000-of-00001.parquet")


def test_hf_parquet_column_detection_and_options(hf_table, fixtures, tmp_path):
    gt = ground_truth(fixtures / HF / "ground_truth.json")
    plain = pa.table({"id": pa.array([str(i) for i in range(hf_table.num_rows)]),
                      "picture": hf_table.column("image"), "text": hf_table.column("caption")})
    pq.write_table(plain, tmp_path / "plain.parquet")
    guessed = _read("hf-image-parquet", tmp_path / "plain.parquet")  # first string column: "id"
    assert [e.text() for e in guessed] == [str(i) for i in range(hf_table.num_rows)]
    named = _read("hf-image-parquet", tmp_path / "plain.parquet", caption_column="text")
    assert [e.text() for e in named] == [g["caption"] for g in gt]
    assert (named[0].task, named[0].agent) == ("hf-image-parquet", "plain")
    (bad,) = _read("hf-image-parquet", tmp_path / "plain.parquet", image_column="nope")
    assert bad.kind == "unit" and "[image_column]: no image column 'nope'" in bad.message


def test_hf_parquet_bad_rows(hf_table, tmp_path):
    rows = hf_table.slice(0, 6)
    images = rows.column("image").combine_chunks()
    blobs = images.field("bytes").to_pylist()
    blobs[1] = b"garbage, not an image"
    blobs[4] = None  # not embedded: only a path
    captions = rows.column("caption").cast(pa.binary()).to_pylist()
    captions[2] = b"\xff\xfe caption"
    captions[3] = b""
    captions[5] = None
    image_col = pa.StructArray.from_arrays(
        [pa.array(blobs, pa.binary()), images.field("path")], names=["bytes", "path"])
    table = pa.Table.from_arrays([image_col, pa.array(captions, pa.binary()).view(pa.string())],
                                 schema=hf_table.schema)  # keeps the 'huggingface' metadata
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    eps, bad = _split(_read("hf-image-parquet", path))
    assert [e.source["row"] for e in eps] == [0]
    got = {r.location: r.reason for r in bad}
    decode = got.pop(f"{path} [row 1]")
    assert decode.startswith("cannot decode image: ")
    assert got == {
        f"{path} [row 2]": "caption is not valid UTF-8 (byte 0xff at byte 0: invalid start byte)",
        f"{path} [row 3]": "empty caption",
        f"{path} [row 4]": f"image bytes are not embedded (path {images.field('path')[4].as_py()!r}"
                           " refers to the machine that wrote the file)",
        f"{path} [row 5]": "caption is missing",
    }


def test_hf_parquet_not_parquet(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"PAR1 but not really")
    (bad,) = _read("hf-image-parquet", tmp_path)
    assert bad.kind == "unit" and bad.message.startswith(f"{tmp_path}/x.parquet: cannot read parquet")
    with pytest.raises(SourceError, match="no .parquet files found"):
        open_source("hf-image-parquet", str(tmp_path / "none")).units()
