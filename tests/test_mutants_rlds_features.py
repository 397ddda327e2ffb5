"""Feature-tree flattening, shard names and leaf decoding of ``sources/rlds_features.py`` against
values built here: features.json trees in TFDS's JSON form, images encoded by PIL, tensors
serialized as TFDS does (``tobytes`` little-endian for ``bytes``, ``zlib.compress`` of it for
``zlib``, ``int64_list``/``float_list`` values otherwise). The ground truth is the arrays encoded.
Written for issue 22's mutation testing of the record/feature decoding behind the RLDS reader.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from trajcorpus.errors import SourceError
from trajcorpus.sources.rlds_features import (
    DEFAULT_TEMPLATE,
    Leaf,
    decode_leaf,
    flatten_features,
    shard_names,
)


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def tensor(dtype: str, dims: list, encoding: str | None = None) -> dict:
    info: dict = {"dtype": dtype, "shape": {"dimensions": [str(d) for d in dims]}}
    if encoding is not None:
        info["encoding"] = encoding
    return {"tensor": info}


def tree(steps: dict, **top) -> dict:
    return {"featuresDict": {"features": {
        "steps": {"sequence": {"feature": {"featuresDict": {"features": steps}}}}, **top}}}


# -- flatten_features -------------------------------------------------------------------------------

def test_every_kind_of_leaf():
    t = tree({"observation": {"featuresDict": {"features": {
                 "image": {"image": {"shape": {"dimensions": ["4", "3", "1"]}, "dtype": "uint8"}},
                 "depth": {"image": {}},
                 "state": tensor("float32", [2, "3"], "ZLIB")}}},
              "action": tensor("int64", []),
              "label": {"classLabel": {"numClasses": "3"}},
              "lang": {"text": {}},
              "blob": tensor("string", []),
              "raw": tensor("float64", [2], "bytes"),
              "is_first": tensor("bool", [], "none")},
             episode_metadata={"featuresDict": {"features": {
                 "id": tensor("int64", [-1]), "name": {"text": {}, "description": "x"}}}})
    leaves = flatten_features(t, "f.json")
    assert leaves == {
        "steps/observation/image": Leaf("steps/observation/image", "image", "uint8", (4, 3, 1),
                                        "none", True),
        "steps/observation/depth": Leaf("steps/observation/depth", "image", "uint8", (), "none",
                                        True),
        "steps/observation/state": Leaf("steps/observation/state", "tensor", "float32", (2, 3),
                                        "zlib", True),
        "steps/action": Leaf("steps/action", "tensor", "int64", (), "none", True),
        "steps/label": Leaf("steps/label", "tensor", "int64", (), "none", True),
        "steps/lang": Leaf("steps/lang", "text", "string", (), "none", True),
        "steps/blob": Leaf("steps/blob", "string", "string", (), "none", True),
        "steps/raw": Leaf("steps/raw", "tensor", "float64", (2,), "bytes", True),
        "steps/is_first": Leaf("steps/is_first", "tensor", "bool", (), "none", True),
        "episode_metadata/id": Leaf("episode_metadata/id", "tensor", "int64", (-1,), "none",
                                    False),
        "episode_metadata/name": Leaf("episode_metadata/name", "text", "string", (), "none",
                                      False)}
    assert [k for k in leaves][:3] == ["steps/observation/image", "steps/observation/depth",
                                       "steps/observation/state"]
    # a leaf at the top level, and an empty featuresDict
    assert flatten_features({"featuresDict": {"features": {"x": tensor("uint8", [2])}}}, "f") == \
        {"x": Leaf("x", "tensor", "uint8", (2,), "none", False)}
    assert flatten_features({"featuresDict": {}}, "f") == {}
    assert Leaf("k", "tensor", "int64", (2, -1)).size is None
    assert Leaf("k", "tensor", "int64", (2, 3)).size == 6
    assert Leaf("k", "tensor", "int64", ()).size == 1


@pytest.mark.parametrize("node, key, reason", [
    ([], "<root>", "expected a feature object, got list"),
    ({"featuresDict": {"features": {"s": {"sequence": {}}}}}, "s",
     "unsupported feature type None"),
    (tree({"x": {"sequence": {"feature": tensor("int64", [])}}}), "steps/x",
     "a sequence inside a sequence is not supported"),
    (tree({"x": tensor("float17", [])}), "steps/x", "unknown tensor dtype 'float17'"),
    (tree({"x": tensor("", [])}), "steps/x", "unknown tensor dtype ''"),
    (tree({"x": tensor("object", [])}), "steps/x", "tensor dtype 'object' is not a number type"),
    (tree({"x": tensor("str", [])}), "steps/x", "tensor dtype 'str' is not a number type"),
    (tree({"x": tensor("int64", [], "png")}), "steps/x", "unknown tensor encoding 'png'"),
    (tree({"x": tensor("int64", [-1])}), "steps/x",
     "tensor of dynamic shape [-1] is not supported here"),
    ({"featuresDict": {"features": {"x": tensor("int64", [-1], "zlib")}}}, "x",
     "tensor of dynamic shape [-1] is not supported here"),
    ({"featuresDict": {"features": {"x": tensor("int64", [-1, 2, -1])}}}, "x",
     "tensor of dynamic shape [-1, 2, -1] is not supported here"),
    (tree({"v": {"video": {}}}), "steps/v", "unsupported feature type ['video']"),
    (tree({"v": {"pythonClassName": "tfds.X", "description": "d"}}), "steps/v",
     "unsupported feature type tfds.X"),
    ({"featuresDict": {"features": {"x": tensor("float64", [1 << 20, 1 << 20])}}}, "x",
     "declared shape [1048576, 1048576] of 8-byte values needs 8796093022208 bytes, above the "
     "limit of 4294967296"),
])
def test_refusals_name_the_file_and_the_key(node, key, reason):
    with pytest.raises(SourceError) as e:
        flatten_features(node, "f.json")
    assert str(e.value) == f"f.json [{key}]: {reason}"


def test_one_dynamic_dimension_outside_a_sequence_is_accepted():
    leaves = flatten_features({"featuresDict": {"features": {"x": tensor("int32", [3, -1])}}}, "f")
    assert leaves["x"].shape == (3, -1) and leaves["x"].size is None


def test_a_string_tensor_of_dynamic_shape_is_not_sized():
    leaves = flatten_features(tree({"s": tensor("string", [])}), "f")
    assert leaves["steps/s"].kind == "string"
    with pytest.raises(SourceError, match=r"f \[steps/s\]: tensor of dynamic shape"):
        flatten_features(tree({"s": tensor("string", [-1])}), "f")


def test_the_tree_is_validated_at_its_root():
    with pytest.raises(SourceError) as e:
        flatten_features({"featuresDict": {"features": {"x": {"tensor": {"dtype": 3}}}}}, "f.json")
    assert str(e.value).startswith("f.json [featuresDict.features.x.tensor.dtype]: ")


# -- shard_names ------------------------------------------------------------------------------------

def test_shard_names_from_the_default_and_a_given_template():
    info = {"name": "ds", "splits": [{"name": "train", "shardLengths": ["3", "4", "5"]}]}
    assert DEFAULT_TEMPLATE == "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}-of-{NUM_SHARDS}"
    assert shard_names(info, info["splits"][0]) == [
        "ds-train.tfrecord-00000-of-00003", "ds-train.tfrecord-00001-of-00003",
        "ds-train.tfrecord-00002-of-00003"]
    info = {"name": "ds", "fileFormat": "array_record",
            "splits": [{"name": "test", "shardLengths": ["1"] * 12,
                        "filepathTemplate": "{SPLIT}/{DATASET}_{SHARD_INDEX}.{FILEFORMAT}"}]}
    names = shard_names(info, info["splits"][0])
    assert names[0] == "test/ds_00000.array_record" and names[11] == "test/ds_00011.array_record"
    assert len(names) == 12
    assert shard_names({}, {"name": "x"}) == []
    assert shard_names({}, {"name": "x", "shardLengths": [1]}) == ["-x.tfrecord-00000-of-00001"]


# -- decode_leaf: numbers ----------------------------------------------------------------------------

def test_numbers_per_step_and_per_episode():
    leaf = Leaf("steps/obs", "tensor", "float32", (2, 3), "none", True)
    raw = np.arange(12, dtype=np.float32) / 4
    out = decode_leaf(leaf, raw, 2, "u", 5)
    assert out.dtype == np.float32 and np.array_equal(out, raw.reshape(2, 2, 3))
    leaf = Leaf("steps/a", "tensor", "int16", (), "none", True)
    out = decode_leaf(leaf, np.array([1, -2, 3], np.int64), 3, "u", 5)
    assert out.dtype == np.int16 and out.tolist() == [1, -2, 3]
    leaf = Leaf("m/x", "tensor", "uint8", (2,), "none", False)
    out = decode_leaf(leaf, np.array([7, 9], np.int64), 99, "u", 5)
    assert out.dtype == np.uint8 and out.tolist() == [7, 9]
    leaf = Leaf("m/y", "tensor", "float64", (), "none", False)
    out = decode_leaf(leaf, np.array([0.5], np.float32), None, "u", 5)
    assert out.dtype == np.float64 and out.shape == () and out == 0.5
    leaf = Leaf("steps/f", "tensor", "bool", (2,), "none", True)
    out = decode_leaf(leaf, np.array([1, 0, 0, 1], np.int64), 2, "u", 5)
    assert out.dtype == np.bool_ and out.tolist() == [[True, False], [False, True]]
    # an empty feature (no list set) is zero values
    leaf = Leaf("steps/r", "tensor", "float32", (), "none", True)
    out = decode_leaf(leaf, [], 0, "u", 5)
    assert out.dtype == np.float32 and out.shape == (0,)
    leaf = Leaf("steps/i", "tensor", "int32", (2,), "none", True)
    out = decode_leaf(leaf, [], 0, "u", 5)
    assert out.dtype == np.int32 and out.shape == (0, 2)


def test_one_unknown_dimension_is_inferred():
    leaf = Leaf("m/ids", "tensor", "int64", (-1, 2), "none", False)
    out = decode_leaf(leaf, np.arange(6, dtype=np.int64), None, "u", 0)
    assert out.shape == (3, 2) and out.tolist() == [[0, 1], [2, 3], [4, 5]]
    leaf = Leaf("m/ids", "tensor", "int64", (2, -1), "none", False)
    assert decode_leaf(leaf, np.arange(6, dtype=np.int64), None, "u", 0).shape == (2, 3)
    leaf = Leaf("m/v", "tensor", "float32", (-1,), "none", False)
    assert decode_leaf(leaf, np.zeros(0, np.float32), None, "u", 0).shape == (0,)


@pytest.mark.parametrize("leaf, raw, steps, reason", [
    (Leaf("k", "tensor", "float32", (), "none", True), [b"x"], 1,
     "declared float32 but stored as a bytes_list"),
    (Leaf("k", "tensor", "complex64", (), "none", True), np.zeros(1, np.int64), 1,
     "declared complex64 but stored as an int64_list"),
    (Leaf("k", "tensor", "int8", (), "none", True), np.zeros(1, np.float32), 1,
     "declared int8 but stored as a float_list"),
    (Leaf("k", "tensor", "uint16", (), "none", True), np.zeros(1, np.float32), 1,
     "declared uint16 but stored as a float_list"),
    (Leaf("k", "tensor", "bool", (), "none", True), np.zeros(1, np.float32), 1,
     "declared bool but stored as a float_list"),
    (Leaf("k", "tensor", "float32", (2,), "none", True), np.zeros(5, np.float32), 3,
     "has 5 values, expected 3 x 2 (steps x values per step)"),
    (Leaf("k", "tensor", "float32", (2,), "none", False), np.zeros(3, np.float32), None,
     "has 3 values, expected 1 x 2"),
    (Leaf("k", "tensor", "int64", (-1, 4), "none", False), np.zeros(6, np.int64), None,
     "6 values do not fit shape [-1, 4]"),
    (Leaf("k", "tensor", "int64", (0, -1), "none", False), np.zeros(0, np.int64), None,
     "0 values do not fit shape [0, -1]"),
    (Leaf("k", "tensor", "bool", (), "none", True), np.array([0, 2], np.int64), 2,
     "flag value 2 at step 1 is not 0 or 1"),
])
def test_number_refusals_name_the_key(leaf, raw, steps, reason):
    with pytest.raises(SourceError) as e:
        decode_leaf(leaf, raw, steps, "u.tfrecord", 44)
    assert str(e.value) == f"u.tfrecord @ offset 44 [k]: {reason}"


# -- decode_leaf: images, text, blobs ----------------------------------------------------------------

@pytest.mark.parametrize("shape, stored", [((4, 3, 3), "RGB"), ((4, 3, 1), "L"),
                                           ((4, 3, 4), "RGBA"), ((4, 3), "L"), ((), "RGB"),
                                           ((-1, -1, 3), "RGB")])
def test_images_as_declared(shape, stored):
    rng = np.random.default_rng(3)
    channels = {"L": None, "RGB": 3, "RGBA": 4}[stored]
    frames = rng.integers(0, 256, size=(2, 4, 3) + ((channels,) if channels else ()),
                          dtype=np.uint8)
    leaf = Leaf("steps/img", "image", "uint8", shape, "none", True)
    out = decode_leaf(leaf, [png(f) for f in frames], 2, "u", 0)
    want = frames[..., None] if len(shape) == 3 and channels is None else frames
    assert out.dtype == np.uint8 and np.array_equal(out, want)
    one = decode_leaf(Leaf("m/img", "image", "uint8", shape, "none", False), [png(frames[1])],
                      None, "u", 0)
    assert np.array_equal(one, want[1])


def test_images_are_converted_to_the_declared_channels():
    rgb = np.random.default_rng(4).integers(0, 256, size=(4, 3, 3), dtype=np.uint8)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    out = decode_leaf(Leaf("k", "image", "uint8", (4, 3, 1), "none", True), [png(rgb)], 1, "u", 0)
    assert np.array_equal(out, gray[None, ..., None])
    out = decode_leaf(Leaf("k", "image", "uint8", (4, 3, 3), "none", True), [png(gray)], 1, "u", 0)
    assert np.array_equal(out, np.repeat(gray[None, ..., None], 3, axis=-1))
    rgba = decode_leaf(Leaf("k", "image", "uint8", (4, 3, 4), "none", True), [png(rgb)], 1, "u", 0)
    assert np.array_equal(rgba[0, ..., :3], rgb) and (rgba[0, ..., 3] == 255).all()
    # an unknown channel count decodes the image as stored
    out = decode_leaf(Leaf("k", "image", "uint8", (4, 3, -1), "none", True), [png(rgb)], 1, "u", 0)
    assert np.array_equal(out[0], rgb)


def test_no_images_in_an_empty_episode():
    out = decode_leaf(Leaf("k", "image", "uint8", (4, 3, 3), "none", True), [], 0, "u", 0)
    assert out.shape == (0, 4, 3, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("leaf, raw, steps, reason", [
    (Leaf("k", "image", "uint8", (4, 3, 3), "none", True), np.zeros(2, np.int64), 2,
     "declared image (uint8) but stored as a int64 list"),
    (Leaf("k", "text", "string", (), "none", True), np.zeros(2, np.float32), 2,
     "declared text (string) but stored as a float32 list"),
    (Leaf("k", "tensor", "float32", (2,), "zlib", True), np.zeros(2, np.float32), 2,
     "declared tensor (float32) but stored as a float32 list"),
    (Leaf("k", "image", "uint8", (4, 3, 3), "none", True), [b"", b""], 3,
     "has 2 values, expected 3 (one per step)"),
    (Leaf("k", "text", "string", (), "none", False), [b"a", b"b"], None,
     "has 2 values, expected 1"),
    (Leaf("k", "text", "string", (), "none", True), [b"ok", b"\xff"], 2,
     "text is not UTF-8: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    (Leaf("k", "image", "uint8", (4, 4, 3), "none", True),
     [png(np.zeros((4, 3, 3), np.uint8))], 1, "step 0: image of shape [4, 3, 3], declared [4, 4, 3]"),
    (Leaf("k", "image", "uint8", (0, 3, 3), "none", True),
     [png(np.zeros((4, 3, 3), np.uint8))], 1, "step 0: image of shape [4, 3, 3], declared [0, 3, 3]"),
    (Leaf("k", "image", "uint8", (4, 3, 3), "none", True),
     [png(np.zeros((4, 3, 3), np.uint8)), b"\x89PNG\r\n\x1a\nbroken"], 2,
     "cannot decode image: UnidentifiedImageError: cannot identify image file"),
    (Leaf("k", "image", "uint8", (4, 3), "none", True),
     [png(np.zeros((4, 3), np.uint8)), png(np.zeros((4, 3, 3), np.uint8))], 2,
     "step 1: image of shape [4, 3, 3], declared [4, 3]"),
    (Leaf("k", "image", "uint8", (), "none", True),
     [png(np.zeros((4, 3, 3), np.uint8)), png(np.zeros((3, 4, 3), np.uint8))], 2,
     "step 1: image of shape [3, 4, 3] differs from step 0's [4, 3, 3]"),
    (Leaf("k", "image", "uint8", (-1, -1, 3), "none", True),
     [png(np.zeros((4, 3, 3), np.uint8)), png(np.zeros((3, 4, 3), np.uint8))], 2,
     "step 1: image of shape [3, 4, 3] differs from step 0's [4, 3, 3]"),
])
def test_blob_refusals_name_the_key(leaf, raw, steps, reason):
    with pytest.raises(SourceError) as e:
        decode_leaf(leaf, raw, steps, "u.tfrecord", 44)
    if reason.startswith("cannot decode"):  # PIL's text ends with an object's address
        assert str(e.value).startswith(f"u.tfrecord @ offset 44 [k[1]]: {reason}")
    else:
        assert str(e.value) == f"u.tfrecord @ offset 44 [k]: {reason}"


def test_text_per_step_and_per_episode():
    leaf = Leaf("steps/t", "text", "string", (), "none", True)
    assert decode_leaf(leaf, ["pick é".encode(), b""], 2, "u", 0) == ["pick é", ""]
    leaf = Leaf("m/t", "string", "string", (), "none", False)
    assert decode_leaf(leaf, [b"solo"], None, "u", 0) == "solo"


@pytest.mark.parametrize("encoding", ["bytes", "zlib"])
def test_serialized_tensors(encoding):
    values = (np.arange(12, dtype=np.float64) * 0.1 - 0.35).reshape(2, 2, 3)
    raw = [v.astype("<f8").tobytes() for v in values]
    if encoding == "zlib":
        raw = [zlib.compress(r) for r in raw]
    leaf = Leaf("steps/s", "tensor", "float64", (2, 3), encoding, True)
    out = decode_leaf(leaf, raw, 2, "u", 0)
    assert out.dtype == np.float64 and np.array_equal(out, values)
    one = decode_leaf(Leaf("m/s", "tensor", "float64", (2, 3), encoding, False), raw[:1], None,
                      "u", 0)
    assert np.array_equal(one, values[0])
    ints = np.array([[1, -2], [300, -40000]], np.int32)
    leaf = Leaf("steps/i", "tensor", "int32", (2,), encoding, True)
    raw = [v.astype("<i4").tobytes() for v in ints]
    raw = [zlib.compress(r) for r in raw] if encoding == "zlib" else raw
    out = decode_leaf(leaf, raw, 2, "u", 0)
    assert out.dtype == np.int32 and out.tolist() == ints.tolist()


def test_a_zlib_leaf_inflating_to_exactly_the_declared_size_under_a_tight_limit():
    leaf = Leaf("k", "tensor", "uint8", (16,), "zlib", True)
    data = bytes(range(16))
    out = decode_leaf(leaf, [zlib.compress(data)] * 2, 2, "u", 0, max_bytes=32)
    assert out.tobytes() == data * 2
    with pytest.raises(SourceError) as e:
        decode_leaf(leaf, [zlib.compress(data)] * 2, 2, "u", 0, max_bytes=31)
    assert str(e.value) == ("u @ offset 0 [k]: declared shape [2, 16] of 1-byte values needs 32 "
                            "bytes, above the limit of 31")


@pytest.mark.parametrize("encoding, blob, reason", [
    ("bytes", b"\0" * 47, "step 1: 47 bytes, declared shape [2, 3] of float64 needs 48"),
    ("bytes", b"\0" * 49, "step 1: 49 bytes, declared shape [2, 3] of float64 needs 48"),
    ("zlib", zlib.compress(b"\0" * 47), "step 1: 47 bytes, declared shape [2, 3] of float64 needs 48"),
    ("zlib", zlib.compress(b"\0" * 49), "step 1: zlib data inflates beyond the declared 48 bytes"),
    ("zlib", zlib.compress(b"\0" * 48)[:-3], "step 1: truncated zlib data"),
    ("zlib", b"\x78\x9c\xff\xff", "step 1: corrupt zlib data: Error -3 while decompressing data: "
     "invalid block type"),
])
def test_serialized_tensor_refusals(encoding, blob, reason):
    good = np.zeros(6, "<f8").tobytes()
    good = zlib.compress(good) if encoding == "zlib" else good
    leaf = Leaf("k", "tensor", "float64", (2, 3), encoding, True)
    with pytest.raises(SourceError) as e:
        decode_leaf(leaf, [good, blob], 2, "u", 9)
    assert str(e.value) == f"u @ offset 9 [k]: {reason}"
