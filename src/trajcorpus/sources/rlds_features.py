"""The RLDS/TFDS folder's two documents, typed (``dataset_info.json``, ``features.json``), the
flat feature leaves they declare, the shard file names, and decoding one leaf's raw values from a
``tf.train.Example`` (images, bytes, numbers): what :mod:`.rlds` reads episodes with."""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from ..errors import SourceError
from .imagecodec import decode_image
from .metadata import (
    Name,
    Strict,
    Text,
    declared_nbytes,
    digits,
    flag_array,
    validate,
)
from .tfrecord import DEFAULT_MAX_RECORD_BYTES

__all__ = ["DatasetInfo", "FeatureNode", "Leaf", "flatten_features", "shard_names",
           "decode_leaf", "DEFAULT_TEMPLATE"]

DEFAULT_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}-of-{NUM_SHARDS}"
_IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


# -- the two documents, typed (TFDS writes int64 fields as decimal strings) -----------------------

_Dim = digits(ge=-1)  # -1: unknown; the product is bounded by declared_nbytes


class _Shape(Strict):
    dimensions: list[_Dim] = Field(default_factory=list, max_length=32)


class _Tensor(Strict):
    dtype: Name = ""
    shape: _Shape | None = None
    encoding: Name | None = None


class _Image(Strict):
    dtype: Name | None = None
    shape: _Shape | None = None


class _FeaturesDict(Strict):
    features: dict[Name, FeatureNode] | None = None


class _Sequence(Strict):
    feature: FeatureNode | None = None


class FeatureNode(Strict):
    """One node of features.json (a TFDS FeatureConnector's JSON form)."""

    featuresDict: _FeaturesDict | None = None  # noqa: N815  (TFDS's key names)
    sequence: _Sequence | None = None
    image: _Image | None = None
    text: dict[str, Any] | None = None
    classLabel: dict[str, Any] | None = None  # noqa: N815
    tensor: _Tensor | None = None
    pythonClassName: Name | None = None  # noqa: N815
    description: Text | None = None


_FeaturesDict.model_rebuild()
_Sequence.model_rebuild()


class _Split(Strict):
    name: Name
    shardLengths: list[digits()] = Field(default_factory=list, max_length=1 << 20)  # noqa: N815
    filepathTemplate: Name | None = None  # noqa: N815


