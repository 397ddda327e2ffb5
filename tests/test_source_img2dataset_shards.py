"""img2dataset reader on shards built here as img2dataset lays them out (a webdataset tar written
with ``tarfile``, PNG images encoded by PIL from known arrays, the status parquet by pyarrow).

Ground truth is what was fed in: the pixel arrays, captions, keys, and the member offsets that
``tarfile`` itself reports. Written for the mutation run of docs/mutation-testing.md: each test
pins a part of the record assembly or the exact text of a rejection.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source
from trajcorpus.sources.imagecaption import MAX_IMAGE_BYTES
from trajcorpus.sources.img2dataset import split_member_name

DATASET = "my-i2d"


def png(seed: int, h: int = 3, w: int = 5) -> tuple[bytes, np.ndarray]:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue(), arr


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> dict[str, list[int]]:
    """The tar, and each member name's header offsets as tarfile reads them back."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    offsets: dict[str, list[int]] = {}
    with tarfile.open(path) as t:
        for m in t.getmembers():
            offsets.setdefault(m.name, []).append(m.offset)
    return offsets


def write_status(path: Path, rows: list[tuple], types: tuple = (pa.string(),) * 3) -> None:
    names = ("key", "status", "error_message")
    pq.write_table(pa.table({n: pa.array([r[i] for r in rows], type=t)
                             for i, (n, t) in enumerate(zip(names, types, strict=True))}), path)


def meta(**fields) -> bytes:
    return json.dumps(fields).encode()


def read(folder: Path, **options) -> tuple[list[Episode], list[Rejected]]:
    items = list(open_source("img2dataset", str(folder), dataset=DATASET,
                             options=options).read())
    return ([x for x in items if isinstance(x, Episode)],
            [x for x in items if isinstance(x, Rejected)])


def test_member_names_split_at_the_first_dot_of_the_base_name():
    assert split_member_name("dir/0000001.jpg") == ("dir/0000001", "jpg")
    assert split_member_name("0000001.JPG") == ("0000001", "jpg")
    assert split_member_name("a.b/0000001.seg.png") == ("a.b/0000001", "seg.png")
    assert split_member_name("noext") is None
    assert split_member_name("dir/.hidden") is None
    assert split_member_name(".jpg") is None


def test_records_pair_each_image_with_its_own_caption_and_lineage(tmp_path):
    img0, arr0 = png(0)
    img1, arr1 = png(1, 4, 2)
    img2, arr2 = png(2)
    img3, arr3 = png(3, 2, 2)
    members = [
        ("0000000.png", img0), ("0000000.txt", b"a red cube"),
        ("0000000.json", meta(url="http://x/0", caption="a red cube", key="0000000")),
        ("0000000.cls", b"7"),  # a member the record does not use
        ("0000001.png", img1), ("0000001.json", meta(url="http://x/1", caption="from the json")),
        ("0000003.png", img2), ("0000003.txt", b"no json member"),
        ("sample.png", img3), ("sample.txt", b"not a number"),
    ]
    offsets = write_tar(tmp_path / "00007.tar", members)
    write_status(tmp_path / "00007.parquet", [
        ("0000000", "success", None), ("0000001", "success", None),
        ("0000002", "failed_to_download", None),
        ("0000003", "success", None), ("sample", "success", None),
        ("0000004", "failed_to_resize", "image too small")])
    eps, bad = read(tmp_path)
    tar, parquet = f"{tmp_path}/00007.tar", f"{tmp_path}/00007.parquet"
    assert [(e.episode_id, e.order, e.text()) for e in eps] == [
        ("0000000", (7, 0), "a red cube"), ("0000001", (7, 1), "from the json"),
        ("0000003", (7, 3), "no json member"), ("sample", (7, 3), "not a number")]
    for ep, arr in zip(eps, (arr0, arr1, arr2, arr3), strict=True):
        assert np.array_equal(ep.observations["image"], arr[None])
        assert (ep.dataset, ep.task, ep.agent) == (DATASET, DATASET, "img2dataset")
    assert [e.source for e in eps] == [
        {"uri": tar, "key": "0000000", "offset": offsets["0000000.png"][0],
         "url": "http://x/0", "parquet": parquet},
        {"uri": tar, "key": "0000001", "offset": offsets["0000001.png"][0],
         "url": "http://x/1", "parquet": parquet},
        {"uri": tar, "key": "0000003", "offset": offsets["0000003.png"][0], "url": None,
         "parquet": parquet},
        {"uri": tar, "key": "sample", "offset": offsets["sample.png"][0], "url": None,
         "parquet": parquet}]
    assert [(r.dataset, r.location, r.reason, r.kind, r.task) for r in bad] == [
        (DATASET, f"{parquet} [0000002]",
         "img2dataset could not fetch this sample: failed_to_download", "missing", DATASET),
        (DATASET, f"{parquet} [0000004]", "img2dataset could not fetch this sample: "
         "failed_to_resize: image too small", "missing", DATASET)]


