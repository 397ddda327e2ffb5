"""One exception family, so the CLI can turn any bad input into a one-line message and exit 2.

Every error carries *where* (a file/URI, an offset, a key or field) and *why*; the message is
``where: why`` so a user can find the byte that is wrong without a traceback.
"""

from __future__ import annotations

import re

__all__ = [
    "one_line",
    "TrajcorpusError",
    "SourceError",
    "EpisodeError",
    "CatalogError",
    "TokenizeError",
    "ShardError",
]


_BREAK = re.compile(r"\s*[\r\n]+\s*")
_MAX_MESSAGE = 1000


def one_line(text: object, limit: int = _MAX_MESSAGE) -> str:
    """``text`` with every line break (and the blanks around it) folded to one space.

    Library texts quoted in a reason (an HDF5 error stack, a pyarrow schema dump, a pydantic
    report) span lines; a message here is always one line, and bounded.
    """
    out = _BREAK.sub(" ", str(text)).strip()
    return out if len(out) <= limit else out[: limit - 3] + "..."


class TrajcorpusError(Exception):
    """Bad input or bad arguments: the CLI prints ``str(err)`` and exits with status 2."""

    def __init__(self, where: str, reason: str):
        where, reason = one_line(where), one_line(reason)
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}" if where else reason)


class SourceError(TrajcorpusError):
    """A source file cannot be read as its format says.

    ``uri`` names the file, ``offset`` the byte (or record/slot index) and ``key`` the field or
    member; any of the last two may be None.
    """

    def __init__(self, uri: str, reason: str, *, offset: int | None = None, key: str | None = None):
        self.uri = uri
        self.offset = offset
        self.key = key
        where = uri
        if offset is not None:
            where += f" @ offset {offset}"
        if key is not None:
            where += f" [{key}]"
        super().__init__(where, reason)


class EpisodeError(TrajcorpusError):
    """An Episode record is inconsistent: ``field`` names the offending field."""

    def __init__(self, episode_id: str, field: str, reason: str):
        self.episode_id = episode_id
        self.field = field
        super().__init__(f"episode {episode_id!r} field {field!r}", reason)


class CatalogError(TrajcorpusError):
    """catalog.yaml is invalid: names the file, line, entry id and field."""

    def __init__(self, path: str, reason: str, *, line: int | None = None,
                 entry: str | None = None, field: str | None = None):
        self.path = path
        self.line = line
        self.entry = entry
        self.field = field
        where = path
        if line is not None:
            where += f":{line}"
        if entry is not None:
            where += f": entry {entry!r}"
        if field is not None:
            where += f" field {field!r}"
        super().__init__(where, reason)


class TokenizeError(TrajcorpusError):
    """A value cannot be tokenized under the scheme (e.g. a discrete value outside [0, 1024))."""


class ShardError(TrajcorpusError):
    """A shard or output folder is missing, truncated, tampered with or unfinished."""