class DatasetInfo(Strict):
    """dataset_info.json: what units() needs."""

    name: Name | None = None
    version: Name | None = None
    fileFormat: Name | None = None  # noqa: N815
    splits: list[_Split] = Field(default_factory=list, max_length=4096)


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One flat feature of features.json."""

    key: str
    kind: str  # "image" | "text" | "tensor"
    dtype: str  # numpy dtype name, or "string"
    shape: tuple[int, ...]  # -1 where unknown
    encoding: str = "none"  # tensors: "none" | "zlib" | "bytes"
    in_sequence: bool = False

    @property
    def size(self) -> int | None:
        """Values per step (or per episode), None when the shape is not fully known."""
        return None if any(d < 0 for d in self.shape) else math.prod(self.shape)


def flatten_features(node: Mapping[str, Any], where: str, prefix: str = "",
                     in_sequence: bool = False) -> dict[str, Leaf]:
    """features.json (a FeaturesDict tree) -> {flat key: Leaf}; ``where`` names the file."""
    out: dict[str, Leaf] = {}

    def fail(reason: str) -> SourceError:
        return SourceError(where, reason, key=prefix or "<root>")

    if not isinstance(node, Mapping):
        raise fail(f"expected a feature object, got {type(node).__name__}")
    if prefix == "":
        validate(node, FeatureNode, where)
    if "featuresDict" in node:
        for name, child in ((node["featuresDict"] or {}).get("features") or {}).items():
            out.update(flatten_features(child, where, f"{prefix}/{name}" if prefix else name,
                                        in_sequence))
    elif "sequence" in node:
        if in_sequence:
            raise fail("a sequence inside a sequence is not supported")
        out.update(flatten_features((node["sequence"] or {}).get("feature") or {}, where, prefix,
                                    True))
    elif "image" in node:
        info = node["image"] or {}
        out[prefix] = Leaf(prefix, "image", info.get("dtype", "uint8"), _dims(info, fail),
                           in_sequence=in_sequence)
    elif "text" in node:
        out[prefix] = Leaf(prefix, "text", "string", (), in_sequence=in_sequence)
    elif "classLabel" in node:
        out[prefix] = Leaf(prefix, "tensor", "int64", (), in_sequence=in_sequence)
    elif "tensor" in node:
        info = node["tensor"] or {}
        dtype = str(info.get("dtype", ""))
        if dtype != "string":
            try:
                kind = np.dtype(dtype).kind
            except (TypeError, ValueError):
                raise fail(f"unknown tensor dtype {dtype!r}") from None
            if kind not in "biufc":
                raise fail(f"tensor dtype {dtype!r} is not a number type")
        encoding = str(info.get("encoding") or "none").lower()
        if encoding not in ("none", "zlib", "bytes"):
            raise fail(f"unknown tensor encoding {encoding!r}")
        leaf = Leaf(prefix, "string" if dtype == "string" else "tensor", dtype,
                    _dims(info, fail), encoding, in_sequence)
        if leaf.size is None and (in_sequence or encoding != "none" or
                                  sum(d < 0 for d in leaf.shape) > 1):
            raise fail(f"tensor of dynamic shape {list(leaf.shape)} is not supported here")
        if leaf.size is not None and dtype != "string":
            declared_nbytes(leaf.shape, np.dtype(dtype).itemsize, where, key=prefix)
        out[prefix] = leaf
    else:
        kinds = sorted(k for k in node if k not in ("pythonClassName", "description"))
        raise fail(f"unsupported feature type {kinds or node.get('pythonClassName')}")
    return out


def _dims(info: Mapping[str, Any], fail) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in (info.get("shape") or {}).get("dimensions") or [])
    except (TypeError, ValueError, AttributeError):
        raise fail(f"bad shape {info.get('shape')!r}") from None


def shard_names(info: DatasetInfo | Mapping[str, Any], split: _Split | Mapping[str, Any]
                ) -> list[str]:
    """The shard file names of one split, from dataset_info.json's template and shard lengths."""
    if not isinstance(info, DatasetInfo):
        info = validate(info, DatasetInfo, "dataset_info.json")
    if not isinstance(split, _Split):
        split = validate(split, _Split, "dataset_info.json", key="splits")
    template = split.filepathTemplate or DEFAULT_TEMPLATE
    n = len(split.shardLengths)
    names = []
    for i in range(n):
        names.append(template.replace("{DATASET}", info.name or "")
                     .replace("{SPLIT}", split.name)
                     .replace("{FILEFORMAT}", info.fileFormat or "tfrecord")
                     .replace("{SHARD_INDEX}", f"{i:05d}")
                     .replace("{NUM_SHARDS}", f"{n:05d}"))
    return names