def test_units_names_and_a_shard_with_only_one_of_its_files(tmp_path):
    img, arr = png(5)
    write_tar(tmp_path / "00000.tar", [("./0000010.png", img), ("./0000010.txt", b"dot slash")])
    write_status(tmp_path / "00001.parquet", [("0000020", "success", None)])
    src = open_source("img2dataset", str(tmp_path), dataset=DATASET,
                      options={"task": "T", "agent": "A"})
    assert [(u.key, u.uri, u.index, u.param("shard")) for u in src.units()] == [
        ("00000", f"{tmp_path}/00000.tar", 0, 0), ("00001", "", 1, 1)]
    eps, bad = read(tmp_path, task="T", agent="A")
    assert [(e.episode_id, e.order, e.text(), e.task, e.agent) for e in eps] == [
        ("0000010", (0, 10), "dot slash", "T", "A")]
    assert np.array_equal(eps[0].observations["image"][0], arr)
    assert eps[0].source["parquet"] is None
    assert [(r.location, r.reason, r.kind, r.task) for r in bad] == [
        (f"{tmp_path}/00001.parquet [0000020]", "listed as a success in the parquet but absent "
         "from the tar (no tar for this shard)", "episode", "T")]
    with pytest.raises(SourceError, match=rf"^{tmp_path}/empty: no img2dataset shards "
                       r"\(NNNNN\.tar / NNNNN\.parquet\) found$"):
        open_source("img2dataset", str(tmp_path / "empty")).units()


