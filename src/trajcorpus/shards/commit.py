"""Committing a config's staged shards into OUT: check, renumber, clear the old, move.

The job writes every shard under a staging folder with its *planned* number ``i`` of ``n``. A
planned shard no sequence hashed to is not written, so the written ones are renumbered
``0..M-1`` of ``M`` (renaming changes no byte: neither format stores its own file name). Only
after every check has passed are this config's shards of an earlier run removed and the new ones
moved into place; the manifest (written by the caller, last) then marks the run finished.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .. import fs
from ..errors import TrajcorpusError
from .layout import config_dir, parse_relpath, shard_relpath

__all__ = ["Commit", "check_staged", "plan_commit", "commit_shards"]


@dataclasses.dataclass(frozen=True)
class Commit:
    """(staged path, final record) of every written shard, and the planned numbers of the first
    format's shards in final order (what the episode index is keyed by)."""

    moves: list[tuple[str, dict]]
    planned: list[int]

    @property
    def files(self) -> list[dict]:
        return [record for _, record in self.moves]


def check_staged(config: str, formats: Sequence[str], files: list[dict], sequences: int,
                 num_shards: int) -> None:
    """Every format wrote the same shard set, no more than planned, holding every sequence."""
    counts = {fmt: sorted(f["path"].rsplit("/", 1)[-1].split(".")[0] for f in files
                          if f["format"] == fmt) for fmt in formats}
    if len({tuple(c) for c in counts.values()}) > 1:
        raise TrajcorpusError(f"output {config}", "the formats' shard sets differ: "
                              + ", ".join(f"{fmt} {len(c)}" for fmt, c in counts.items()))
    for fmt in formats:
        mine = [f for f in files if f["format"] == fmt]
        if len(mine) > num_shards or (sequences and not mine):
            raise TrajcorpusError(f"output {config}",
                                  f"{len(mine)} {fmt} shards written, {num_shards} planned")
        if sum(f["examples"] for f in mine) != sequences:
            raise TrajcorpusError(f"output {config}", (
                f"{fmt} shards hold {sum(f['examples'] for f in mine)} examples but "
                f"{sequences} sequences were built"))


def plan_commit(config: str, formats: Sequence[str], files: list[dict]) -> Commit:
    """The renumbering of the staged shards ``files`` (records with a planned ``path``)."""
    moves: list[tuple[str, dict]] = []
    planned: list[int] = []
    for fmt in formats:
        mine = sorted((f for f in files if f["format"] == fmt),
                      key=lambda f: parse_relpath(f["path"]).index)
        for i, f in enumerate(mine):
            name = parse_relpath(f["path"])
            moves.append((f["path"], {**f, "path": shard_relpath(config, name.split, fmt, i,
                                                                  len(mine))}))
            if fmt == formats[0]:
                planned.append(name.index)
    return Commit(moves, planned)


def commit_shards(output: str, staging: str, config: str, commit: Commit) -> None:
    """Remove this config's shards the commit does not write (an earlier run's, with another
    shard count or format), then move the staged shards into place."""
    keep = {f["path"] for f in commit.files}
    folder = fs.join(output, config_dir(config))
    if fs.exists(folder):
        for uri in fs.listdir(folder):
            if f"{config_dir(config)}/{uri.rstrip('/').rsplit('/', 1)[-1]}" not in keep:
                fs.remove(uri)
    for staged, f in commit.moves:
        fs.makedirs(fs.join(output, f["path"]).rsplit("/", 1)[0])
        fs.rename(fs.join(staging, staged), fs.join(output, f["path"]))