def decode_leaf(leaf: Leaf, raw: list[bytes] | np.ndarray, steps: int | None, uri: str,
                offset: int, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> np.ndarray | list[str]:
    """One feature's raw values -> [steps, *shape] (sequence leaves) or [*shape]; text -> list[str].

    Raises SourceError naming the key when the stored values disagree with the declaration.
    """
    def fail(reason: str) -> SourceError:
        return SourceError(uri, reason, offset=offset, key=leaf.key)

    count = steps if leaf.in_sequence else 1
    if leaf.kind in ("image", "text", "string") or leaf.encoding != "none":
        if not isinstance(raw, list):
            raise fail(f"declared {leaf.kind} ({leaf.dtype}) but stored as a {raw.dtype} list")
        if len(raw) != count:
            raise fail(f"has {len(raw)} values, expected {count}"
                       + (" (one per step)" if leaf.in_sequence else ""))
        if leaf.kind == "image":
            out = _images(leaf, raw, uri, offset, fail)
        elif leaf.kind in ("text", "string"):
            try:
                text = [b.decode("utf-8") for b in raw]
            except UnicodeDecodeError as e:
                raise fail(f"text is not UTF-8: {e}") from None
            return text if leaf.in_sequence else text[0]
        else:
            out = _blobs(leaf, raw, fail, max_bytes)
        return out if leaf.in_sequence else out[0]
    return _numeric(leaf, raw, count, fail)


def _images(leaf: Leaf, raw: list[bytes], uri: str, offset: int, fail) -> np.ndarray:
    channels = leaf.shape[-1] if len(leaf.shape) == 3 else None
    mode = _IMAGE_MODES.get(channels) if channels and channels > 0 else None
    frames = []
    for i, blob in enumerate(raw):
        img = decode_image(blob, uri, key=f"{leaf.key}[{i}]", offset=offset, mode=mode)
        if img.ndim == 2 and len(leaf.shape) == 3:
            img = img[..., None]
        want = leaf.shape if leaf.shape else img.shape
        if len(want) != img.ndim or any(w >= 0 and w != g
                                        for w, g in zip(want, img.shape, strict=True)):
            raise fail(f"step {i}: image of shape {list(img.shape)}, declared {list(leaf.shape)}")
        if frames and img.shape != frames[0].shape:
            raise fail(f"step {i}: image of shape {list(img.shape)} differs from step 0's "
                       f"{list(frames[0].shape)}")
        frames.append(img)
    return np.stack(frames) if frames else np.zeros((0, *leaf.shape), np.uint8)


def _blobs(leaf: Leaf, raw: list[bytes], fail, max_bytes: int) -> np.ndarray:
    dtype = np.dtype(leaf.dtype).newbyteorder("<")
    want = leaf.size * dtype.itemsize  # shape is fully known (checked in flatten_features)
    for i, blob in enumerate(raw):  # every blob checked before the output is allocated
        if leaf.encoding != "zlib" and len(blob) != want:
            raise fail(f"step {i}: {len(blob)} bytes, declared shape {list(leaf.shape)} of "
                       f"{leaf.dtype} needs {want}")
    total = sum(len(b) for b in raw) if leaf.encoding != "zlib" else max_bytes
    try:
        declared_nbytes((len(raw), *leaf.shape), dtype.itemsize, "", limit=max_bytes,
                        available=total)
    except SourceError as e:
        raise fail(e.reason) from None
    out = np.empty((len(raw), *leaf.shape), dtype=np.dtype(leaf.dtype))
    for i, blob in enumerate(raw):
        if leaf.encoding == "zlib":
            d = zlib.decompressobj()
            try:
                data = d.decompress(blob, min(want, max_bytes) + 1)
            except zlib.error as e:
                raise fail(f"step {i}: corrupt zlib data: {e}") from None
            if len(data) > want or d.unconsumed_tail:
                raise fail(f"step {i}: zlib data inflates beyond the declared {want} bytes")
            if not d.eof:
                raise fail(f"step {i}: truncated zlib data")
        else:
            data = blob
        if len(data) != want:
            raise fail(f"step {i}: {len(data)} bytes, declared shape {list(leaf.shape)} of "
                       f"{leaf.dtype} needs {want}")
        out[i] = np.frombuffer(data, dtype=dtype).reshape(leaf.shape)
    return out


def _numeric(leaf: Leaf, raw: list[bytes] | np.ndarray, count: int, fail) -> np.ndarray:
    dtype = np.dtype(leaf.dtype)
    if isinstance(raw, list):
        if raw:
            raise fail(f"declared {leaf.dtype} but stored as a bytes_list")
        raw = np.zeros(0, np.float32 if dtype.kind in "fc" else np.int64)
    if dtype.kind in "fc" and raw.dtype.kind != "f":
        raise fail(f"declared {leaf.dtype} but stored as an int64_list")
    if dtype.kind in "biu" and raw.dtype.kind != "i":
        raise fail(f"declared {leaf.dtype} but stored as a float_list")
    shape = leaf.shape
    if leaf.size is None:  # one unknown dimension, outside a sequence
        known = int(np.prod([d for d in shape if d >= 0], dtype=np.int64))
        if known == 0 or raw.size % known:
            raise fail(f"{raw.size} values do not fit shape {list(shape)}")
        shape = tuple(raw.size // known if d < 0 else d for d in shape)
        per = raw.size
    else:
        per = leaf.size
    if raw.size != count * per:
        raise fail(f"has {raw.size} values, expected {count} x {per}"
                   + (" (steps x values per step)" if leaf.in_sequence else ""))
    arr = raw.reshape((count, *shape)) if leaf.in_sequence else raw.reshape(shape)
    if dtype.kind == "b":  # TFDS stores bools as int64 0/1: any other value is not a bool
        try:
            return flag_array(arr, "")
        except SourceError as e:
            raise fail(e.reason) from None
    return arr.astype(dtype, copy=False)
