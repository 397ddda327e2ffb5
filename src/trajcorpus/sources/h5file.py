"""Open an HDF5 file at any URI (shared by the Minari and D4RL readers).

h5py cannot open a ``gs://`` URL, but it reads any seekable Python file object; remote files are
therefore opened through :func:`trajcorpus.fs.open_uri` (a block cache turns HDF5's many small reads
into few ranged requests). Local files are handed to h5py by path, which is much faster
than routing every read through Python.

The caching policy is explicit because gcsfs' default ("adaptive" prefetching) waits on close for
prefetches in flight, up to 10 s per file: HDF5 (random access) uses a block cache here, and the
other readers pass ``cache_type="readahead"`` for streams (tar, JSON, image files) and
``"blockcache"`` for Parquet (footer first, then column chunks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import h5py
import numpy as np

from .. import fs
from ..errors import SourceError
from .metadata import MAX_DECLARED_BYTES, declared_nbytes

__all__ = ["open_h5", "read_dataset"]

# HDF5 reads are random access (B-tree nodes, then chunks): an LRU of 4 MiB blocks serves them with
# few ranged requests, where a sequential prefetcher would fetch (and on close wait for) bytes
# nobody asked for.
_BLOCK = 4 * 1024 * 1024


@contextlib.contextmanager
def open_h5(uri: str) -> Iterator[h5py.File]:
    """``with open_h5(uri) as f``; a missing or non-HDF5 file raises SourceError naming ``uri``."""
    handle = None
    try:
        if fs.is_local(uri):
            f = h5py.File(fs.local_path(uri), "r")
        else:
            handle = fs.open_uri(uri, "rb", cache_type="blockcache", block_size=_BLOCK)
            f = h5py.File(handle, "r")
    except FileNotFoundError:
        if handle is not None:
            handle.close()
        raise SourceError(uri, "file not found") from None
    except OSError as e:
        if handle is not None:
            handle.close()
        if not fs.exists(uri):
            raise SourceError(uri, "file not found") from None
        raise SourceError(uri, f"not a readable HDF5 file: {e}") from None
    try:
        yield f
    finally:
        f.close()
        if handle is not None:
            handle.close()


def _selected_shape(shape: tuple[int, ...], sel: slice | tuple) -> tuple[int, ...]:
    """The shape ``sel`` (``()`` or a slice of the first axis) picks out of ``shape``."""
    if isinstance(sel, slice) and shape:
        return (len(range(*sel.indices(shape[0]))), *shape[1:])
    return shape


def read_dataset(uri: str, node: h5py.Group, name: str, sel: slice | tuple = (),
                 limit: int = MAX_DECLARED_BYTES) -> np.ndarray:
    """``node[name][sel]`` with a SourceError naming the key when it is missing or unreadable.

    The selection's declared size is bounded by ``limit`` before h5py allocates it: a chunked
    dataset can declare any shape while its file holds almost nothing.
    """
    key = f"{node.name.strip('/')}/{name}".strip("/")
    obj = node.get(name)
    if obj is None:
        raise SourceError(uri, "missing dataset", key=key)
    if not isinstance(obj, h5py.Dataset):
        raise SourceError(uri, f"expected a dataset, found a {type(obj).__name__}", key=key)
    try:
        shape, itemsize = tuple(obj.shape or ()), obj.dtype.itemsize
    except (OSError, ValueError, TypeError) as e:
        raise SourceError(uri, f"cannot read: {e}", key=key) from None
    declared_nbytes(_selected_shape(shape, sel), itemsize, uri, key=key, limit=limit)
    try:
        return obj[sel]
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        raise SourceError(uri, f"cannot read: {e}", key=key) from None
