"""One test per class of bad input that used to escape as a traceback (issue 12).

Readers trusted what a file *declares* before checking it. Each class is now closed at its cause
(see docs/reliability.md, "Classes closed at the cause"); every input here is a trimmed good
fixture (``make_corpus.build_clean``) with exactly one thing broken, and every outcome is a
one-line TrajcorpusError or a Rejected naming the file and field.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent / "adversarial"))
from make_corpus import build_clean  # noqa: E402

from trajcorpus.cli import main  # noqa: E402
from trajcorpus.errors import SourceError, TrajcorpusError, one_line  # noqa: E402
from trajcorpus.schemas.episode import Rejected  # noqa: E402
from trajcorpus.sources import open_source  # noqa: E402
from trajcorpus.sources.base import UNEXPECTED  # noqa: E402
from trajcorpus.sources.metadata import (  # noqa: E402
    declared_nbytes,
    parse_json,
    parse_npy_header,
)
from trajcorpus.sources.minari import MinariSource  # noqa: E402
from trajcorpus.sources.rlds import Leaf, decode_leaf  # noqa: E402

KINDS = ("rlu-atari", "rlds", "minari", "d4rl", "coco-captions", "img2dataset",
         "hf-image-parquet", "dqn-replay")


def read(kind: str, uri: str, options: dict | None = None):
    """Like the job: (episodes, rejected, error text); any other exception fails the test."""
    episodes, rejected = [], []
    try:
        for item in open_source(kind, uri, options=options or {}).read():
            (rejected if isinstance(item, Rejected) else episodes).append(item)
    except TrajcorpusError as e:
        assert "\n" not in str(e)
        return episodes, rejected, str(e)
    for r in rejected:
        assert "\n" not in r.message and UNEXPECTED not in r.reason, r.message
    return episodes, rejected, None


def texts(rejected: list[Rejected], error: str | None) -> str:
    return " | ".join([r.message for r in rejected] + ([error] if error else []))


def clean(kind: str, tmp_path: Path, variant: str = "") -> tuple[Path, str, int]:
    built = build_clean(kind, tmp_path / "in", variant)
    n = len(read(kind, built.uri, built.options)[0])
    return tmp_path / "in", built.uri, n


# -- .npy headers ---------------------------------------------------------------------------------

def npy(header: str, payload: bytes = bytes(64)) -> bytes:
    text = header.encode("latin-1")
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + payload


@pytest.mark.parametrize("header, reason", [
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (2**70,)}", "not a Python literal"),
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (1180591620717411303424,)}",
     "above the limit"),
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (9223372036854775808, 2)}",
     "above the limit"),
    ("{'descr': ['<i4'], 'fortran_order': False, 'shape': (3,)}", "descr must be a dtype string"),
    ("{'descr': '<i4', 'fortran_order': 0, 'shape': (3,)}", "fortran_order must be True or False"),
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (3.0,)}", "tuple of non-negative ints"),
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (-1,)}", "tuple of non-negative ints"),
    ("{'descr': '<i4', 'fortran_order': False}", "expected a dict with keys"),
    ("{'descr': 'zz9', 'fortran_order': False, 'shape': (3,)}", "is not a dtype"),
    ("{'descr': '|O', 'fortran_order': False, 'shape': (3,)}", "object dtype"),
    ("[1, 2]", "expected a dict with keys"),
    ("{" * 400, "not a Python literal"),
    ("__import__('os').system('true')", "not a Python literal"),
])
def test_npy_header_is_parsed_here_with_checked_types(header, reason):
    with pytest.raises(SourceError) as e:
        parse_npy_header(io.BytesIO(npy(header)).read, "x.npy")
    assert "x.npy @ offset 0" in str(e.value) and "bad .npy header" in str(e.value)
    assert reason in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("header", [
    "{'descr': '<f4', 'fortran_order': False, 'shape': (1 << 70,), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551617,), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': {1: [}, }",
])
def test_dqn_reader_refuses_malformed_and_overflowing_headers(tmp_path, header):
    root, uri, _ = clean("dqn-replay", tmp_path)
    path = next(root.rglob("$store$_reward_ckpt.0.gz"))
    path.write_bytes(gzip.compress(npy(header, bytes(4 * 1758))))
    episodes, rejected, error = read("dqn-replay", uri)
    assert not episodes
    assert f"{path} @ offset 0: bad .npy header" in texts(rejected, error)


# -- deep nesting ---------------------------------------------------------------------------------

def test_json_nesting_is_bounded_before_any_recursion():
    deep = "[" * 200_000 + "]" * 200_000
    with pytest.raises(SourceError, match=r"^f\.json: JSON nested deeper than the limit of 64"):
        parse_json(deep.encode(), "f.json")
    with pytest.raises(SourceError, match="nested deeper"):
        parse_json(("[" * 65 + "]" * 65).encode(), "f.json")
    assert parse_json(("[" * 64 + "]" * 64).encode(), "f.json") is not None


def test_coco_annotations_nested_deeply(tmp_path):
    root, uri, _ = clean("coco-captions", tmp_path)
    path = root / "coco/annotations/captions_train2017.json"
    doc = json.loads(path.read_text())
    text = json.dumps(doc).replace('"annotations": [', '"annotations": [' + "[" * 100_000
                                   + "]" * 100_000 + ", ", 1)
    path.write_text(text)
    episodes, rejected, error = read("coco-captions", uri)
    assert error is not None and error.startswith(f"{path}: JSON nested deeper")


def _rewrite_tar(path: Path, edit) -> None:
    members = []
    with tarfile.open(path) as tar:
        for m in tar:
            data = tar.extractfile(m).read() if m.isfile() else b""
            members.append((m, edit(m.name, data)))
    with tarfile.open(path, "w") as tar:
        for m, data in members:
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))


def test_img2dataset_member_json_nested_deeply(tmp_path):
    root, uri, n = clean("img2dataset", tmp_path)
    tar_path = root / "output/00000.tar"
    with tarfile.open(tar_path) as tar:
        victim = next(m.name for m in tar if m.name.endswith(".json"))
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    _rewrite_tar(tar_path, lambda name, data: deep if name == victim else data)
    episodes, rejected, error = read("img2dataset", uri)
    key = victim.removesuffix(".json")
    assert error is None and len(episodes) == n - 1
    assert any(f"[{key}.json]: JSON nested deeper" in r.message for r in rejected)


# -- wrong JSON type or encoding of a metadata document --------------------------------------------

def _hf_metadata(tmp_path: Path, value: bytes) -> tuple[Path, str]:
    root, uri, _ = clean("hf-image-parquet", tmp_path)
    path = root / "data/train-00000-of-00001.parquet"
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({b"huggingface": value}), path)
    return path, uri


@pytest.mark.parametrize("value, reason", [
    (b'[{"info": {}}]', "[huggingface]: Input should be a valid dictionary"),
    (b'{"info": {"features": ["image"]}}', "[huggingface.info.features]: "),
    (b'{"info": "\xff\xfe"}', "[huggingface]: not UTF-8 (byte 0xff"),
])
def test_hf_schema_metadata_of_the_wrong_type_or_encoding(tmp_path, value, reason):
    path, uri = _hf_metadata(tmp_path, value)
    episodes, rejected, error = read("hf-image-parquet", uri)
    assert not episodes
    assert f"{path} {reason}" in texts(rejected, error)


def _minari_meta(root: Path) -> Path:
    return next(root.rglob("mixed-v0/data/metadata.json"))


@pytest.mark.parametrize("field, edit, reason", [
    ("observation_space", lambda s: {**s, "shape": [str(d) for d in s["shape"]]},
     "[observation_space.shape.0]: Input should be a valid integer (got str)"),
    ("observation_space", lambda s: {**s, "shape": [1 << 40, 1 << 40]},
     "[observation_space.shape.0]: Input should be less than or equal to"),
    ("observation_space", lambda s: {**s, "shape": [1 << 20, 1 << 20]},
     "needs 8796093022208 bytes, above the limit"),
    ("action_space", lambda s: [s], "[action_space]: Input should be a valid dictionary"),
    ("env_spec", lambda s: {"id": 7}, "[env_spec.id]: Input should be a valid string"),
])
def test_minari_metadata_fields_of_the_wrong_type(tmp_path, field, edit, reason):
    root, uri, _ = clean("minari", tmp_path)
    path = _minari_meta(root)
    meta = json.loads(path.read_text())
    meta[field] = json.dumps(edit(json.loads(meta[field])))
    path.write_text(json.dumps(meta))
    episodes, rejected, error = read("minari", uri)
    assert not episodes and reason in texts(rejected, error)


def test_minari_metadata_that_is_a_list(tmp_path):
    root, uri, _ = clean("minari", tmp_path)
    path = _minari_meta(root)
    path.write_text(json.dumps([json.loads(path.read_text())]))
    _, _, error = read("minari", uri)
    assert error is not None and error.startswith(f"{path} [<root>]: Input should be a valid "
                                                  "dictionary")


def _rlds_info(root: Path) -> Path:
    return next(root.rglob("dataset_info.json"))


@pytest.mark.parametrize("edit, reason", [
    (lambda d: [d], "[<root>]: Input should be a valid dictionary"),
    (lambda d: {**d, "splits": [{**d["splits"][0], "shardLengths": ["1.0"]}]},
     "[splits.0.shardLengths.0"),
    (lambda d: {**d, "splits": [{**d["splits"][0], "shardLengths": [4.0]}]},
     "[splits.0.shardLengths.0"),
    (lambda d: {**d, "splits": {"train": d["splits"][0]}}, "[splits]: Input should be a valid list"),
    (lambda d: {**d, "name": ["x"]}, "[name]: Input should be a valid string"),
    (lambda d: {**d, "splits": [{**d["splits"][0], "filepathTemplate": "../../{SHARD_INDEX}"}]},
     "is not a plain file name"),
])
def test_rlds_dataset_info_of_the_wrong_type(tmp_path, edit, reason):
    root, uri, _ = clean("rlds", tmp_path)
    path = _rlds_info(root)
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    _, rejected, error = read("rlds", uri)
    assert error is not None and error.startswith(str(path)) and reason in error


def test_rlds_features_of_the_wrong_type(tmp_path):
    root, uri, _ = clean("rlds", tmp_path)
    path = next(root.rglob("features.json"))
    doc = json.loads(path.read_text())
    doc["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"] = []
    path.write_text(json.dumps(doc))
    _, _, error = read("rlds", uri)
    assert error is not None and f"{path} [featuresDict.features.steps.sequence.feature." \
        "featuresDict]: Input should be a valid dictionary" in error


# -- wrong rank, null rows, wrong struct types ----------------------------------------------------

def test_minari_scalar_where_a_per_step_array_is_expected(tmp_path):
    root, uri, n = clean("minari", tmp_path)
    h5 = next(root.rglob("main_data.hdf5"))
    with h5py.File(h5, "r+") as f:
        del f["episode_3/terminations"]
        f["episode_3/terminations"] = np.bool_(True)
    episodes, rejected, error = read("minari", uri)
    assert error is None and len(episodes) == n - 1
    assert [r.message for r in rejected] == [
        f"{h5} [episode_3/terminations]: expected one value per step, got a scalar (bool)"]


def test_minari_arrow_null_row(tmp_path):
    root, uri, n = clean("minari", tmp_path, "arrow")
    part = next(root.rglob("data/2/part-0.arrow"))
    table = ipc.open_file(pa.memory_map(str(part))).read_all()
    rewards = table.column("rewards").to_pylist()
    rewards[5] = None
    i = table.schema.get_field_index("rewards")
    table = table.set_column(i, "rewards", pa.array(rewards, table.schema.field(i).type))
    with ipc.new_file(str(part), table.schema) as w:
        w.write_table(table)
    episodes, rejected, error = read("minari", uri)
    assert error is None and len(episodes) == n - 1
    assert [r.message for r in rejected] == [
        f"{part} [rewards]: 1 null values (first at row 5)"]


def test_hf_image_struct_whose_bytes_is_an_int(tmp_path):
    path = tmp_path / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir()
    image = pa.array([{"bytes": 7, "path": "a.jpg"}],
                     pa.struct([("bytes", pa.int64()), ("path", pa.string())]))
    pq.write_table(pa.table({"image": image, "text": ["a caption"]}), path)
    _, rejected, error = read("hf-image-parquet", str(path.parent))
    assert texts(rejected, error) == \
        f"{path} [image.bytes]: image field 'bytes' must be binary, got int64"


# -- declared sizes -------------------------------------------------------------------------------

def test_rlds_tensor_declaring_terabytes_is_refused_before_allocation(tmp_path):
    leaf = Leaf("steps/observation/joints", "tensor", "float32", (1 << 20, 1 << 20), "zlib", True)
    with pytest.raises(SourceError) as e:
        decode_leaf(leaf, [b"x\x9c\x03\x00\x00\x00\x00\x01"], 1, "shard", 16, max_bytes=1 << 20)
    assert str(e.value).startswith("shard @ offset 16 [steps/observation/joints]: declared shape "
                                   "[1, 1048576, 1048576] of 4-byte values needs 4398046511104 "
                                   "bytes, above the limit of 1048576")
    root, uri, _ = clean("rlds", tmp_path)
    path = next(root.rglob("features.json"))
    text = path.read_text()
    path.write_text(text.replace('"9"', '"1099511627776"', 1))
    _, _, error = read("rlds", uri)
    assert error == f"{path} [steps/action]: declared shape [1099511627776] of 4-byte values " \
        "needs 4398046511104 bytes, above the limit of 4294967296"


def test_declared_sizes_use_python_ints():
    assert declared_nbytes((1 << 40, 1 << 40), 8, "f", limit=1 << 90) == 1 << 83
    with pytest.raises(SourceError, match="above the limit"):
        declared_nbytes((1 << 32, 1 << 32), 1, "f")  # would wrap to 0 in int64
    with pytest.raises(SourceError, match="only 10 exist"):
        declared_nbytes((3, 4), 1, "f", available=10)
    with pytest.raises(SourceError, match="not a non-negative integer"):
        declared_nbytes((3, True), 1, "f")


# -- literal paths --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_folder_names_with_glob_characters_are_literal(tmp_path, kind):
    plain = build_clean(kind, tmp_path / "plain")
    odd = build_clean(kind, tmp_path / "data [1]*?")
    a = read(kind, plain.uri, plain.options)
    b = read(kind, odd.uri, odd.options)
    assert b[2] is None and len(b[0]) == len(a[0]) > 0
    assert [e.episode_id for e in b[0]] == [e.episode_id for e in a[0]]


# -- COCO ids that are not unique -----------------------------------------------------------------

def test_coco_duplicated_image_id_is_never_paired_silently(tmp_path):
    root, uri, n = clean("coco-captions", tmp_path)
    path = root / "coco/annotations/captions_train2017.json"
    doc = json.loads(path.read_text())
    first = doc["images"][0]
    other = doc["images"][1]
    doc["images"].append({**first, "file_name": other["file_name"]})
    path.write_text(json.dumps(doc))
    ann_ids = [a["id"] for a in doc["annotations"] if a["image_id"] == first["id"]]
    episodes, rejected, error = read("coco-captions", uri)
    assert error is None and len(episodes) == n - len(ann_ids)
    assert sorted(r.location for r in rejected) == sorted(
        f"{path} [annotation {a}]" for a in ann_ids)
    last = len(doc["images"]) - 1
    assert all(f"image_id {first['id']} is listed 2 times (images[0], images[{last}])"
               in r.reason for r in rejected)


def test_coco_duplicated_annotation_id(tmp_path):
    root, uri, n = clean("coco-captions", tmp_path)
    path = root / "coco/annotations/captions_train2017.json"
    doc = json.loads(path.read_text())
    dup = doc["annotations"][0]["id"]
    doc["annotations"][1]["id"] = dup
    path.write_text(json.dumps(doc))
    episodes, rejected, error = read("coco-captions", uri)
    assert error is None and len(episodes) == n - 2
    assert {r.message for r in rejected} == {
        f"{path} [annotation {dup}]: annotation id {dup} is used 2 times: ids must be unique"}


# -- empty TFRecord shards ------------------------------------------------------------------------

def test_empty_rlu_shard_names_the_file(tmp_path):
    root, uri, _ = clean("rlu-atari", tmp_path)
    shard = next(root.rglob("run_1-00000-of-00001"))
    shard.write_bytes(b"")
    episodes, rejected, error = read("rlu-atari", uri, {"layout": "episodes"})
    assert not episodes
    assert texts(rejected, error) == f"{shard}: empty TFRecord file: no records (0 bytes)"


def test_empty_rlds_shard_names_the_file(tmp_path):
    root, uri, _ = clean("rlds", tmp_path)
    shard = next(root.rglob("*.tfrecord-00000"))
    shard.write_bytes(b"")
    episodes, rejected, error = read("rlds", uri)
    assert not episodes and error is None
    assert [(r.kind, r.location) for r in rejected] == [("unit", str(shard))]
    assert "empty TFRecord file" in rejected[0].reason


# -- one line always ------------------------------------------------------------------------------

def test_messages_are_one_line():
    e = SourceError("a.h5\n", "Unable to open\n  (file signature not found)\r\nmajor: x",
                    key="k")
    assert str(e) == "a.h5 [k]: Unable to open (file signature not found) major: x"
    assert one_line("x" * 5000).endswith("...") and len(one_line("x" * 5000)) == 1000


def test_hdf5_error_text_is_one_line(tmp_path):
    root, uri, _ = clean("d4rl", tmp_path)
    data = Path(uri).read_bytes()
    Path(uri).write_bytes(data[:4096] + bytes(len(data) - 4096))
    _, rejected, error = read("d4rl", uri)
    assert (error or rejected) and "\n" not in texts(rejected, error)


# -- the last-resort boundary ---------------------------------------------------------------------

def _explode(self, unit):
    yield from ()
    raise ZeroDivisionError("a reader bug")


def test_unexpected_exception_is_a_rejected_unit_in_the_job(tmp_path, monkeypatch):
    _, uri, _ = clean("minari", tmp_path)
    monkeypatch.setattr(MinariSource, "read_unit", _explode)
    src = open_source("minari", uri)
    units = src.units()
    items = list(src.read())
    assert all(isinstance(r, Rejected) and r.kind == "unit" for r in items)
    assert [r.location for r in items] == [f"{u.uri} [{u.key}]" for u in units]
    assert "unexpected ZeroDivisionError while reading: a reader bug" in items[0].reason


def test_unexpected_exception_is_one_line_in_the_cli(tmp_path, monkeypatch, capsys):
    _, uri, _ = clean("minari", tmp_path)
    monkeypatch.setattr(MinariSource, "read_unit", _explode)
    assert main(["episodes", "--kind", "minari", "--input", uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("trajcorpus: error: ") and "main_data.hdf5" in err
    assert "unexpected ZeroDivisionError while reading: a reader bug" in err
    with pytest.raises(SourceError) as e:  # --debug: the traceback, with the cause chained
        main(["--debug", "episodes", "--kind", "minari", "--input", uri])
    assert isinstance(e.value.__cause__, ZeroDivisionError)


def test_unexpected_exception_while_planning_is_one_line_in_the_cli(tmp_path, monkeypatch,
                                                                     capsys):
    _, uri, _ = clean("minari", tmp_path)

    def units(self):
        raise KeyError("spaces")

    monkeypatch.setattr(MinariSource, "units", units)
    assert main(["episodes", "--kind", "minari", "--input", uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected KeyError" in err and uri in err
    with pytest.raises(SourceError, match=r"unexpected KeyError while reading: 'spaces'"):
        list(open_source("minari", uri).read())  # the job's way of reading: the same net


def test_odd_characters_in_a_renamed_fixture_copy(tmp_path):
    """A copy moved into a folder with glob characters reads like the original (shutil.move)."""
    _, uri, n = clean("d4rl", tmp_path)
    odd = tmp_path / "x[0-9]?"
    odd.mkdir()
    moved = shutil.move(uri, odd / Path(uri).name)
    assert len(read("d4rl", str(odd))[0]) == n
    assert len(read("d4rl", str(moved))[0]) == n


# -- numbers in names found on disk ---------------------------------------------------------------

def test_names_whose_digits_int_refuses(tmp_path):
    """'²' passes str.isdigit and 5,000 digits pass \\d+, yet int() refuses both."""
    root, uri, n = clean("minari", tmp_path / "m")
    with h5py.File(next(root.rglob("main_data.hdf5")), "r+") as f:
        f.create_group("episode_" + "9" * 5000)
    assert len(read("minari", uri)[0]) == n

    root, uri, n = clean("dqn-replay", tmp_path / "d")
    run = next(root.rglob("replay_logs")).parent
    shutil.copytree(run, run.parent / "\u00b2")
    episodes, rejected, error = read("dqn-replay", uri)
    assert error is None and not rejected and len(episodes) == 2 * n

    root, uri, n = clean("img2dataset", tmp_path / "i")
    tar_path = root / "output/00000.tar"
    _rewrite_tar(tar_path, lambda name, data: data)
    with tarfile.open(tar_path) as tar:
        first = [m for m in tar if m.name.startswith("0000000.")]
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(tar_path, "w") as tar:
        for m, data in members:
            tar.addfile(m, io.BytesIO(data))
        for m in first:
            data = dict(members)[m]
            m.name = "\u00b2" + m.name[len("0000000"):]
            if m.name.endswith(".json"):  # the copy's own key follows its new name
                data = json.dumps({**json.loads(data), "key": "\u00b2"}).encode()
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    episodes, rejected, error = read("img2dataset", uri)
    assert error is None and len(episodes) == n + 1 and "\u00b2" in {e.episode_id for e in episodes}


def test_rlds_tensor_dtype_must_be_a_number_type(tmp_path):
    root, uri, _ = clean("rlds", tmp_path)
    path = next(root.rglob("features.json"))
    path.write_text(path.read_text().replace('"dtype": "float32"', '"dtype": "object"', 1))
    _, _, error = read("rlds", uri)
    assert error is not None and error.startswith(str(path))
    assert error.endswith("tensor dtype 'object' is not a number type")


def test_coco_ids_must_fit_the_int64_order(tmp_path):
    root, uri, n = clean("coco-captions", tmp_path)
    path = root / "coco/annotations/captions_train2017.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["id"] = 1 << 70
    path.write_text(json.dumps(doc))
    episodes, rejected, error = read("coco-captions", uri)
    assert error is None and len(episodes) == n - 1
    assert [r.location for r in rejected] == [f"{path} [annotations[0].id]"]
    assert "less than or equal to 9223372036854775807" in rejected[0].reason