def test_damaged_samples_are_rejected_with_their_member_and_reason(tmp_path):
    img, _ = png(6)
    good, good_arr = png(7)
    members = [
        ("0000001.lnk", b""),  # replaced by a link below
        ("../0000001.png", img), ("README", b"no extension: not a sample member"),
        ("0000002.png", img), ("0000002.txt", b"first"),
        ("0000003.png", img), ("0000003.txt", b"between"),
        ("0000002.txt", b"again"),  # key 2 again, not adjacent
        ("0000004.png", img), ("0000004.png", img), ("0000004.txt", b"two images"),
        ("0000005.txt", b"caption without an image"), ("0000005.cls", b"1"),
        ("0000006.png", img), ("0000006.json", meta(url="u")),
        ("0000007.png", img), ("0000007.json", meta(url=5)),
        ("0000008.png", img), ("0000008.txt", b"tar caption"),
        ("0000008.json", meta(caption="json caption")),
        ("0000009.png", img), ("0000009.json", meta(key="0000010")),
        ("0000011.png", good), ("0000011.txt", b"the last good one"),
    ]
    with tarfile.open(tmp_path / "00000.tar", "w", format=tarfile.GNU_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if name.endswith(".lnk"):
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            else:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    offsets: dict[str, list[int]] = {}
    with tarfile.open(tmp_path / "00000.tar") as t:
        for m in t.getmembers():
            offsets.setdefault(m.name, []).append(m.offset)
    eps, bad = read(tmp_path)
    tar = f"{tmp_path}/00000.tar"
    assert [(e.episode_id, e.text()) for e in eps] == [
        ("0000002", "first"), ("0000003", "between"), ("0000011", "the last good one")]
    assert np.array_equal(eps[-1].observations["image"][0], good_arr)
    got = [(r.location, r.reason) for r in bad]
    assert got == [
        (f"{tar} @ offset {offsets['0000001.lnk'][0]} [0000001.lnk]",
         "link member refused (points to '/etc/passwd')"),
        (f"{tar} @ offset {offsets['../0000001.png'][0]} [../0000001.png]",
         "unsafe member name refused (absolute or '..')"),
        (f"{tar} [0000002]",
         "duplicate sample key (members of one sample must be adjacent in a webdataset tar)"),
        (f"{tar} @ offset {offsets['0000004.png'][1]} [0000004.png]",
         "member appears twice in one sample: which one belongs to it is ambiguous"),
        (f"{tar} [0000005]",
         "sample has no image member (.jpg/.jpeg/.png/.webp); members: ['cls', 'txt']"),
        (f"{tar} [0000006.json caption]", "caption is missing"),
        got[6],  # pydantic's wording, checked below
        (f"{tar} [0000008]", "0000008.txt and 0000008.json hold different captions: which one "
         "belongs to the image is ambiguous"),
        (f"{tar} @ offset {offsets['0000009.json'][0]} [0000009.json]",
         "the member's own key '0000010' differs from its name: its metadata belongs to another "
         "sample"),
    ]
    assert got[6][0] == f"{tar} @ offset {offsets['0000007.json'][0]} [0000007.json.url]"
    assert got[6][1] == "Input should be a valid string (got int)"
    assert {(r.dataset, r.kind, r.task) for r in bad} == {(DATASET, "episode", DATASET)}


def test_a_member_declaring_more_than_the_limit_stops_the_shard(tmp_path):
    info = tarfile.TarInfo("0000000.png")
    info.size = MAX_IMAGE_BYTES + 1
    (tmp_path / "00000.tar").write_bytes(info.tobuf(format=tarfile.GNU_FORMAT))
    src = open_source("img2dataset", str(tmp_path))
    with pytest.raises(SourceError) as e:
        list(src.read_unit(src.units()[0]))
    assert str(e.value) == (f"{tmp_path}/00000.tar @ offset 0: member '0000000.png' declares "
                            f"{MAX_IMAGE_BYTES + 1} bytes, above the limit of {MAX_IMAGE_BYTES}: "
                            "the rest of the shard is not read")


def test_a_member_of_exactly_the_limit_is_read(tmp_path):
    img, arr = png(8)
    with tarfile.open(tmp_path / "00000.tar", "w", format=tarfile.GNU_FORMAT) as t:
        for name, data in (("0000000.png", img), ("0000000.txt", b"big neighbour")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("0000000.npy")  # unused member, exactly at the limit
        info.size = MAX_IMAGE_BYTES
        t.addfile(info, io.BytesIO(bytes(MAX_IMAGE_BYTES)))
    eps, bad = read(tmp_path)
    assert not bad and [e.text() for e in eps] == ["big neighbour"]
    assert np.array_equal(eps[0].observations["image"][0], arr)


STRING3 = (pa.string(),) * 3


@pytest.mark.parametrize(("rows", "types", "message"), [
    ([("1", "success", None), ("1", "failed", "x")], STRING3,
     "[1]: key listed twice: its status is ambiguous"),
    ([(1, "success", None)], (pa.int64(), pa.string(), pa.string()),
     "[key]: column must hold text, got int64"),
    ([("1", None, None)], (pa.string(), pa.null(), pa.string()),
     "[status]: column must hold text, got null"),
    ([("1", "failed", 404)], (pa.string(), pa.string(), pa.int64()),
     "[error_message]: column must hold text, got int64"),
    ([("1", None, None), ("2", None, None)], STRING3, "[status]: 2 null values"),
    ([(None, "success", None)], STRING3, "[key]: 1 null values"),
])
def test_status_parquet_errors_name_the_file_column_and_reason(tmp_path, rows, types, message):
    write_status(tmp_path / "00000.parquet", rows, types)
    src = open_source("img2dataset", str(tmp_path))
    with pytest.raises(SourceError) as e:
        list(src.read_unit(src.units()[0]))
    assert str(e.value) == f"{tmp_path}/00000.parquet {message}"


def test_status_parquet_of_large_strings_and_null_messages(tmp_path):
    write_status(tmp_path / "00000.parquet", [("1", "failed", None), ("2", "oops", None)],
                 (pa.large_string(), pa.large_string(), pa.null()))
    eps, bad = read(tmp_path)
    assert not eps and [(r.location, r.reason) for r in bad] == [
        (f"{tmp_path}/00000.parquet [1]", "img2dataset could not fetch this sample: failed"),
        (f"{tmp_path}/00000.parquet [2]", "img2dataset could not fetch this sample: oops")]


def test_status_parquet_without_a_status_column_or_not_parquet(tmp_path):
    pq.write_table(pa.table({"key": ["1"], "status": ["success"]}), tmp_path / "00000.parquet")
    src = open_source("img2dataset", str(tmp_path))
    with pytest.raises(SourceError) as e:
        list(src.read_unit(src.units()[0]))
    assert str(e.value).startswith(f"{tmp_path}/00000.parquet: cannot read the shard's parquet: ")
    assert "error_message" in str(e.value)
    (tmp_path / "00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(SourceError) as e:
        list(src.read_unit(src.units()[0]))
    assert str(e.value).startswith(f"{tmp_path}/00000.parquet: cannot read the shard's parquet: ")
