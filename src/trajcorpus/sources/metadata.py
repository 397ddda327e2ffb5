"""One typed, bounded gate for everything a reader takes from a file's own description of itself.

Readers used to trust what a file *declares* (JSON types, nesting, shapes, lengths, encodings) and
failed later with a traceback when it lied. Every metadata document now goes through here before
any field is used:

* :func:`parse_json` / :func:`load_json`: a size limit, strict UTF-8 (or ``surrogateescape`` where
  a reader checks text itself), a nesting-depth limit (deep nesting can never reach a
  ``RecursionError``), then a strict pydantic model; a failure is one :class:`SourceError` naming
  the file, the field (pydantic's location) and the reason.
* :func:`parse_npy_header`: the ``.npy`` header parsed here, not by numpy (whose parser raises
  other exception types for some malformed dicts and overflows on huge dimensions): a bounded
  string, ``ast.literal_eval``, exact key and type checks.
* :func:`declared_nbytes`: a declared shape's size in Python ints, checked against a ceiling and
  against the bytes that really exist before anything is allocated.
* :func:`one_line`: multi-line texts (HDF5, pyarrow, pydantic messages) folded to one line.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import re
import struct
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

import numpy as np
import pydantic
from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints

from .. import fs
from ..errors import SourceError, one_line

__all__ = ["MAX_DEPTH", "MAX_JSON_BYTES", "MAX_DECLARED_BYTES", "MAX_NPY_HEADER", "Strict",
           "Name", "Text", "NpyHeader", "one_line", "json_depth", "parse_json", "load_json",
           "validate", "declared_nbytes", "parse_npy_header", "digits", "small_int", "flag_array",
           "discount_array"]

MAX_DEPTH = 64  # far deeper than any real metadata (a gymnasium Dict of Dicts is < 10)
MAX_JSON_BYTES = 64 * 1024 * 1024  # a metadata document (COCO passes its own, larger limit)
# Ceiling on the bytes one declared array may need; TRAJCORPUS_MAX_DECLARED_BYTES overrides it.
MAX_DECLARED_BYTES = int(os.environ.get("TRAJCORPUS_MAX_DECLARED_BYTES", str(4 << 30)))
MAX_NPY_HEADER = 10000  # numpy's own limit for untrusted headers

T = TypeVar("T")

Name = Annotated[str, StringConstraints(max_length=4096)]
Text = Annotated[str, StringConstraints(max_length=1 << 20)]


class Strict(pydantic.BaseModel):
    """Base of the metadata models: strict types, unknown keys kept (formats grow), frozen."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


def _int_or_digits(value: Any) -> Any:
    if isinstance(value, str):
        if not re.fullmatch(r"-?[0-9]{1,18}", value):
            raise ValueError(f"expected an integer written in decimal digits, got {value[:40]!r}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {type(value).__name__} {str(value)[:40]}")
    return value


def digits(ge: int = 0, le: int = 1 << 62) -> Any:
    """An int, also when written as a decimal string (protobuf's JSON form of int64: "4"), in
    [ge, le]. One validator, not a union, so a failure reports one field and one reason."""
    return Annotated[int, BeforeValidator(_int_or_digits), Field(ge=ge, le=le)]


def small_int(text: str) -> int | None:
    """``text`` as an int when it is 1 to 18 ASCII digits, else None.

    ``str.isdigit`` accepts '²' and 5,000-digit names, which ``int()`` then refuses with a
    ValueError: names found on disk are matched with this instead.
    """
    return int(text) if 0 < len(text) <= 18 and text.isascii() and text.isdigit() else None


