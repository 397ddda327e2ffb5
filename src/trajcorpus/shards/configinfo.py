"""The typed record of one config in ``manifest.json`` (its ``info``): what the job writes and what
the card, the loaders and the trainer helpers read.

:func:`check_info` is called by :func:`.manifest.write_manifest` on the record it is given and by
:func:`.manifest.read_manifest` on every record it reads, so the two sides share one definition: a
key renamed on one side only, a key nobody declared, or a value of the wrong type is a
:class:`~trajcorpus.errors.ShardError` naming the config and the field, at once. The record's
version is the manifest's (``MANIFEST_VERSION``). The mapping itself is still what travels (the
JSON bytes are exactly those of the mapping the job built); blocks with their own owner are typed
here only as far as this module needs (``statistics`` by :mod:`trajcorpus.schemas.stats`,
``semantics`` by :mod:`trajcorpus.semantics`, ``tokenization`` by the token scheme).

Every key is optional because a manifest may hold a config written by a test or by an older run
of this version; the job always writes the full record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from ..errors import ShardError, one_line

__all__ = ["ConfigInfo", "SourceFacts", "SidecarEntry", "RunSettings", "check_info"]


class _Record(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True)


class SourceFacts(_Record):
    """The source kind's facts (``sources.base.kind_facts``): the card's description and tags."""

    kind: str
    description: str
    task_categories: list[str]
    tags: list[str]
    carries_text: bool


class SidecarEntry(_Record):
    """A file beside the shards, verified like them (``manifest.SIDECARS``)."""

    path: str
    bytes: int
    sha256: str
    examples: int | None = None  # the episode index
    episodes: int | None = None
    version: int | None = None  # the statistics state


class RunSettings(_Record):
    """The settings that shaped the tokens (each block is the catalog model's own dump)."""

    filter: dict[str, Any] | None = None
    tokenize: dict[str, Any] | None = None
    sequence: dict[str, Any] | None = None
    shard_bytes: int | None = None
    min_shards: int | None = None
    formats: list[str] | None = None
    prompt_candidates_per_agent: int | None = None


class ConfigInfo(_Record):
    """One config's ``info`` in ``manifest.json``."""

    command: str | None = None  # the command that rebuilds it
    catalog_entry: dict[str, Any] | None = None
    input: str | None = None
    settings: RunSettings | None = None
    sequence_length: int | None = None
    seed: int | None = None
    code_version: str | None = None
    num_shards: int | None = None
    text_model: dict[str, Any] | None = None
    tokenizer_sha256: str | None = None
    audit: str | None = None  # audit/{config}.json (schemas.records)
    source: SourceFacts | None = None
    statistics: dict[str, Any] | None = None  # schemas.stats summaries, per config and task
    reference: dict[str, Any] | None = None
    semantics: dict[str, Any] | None = None
    index: SidecarEntry | None = None
    statistics_state: SidecarEntry | None = None
    tokenization: dict[str, Any] | None = None  # a non-Gato scheme's layout (MGDT)
    action_mapping: dict[str, Any] | None = None
    mixture_weight: float | None = None


def check_info(config: str, info: Any, where: str = "manifest") -> ConfigInfo:
    """``info`` checked against :class:`ConfigInfo`; the first problem is one ShardError."""
    if not isinstance(info, Mapping):
        raise ShardError(f"{where} config {config!r}", f"info must be an object, got "
                         f"{type(info).__name__}")
    try:
        return ConfigInfo.model_validate(dict(info))
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(x) for x in first["loc"]) or "info"
        raise ShardError(f"{where} config {config!r} field 'info.{field}'",
                         one_line(first["msg"])) from None
