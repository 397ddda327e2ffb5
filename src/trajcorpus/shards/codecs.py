"""The output formats, behind one registry of codecs (as TFDS's file adapters).

A codec says everything the rest of the package needs about one shard format: its name (the
``--format`` value and the manifest's ``format``), its file extension, how to write and read a
shard, which ``datasets`` builder loads it, how to estimate an example's encoded size, and its
rank (the lowest-ranked format every config has is the one the hub configs load).

Adding a format = one module ``shards/<name>codec.py`` that calls :func:`register` at import
(modules of this package whose name ends in ``codec`` are imported on first use).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import numpy as np

from ..errors import ShardError

__all__ = ["ALL", "Codec", "register", "get_codec", "registered_codecs", "format_names", "extensions",
           "format_choices", "formats_for", "primary_of"]

_REGISTRY: dict[str, Codec] = {}
_LOADED: list[bool] = []
ALL = "both"  # the --format value that writes every registered format (its historic name)


@dataclasses.dataclass(frozen=True)
class Codec:
    name: str
    extension: str  # after the dot, e.g. "parquet", "tar.gz"
    rank: int  # lower = preferred when configs share a folder and for reading
    hub_builder: str  # the ``datasets`` builder that loads these files
    write: Callable[[Iterable[dict], IO[bytes]], int]  # checked examples -> count
    read: Callable[[Any, str, np.ndarray | None], Iterator[tuple[int, dict | None]]]
    estimate: Callable[[list[int], str], int]  # per-field compressed sizes, key -> bytes
    opens_path: bool = False  # the reader takes a local path or Arrow buffer, not a stream
    columnar: bool = False  # a Parquet file: pyarrow reads its columns without decoding examples


def register(codec: Codec) -> Codec:
    if codec.name in _REGISTRY and _REGISTRY[codec.name] != codec:
        raise TypeError(f"format {codec.name!r} registered twice")
    _REGISTRY[codec.name] = codec
    return codec


def _load() -> None:
    if _LOADED:
        return
    _LOADED.append(True)
    package = __name__.rsplit(".", 1)[0]
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if module.name.endswith("codec"):
            importlib.import_module(f"{package}.{module.name}")


def registered_codecs() -> list[Codec]:
    """Every registered codec, preferred first."""
    _load()
    return sorted(_REGISTRY.values(), key=lambda c: (c.rank, c.name))


def get_codec(name: str) -> Codec:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ShardError(f"format {name!r}", f"expected one of {format_names()}") from None


def format_names() -> list[str]:
    return [c.name for c in registered_codecs()]


def extensions() -> dict[str, str]:
    """extension -> format name."""
    return {c.extension: c.name for c in registered_codecs()}


def format_choices() -> list[str]:
    """What ``--format`` accepts: each format, or ``both`` (every registered format)."""
    return [*sorted(format_names()), ALL]


def formats_for(choice: str) -> tuple[str, ...]:
    """The formats a ``--format`` value writes, preferred first."""
    if choice == ALL:
        return tuple(format_names())
    return (get_codec(choice).name,)


def primary_of(formats: Iterable[str]) -> str | None:
    """The preferred of ``formats`` (None if empty)."""
    ranked = sorted(formats, key=lambda f: (get_codec(f).rank, f))
    return ranked[0] if ranked else None