def json_depth(obj: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, walked without recursion; stops past ``limit``."""
    deepest = 0
    stack = [(obj, 1)] if isinstance(obj, (list, dict)) else []
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, (list, dict)))
    return deepest


def parse_json(data: bytes | str, where: str, *, key: str | None = None,
               max_depth: int = MAX_DEPTH, errors: str = "strict", what: str = "") -> Any:
    """Bytes -> a JSON value, or a one-line SourceError (encoding, syntax, nesting).

    ``what`` names the document in the syntax error ("not a JSON {what}"), for JSON held inside
    another document's string field (``key``: then offsets count inside that string, so the
    message gives line and column instead).
    """
    bad = f"not a JSON {what}" if what else "not valid JSON"
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        try:
            text = raw.decode("utf-8", errors)
        except UnicodeDecodeError as e:
            raise SourceError(where, f"not UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start})",
                              key=key, offset=None if key else e.start) from None
    else:
        text = data
    text = text.removeprefix("\ufeff")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SourceError(where, f"{bad}: {e.msg} (line {e.lineno}, column {e.colno})",
                          key=key, offset=None if key else e.pos) from None
    except RecursionError:
        raise SourceError(where, f"JSON nested deeper than the limit of {max_depth} levels",
                          key=key) from None
    except ValueError as e:  # e.g. an integer literal longer than Python's digit limit
        raise SourceError(where, f"{bad}: {one_line(e)}", key=key) from None
    if json_depth(value, max_depth) > max_depth:
        raise SourceError(where, f"JSON nested deeper than the limit of {max_depth} levels",
                          key=key)
    return value


def _loc(loc: Iterable[Any], prefix: str | None) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in ("function-after",
                                                                      "function-plain"))]
    path = ".".join(parts)
    if prefix:
        return f"{prefix}.{path}" if path else prefix
    return path or "<root>"


def validate(value: Any, model: type[T] | Any, where: str, *, key: str | None = None) -> T:
    """``value`` as ``model`` (a pydantic model or any type), strictly; failure names the field."""
    try:
        if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
            return model.model_validate(value, strict=True)  # type: ignore[return-value]
        return pydantic.TypeAdapter(model).validate_python(value, strict=True)
    except pydantic.ValidationError as err:
        errs = err.errors(include_url=False)
        first = errs[0]
        got = type(first.get("input")).__name__
        more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" \
            if len(errs) > 1 else ""
        msg = first["msg"].removeprefix("Value error, ")
        raise SourceError(where, one_line(f"{msg} (got {got}){more}"),
                          key=_loc(first["loc"], key)) from None
    except RecursionError:
        raise SourceError(where, f"nested deeper than the limit of {MAX_DEPTH} levels",
                          key=key) from None


def load_json(uri: str, model: type[T] | Any, *, max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_DEPTH, what: str = "") -> T:
    """Read ``uri`` (at most ``max_bytes``), parse it and validate it as ``model``."""
    try:
        with fs.open_uri(uri, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise SourceError(uri, f"missing {what or 'file'}") from None
    except (OSError, ValueError) as e:
        raise SourceError(uri, f"cannot read: {type(e).__name__}: {one_line(e)}") from None
    if len(data) > max_bytes:
        raise SourceError(uri, f"larger than the limit of {max_bytes} bytes for {what or 'it'}")
    return validate(parse_json(data, uri, max_depth=max_depth), model, uri)


def declared_nbytes(shape: Iterable[Any], itemsize: int, where: str, *, key: str | None = None,
                    offset: int | None = None, limit: int = MAX_DECLARED_BYTES,
                    available: int | None = None) -> int:
    """Bytes a declared ``shape`` of ``itemsize``-byte values needs, in Python ints (no overflow).

    Refused when a dimension is not a non-negative int, when the total exceeds ``limit``, or when
    it exceeds ``available`` (the bytes that really exist), so nothing is allocated for a lie.
    """
    dims = list(shape)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise SourceError(where, f"bad declared shape {dims}: dimension {d!r} is not a "
                              "non-negative integer", key=key, offset=offset)
    n = math.prod(int(d) for d in dims) * int(itemsize)
    if n > limit:
        raise SourceError(where, f"declared shape {dims} of {itemsize}-byte values needs {n} "
                          f"bytes, above the limit of {limit}", key=key, offset=offset)
    if available is not None and n > available:
        raise SourceError(where, f"declared shape {dims} of {itemsize}-byte values needs {n} "
                          f"bytes, but only {available} exist", key=key, offset=offset)
    return n


def flag_array(arr: Any, where: str, *, key: str | None = None, offset: int | None = None,
               first: int = 0, unit: str = "step") -> np.ndarray:
    """A per-step flag (terminal, truncation, first/last step) as a bool array.

    Booleans pass; numbers pass only when every value is exactly 0 or 1 (exporters write flags as
    int64 or float). ``astype(bool)`` would turn 0.5, 2 or NaN into True and so silently invent an
    episode boundary: such a value is refused, naming the first bad step (``first`` + index, as
    ``unit``: "row" for a slice of a flat file).
    """
    a = np.asarray(arr)
    if a.dtype == np.bool_:
        return a
    if a.dtype.kind not in "iuf":
        raise SourceError(where, f"flags must be booleans or 0/1, got dtype {a.dtype}",
                          key=key, offset=offset)
    bad = np.flatnonzero(~((a == 0) | (a == 1)))
    if bad.size:
        i = int(bad[0])
        raise SourceError(where, f"flag value {a.reshape(-1)[i].item()!r} at {unit} {first + i} is not "
                          "0 or 1",
                          key=key, offset=offset)
    return np.asarray(a != 0)


def discount_array(arr: Any, where: str, *, key: str | None = None,
                   offset: int | None = None) -> np.ndarray:
    """Per-step discounts as float32, each finite and in [0, 1] (a discount outside that range, or
    NaN, is not a discount: comparing it with 0 would silently decide the episode's end)."""
    a = np.asarray(arr, dtype=np.float32)
    bad = np.flatnonzero(~(np.isfinite(a) & (a >= 0) & (a <= 1)))
    if bad.size:
        i = int(bad[0])
        raise SourceError(where, f"discount {a.reshape(-1)[i].item()!r} at step {i} is not in "
                          "[0, 1]", key=key, offset=offset)
    return a


@dataclasses.dataclass(frozen=True)
class NpyHeader:
    """A checked ``.npy`` header: the payload that follows holds ``nbytes`` bytes."""

    version: tuple[int, int]
    dtype: np.dtype
    fortran_order: bool
    shape: tuple[int, ...]
    header_size: int  # bytes before the payload (magic, length, dict)
    nbytes: int


def parse_npy_header(read: Callable[[int], bytes], where: str, *,
                     limit: int | None = MAX_DECLARED_BYTES) -> NpyHeader:
    """Parse a ``.npy`` header from ``read(n)`` (file-like semantics) without numpy's parser.

    Never unpickles, never evaluates anything but a literal of at most :data:`MAX_NPY_HEADER`
    characters, and checks every key's type; the declared size is bounded by ``limit`` (None: the
    caller bounds the dimensions itself, with its own messages).
    """
    def fail(reason: str) -> SourceError:
        return SourceError(where, f"bad .npy header: {reason}", offset=0)

    pre = read(8)
    if len(pre) < 8 or pre[:6] != b"\x93NUMPY":
        raise fail(f"the magic string is not correct: {pre[:6]!r} instead of the .npy magic")
    version = (pre[6], pre[7])
    if version == (1, 0):
        size_bytes, fmt = 2, "<H"
    elif version in ((2, 0), (3, 0)):
        size_bytes, fmt = 4, "<I"
    else:
        raise fail(f"unsupported format version {version[0]}.{version[1]}")
    raw_len = read(size_bytes)
    if len(raw_len) < size_bytes:
        raise fail("truncated before the header length")
    (hlen,) = struct.unpack(fmt, raw_len)
    if hlen > MAX_NPY_HEADER:
        raise fail(f"header of {hlen} bytes exceeds the limit of {MAX_NPY_HEADER}")
    raw = read(hlen)
    if len(raw) < hlen:
        raise fail(f"truncated header ({len(raw)} of {hlen} bytes)")
    try:
        text = raw.decode("utf-8" if version == (3, 0) else "latin1")
        d = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError,
            UnicodeDecodeError) as e:
        raise fail(f"header is not a Python literal ({type(e).__name__})") from None
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        got = sorted(map(repr, d)) if isinstance(d, dict) else type(d).__name__
        raise fail(f"expected a dict with keys 'descr', 'fortran_order', 'shape'; got {got}")
    descr, fortran, shape = d["descr"], d["fortran_order"], d["shape"]
    if not isinstance(descr, str):
        raise fail(f"descr must be a dtype string, got {type(descr).__name__} (structured and "
                   "object arrays are refused)")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError, OverflowError) as e:
        raise fail(f"descr {descr[:40]!r} is not a dtype ({type(e).__name__})") from None
    if dtype.hasobject:
        raise fail(f"object dtype {descr!r} refused (its payload is a pickle)")
    if type(fortran) is not bool:
        raise fail(f"fortran_order must be True or False, got {fortran!r}")
    if not isinstance(shape, tuple) or any(type(x) is not int or x < 0 for x in shape):
        raise fail(f"shape must be a tuple of non-negative ints, got {str(shape)[:80]}")
    nbytes = math.prod(shape) * dtype.itemsize
    if limit is not None:
        try:
            declared_nbytes(shape, dtype.itemsize, where, limit=limit)
        except SourceError as e:
            raise fail(e.reason) from None
    return NpyHeader(version, dtype, fortran, shape, 8 + size_bytes + hlen, nbytes)
