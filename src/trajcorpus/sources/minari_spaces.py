"""Minari's metadata document, typed, and its Gymnasium spaces: the flat leaves (name, HDF5 path,
kind) a space declares, and each leaf's stored arrays checked against its space."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from ..errors import SourceError
from .metadata import (
    Name,
    Strict,
    Text,
    declared_nbytes,
)

__all__ = ["Space", "EnvSpec", "MinariMetadata", "Leaf", "space_leaves", "leaf_kind"]




class Space(Strict):
    """A serialised gymnasium space, as Minari writes it (only what the reader uses is typed)."""

    type: Name
    dtype: Name | None = None
    shape: list[Annotated[int, Field(ge=0, le=1 << 31)]] | None = Field(None, max_length=32)
    subspaces: dict[Name, Space] | list[Space] | None = None


class EnvSpec(Strict):
    id: Name | None = None


class MinariMetadata(Strict):
    """``data/metadata.json``: the spaces and env_spec are JSON strings (or, leniently, objects)."""

    observation_space: Text | dict[str, Any] | None = None
    action_space: Text | dict[str, Any] | None = None
    env_spec: Text | dict[str, Any] | None = None
    data_format: Name | None = None
    dataset_id: Name | None = None


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One array-valued piece of a (possibly nested) gymnasium space, as Minari serialises it."""

    name: str  # flat observation name, e.g. "observation" or "achieved_goal" or "0/pos"
    h5_path: tuple[str, ...]  # sub-path below the HDF5 "observations" node
    arrow_path: tuple[str, ...]  # struct fields below the Arrow "observations" column
    space: Mapping[str, Any]


def space_leaves(space: Mapping[str, Any], name: str = "", h5_path: tuple[str, ...] = (),
                 arrow_path: tuple[str, ...] = ()) -> list[Leaf]:
    """Flatten a Minari space description (serialised gymnasium space) into leaves."""
    kind = space.get("type")
    if kind == "Dict":
        out: list[Leaf] = []
        for key, sub in space["subspaces"].items():
            out += space_leaves(sub, f"{name}/{key}" if name else key, h5_path + (key,),
                                arrow_path + (key,))
        return out
    if kind == "Tuple":
        out = []
        for i, sub in enumerate(space["subspaces"]):
            out += space_leaves(sub, f"{name}/{i}" if name else str(i), h5_path + (f"_index_{i}",),
                                arrow_path + (str(i),))
        return out
    return [Leaf(name or "observation", h5_path, arrow_path, space)]


def leaf_kind(space: Mapping[str, Any], where: str) -> str:
    """The Episode observation kind of a leaf space."""
    kind = space.get("type")
    if kind == "Text":
        return "text"
    if kind == "Discrete":
        return "discrete"
    if kind == "Box":
        if space.get("dtype") is None or space.get("shape") is None:
            raise SourceError(where, "a Box space needs dtype and shape")
        dtype = np.dtype(space["dtype"])
        shape = tuple(space["shape"])
        declared_nbytes(shape, dtype.itemsize, where, key="shape")
        if dtype == np.uint8 and (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))):
            return "image"
        if dtype.kind == "f":
            return "continuous"
        if dtype.kind in "iub":
            return "discrete"
    raise SourceError(where, f"unsupported space {json.dumps(dict(space))[:200]}")


def _shape_leaf(arr: np.ndarray, space: Mapping[str, Any], uri: str, key: str) -> np.ndarray:
    """Give a raw leaf array (rows first) the shape and dtype its space declares."""
    if arr.ndim == 0:
        raise SourceError(uri, f"expected one row per step, got a scalar ({arr.dtype})", key=key)
    rows = arr.shape[0]
    kind = space.get("type")
    if kind == "Text":
        out = np.empty(rows, dtype=object)
        for i, s in enumerate(arr.tolist()):
            if isinstance(s, bytes):
                try:
                    s = s.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise SourceError(uri, f"row {i}: text is not valid UTF-8 ({e.reason})",
                                      key=key) from None
            if not isinstance(s, str):
                raise SourceError(uri, f"row {i}: expected text, got {type(s).__name__}", key=key)
            out[i] = s
        return out
    if arr.dtype.kind not in "fiub":
        raise SourceError(uri, f"expected numbers, got dtype {arr.dtype}", key=key)
    shape = tuple(space.get("shape", ())) if kind == "Box" else ()
    if arr.size != rows * math.prod(shape):
        raise SourceError(uri, f"array of shape {arr.shape} does not hold {rows} rows of the "
                          f"space's shape {list(shape)}", key=key)
    arr = arr.reshape((rows, *shape))
    return arr.astype(np.uint8) if arr.dtype == np.bool_ else arr


def _actions(arr: np.ndarray, space: Mapping[str, Any], uri: str, key: str
             ) -> tuple[np.ndarray, str]:
    """Actions as [T] (discrete) or [T, A]; continuous ones as float32."""
    arr = _shape_leaf(arr, space, uri, key)
    kind = "discrete" if arr.dtype.kind in "iub" else "continuous"
    dtype = np.int64 if kind == "discrete" else np.float32
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    return arr.astype(dtype), kind


def _arrow_values(col: pa.Array, uri: str, key: str) -> np.ndarray:
    """An Arrow column (primitive, string or fixed-size list of primitives) -> rows-first array."""
    if col.null_count:
        raise SourceError(uri, f"{col.null_count} null values (first at row "
                          f"{col.is_null().index(True).as_py()})", key=key)
    if pa.types.is_fixed_size_list(col.type):
        flat = col.flatten()
        if pa.types.is_nested(flat.type):
            raise SourceError(uri, f"nested list type {col.type} is not a Minari Box encoding",
                              key=key)
        return flat.to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) \
            or pa.types.is_binary(col.type):
        return np.array(col.to_pylist(), dtype=object)
    if pa.types.is_nested(col.type) or pa.types.is_dictionary(col.type):
        raise SourceError(uri, f"unexpected column type {col.type}", key=key)
    return col.to_numpy(zero_copy_only=False)


@dataclasses.dataclass(frozen=True)
class _Meta:
    """What read_unit needs from ``data/metadata.json``."""

    uri: str
    dataset_id: str
    env_id: str
    backend: str
    obs_leaves: tuple[Leaf, ...]
    kinds: dict[str, str]
    action_space: Mapping[str, Any]
