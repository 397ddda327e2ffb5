"""Whole-or-nothing file writes for the job's own files (spill, audit, results).

Local files are written under a temporary name and renamed into place. Object stores (gs://)
already publish an object only when its upload completes, so there the final name is written
directly: a rename there is a copy plus a delete, slower and no safer.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import IO

from .. import fs

__all__ = ["atomic_open"]


@contextlib.contextmanager
def atomic_open(uri: str) -> Iterator[IO[bytes]]:
    """Open ``uri`` for binary writing; readers see the old file or the whole new one."""
    if not fs.is_local(uri):
        f = fs.open_uri(uri, "wb")
        try:
            yield f
        except BaseException:
            discard = getattr(f, "discard", None)  # fsspec: abandon the upload, publish nothing
            if discard is not None:
                discard()
            raise
        f.close()
        return
    tmp = f"{uri}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open_uri(tmp, "wb") as f:
            yield f
        fs.rename(tmp, uri)
    except BaseException:
        fs.remove(tmp)
        raise
