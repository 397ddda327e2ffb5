"""The typed documents and leaf declarations of ``sources/rlds_features.py`` at their edges:
what an image leaf records, a malformed shape below the tree's root, a tensor without a dtype, a
zero dimension beside an unknown one, the size bound per declared item size, and the location of
``dataset_info.json``'s validation errors. Expected values are written by hand from the
declarations fed in. Written for issue 22's mutation testing (survivors of the first run).
"""

from __future__ import annotations

import numpy as np
import pytest

from trajcorpus.errors import SourceError
from trajcorpus.sources.metadata import MAX_DECLARED_BYTES
from trajcorpus.sources.rlds_features import decode_leaf, flatten_features, shard_names


def feats(**leaves) -> dict:
    return {"featuresDict": {"features": leaves}}


def test_an_image_leaf_records_its_declared_dtype():
    leaves = flatten_features(feats(
        depth={"image": {"dtype": "uint16", "shape": {"dimensions": ["4", "3", "1"]}}},
        rgb={"image": {"shape": {"dimensions": ["4", "3", "3"]}}}), "f.json")
    assert (leaves["depth"].dtype, leaves["depth"].shape) == ("uint16", (4, 3, 1))
    assert (leaves["rgb"].dtype, leaves["rgb"].shape) == ("uint8", (4, 3, 3))


@pytest.mark.parametrize("node", [
    {"tensor": {"dtype": "uint8", "shape": {"dimensions": ["x"]}}},
    {"image": {"shape": {"dimensions": ["x"]}}},
])
def test_a_bad_shape_below_the_root_names_the_file_and_key(node):
    # Only the root is validated by the typed model; a subtree given with its prefix is not.
    with pytest.raises(SourceError) as e:
        flatten_features(node, "f.json", "obs")
    assert str(e.value) == "f.json [obs]: bad shape {'dimensions': ['x']}"


def test_a_tensor_without_a_dtype_is_an_unknown_dtype():
    with pytest.raises(SourceError) as e:
        flatten_features(feats(x={"tensor": {"shape": {"dimensions": []}}}), "f.json")
    assert str(e.value) == "f.json [x]: unknown tensor dtype ''"


def test_a_zero_dimension_beside_one_unknown_is_declared_and_fits_no_values():
    leaves = flatten_features(feats(x={"tensor": {"dtype": "int32",
                                                  "shape": {"dimensions": ["0", "-1"]}}}), "f")
    leaf = leaves["x"]
    assert leaf.shape == (0, -1) and leaf.size is None
    with pytest.raises(SourceError) as e:
        decode_leaf(leaf, np.zeros(0, np.int64), None, "u", 7)
    assert str(e.value) == "u @ offset 7 [x]: 0 values do not fit shape [0, -1]"


@pytest.mark.parametrize("dtype, itemsize", [("uint8", 1), ("int16", 2), ("float32", 4)])
def test_the_declared_size_bound_uses_the_dtypes_own_item_size(dtype, itemsize):
    fits = MAX_DECLARED_BYTES // itemsize
    leaves = flatten_features(feats(x={"tensor": {"dtype": dtype,
                                                  "shape": {"dimensions": [str(fits)]}}}), "f")
    assert leaves["x"].size == fits
    with pytest.raises(SourceError) as e:
        flatten_features(feats(x={"tensor": {"dtype": dtype,
                                             "shape": {"dimensions": [str(fits + 1)]}}}), "f")
    assert str(e.value) == (f"f [x]: declared shape [{fits + 1}] of {itemsize}-byte values needs "
                            f"{(fits + 1) * itemsize} bytes, above the limit of "
                            f"{MAX_DECLARED_BYTES}")


@pytest.mark.parametrize("info, split, where", [
    ({"name": 3}, {"name": "x"}, "dataset_info.json [name]: "),
    ({}, {"name": 3}, "dataset_info.json [splits.name]: "),
    ({}, {"name": "x", "shardLengths": ["a"]}, "dataset_info.json [splits.shardLengths.0]: "),
])
def test_shard_name_inputs_are_validated_naming_dataset_info(info, split, where):
    with pytest.raises(SourceError) as e:
        shard_names(info, split)
    assert str(e.value).startswith(where)
